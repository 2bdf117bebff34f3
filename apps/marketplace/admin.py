"""Platform admin pages for the catalog: moderation, certification and the review queue.

Blueprints and versions come from blueprint files (the publish API or command); here platform
staff move versions through the lifecycle, hide blueprints and answer review reports, always
through the services, so the rules and the audit trail are the same as in the API.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import Role, User
from apps.core.admin import AuditedModelAdmin
from apps.core.admin_sites import platform_admin_site
from apps.core.exceptions import ServiceError
from apps.marketplace import services
from apps.marketplace.models import (
    Blueprint,
    BlueprintVersion,
    Publisher,
    Review,
    ReviewReport,
)

State = BlueprintVersion.State
DEFAULT_SUNSET = timedelta(days=90)


class ReadOnlyAdmin(AuditedModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _run(admin_: admin.ModelAdmin[Any], request: HttpRequest, items: Any, call: Any) -> None:
    done = 0
    for item in items:
        try:
            call(item)
            done += 1
        except ServiceError as exc:
            admin_.message_user(request, f"{item}: {exc.message}", messages.WARNING)
    if done:
        admin_.message_user(request, _("%(count)d done.") % {"count": done}, messages.SUCCESS)


class VersionInline(admin.TabularInline[BlueprintVersion, Blueprint]):
    model = BlueprintVersion
    fields = ("version", "state", "provider", "model", "sunset_date", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class BlueprintAdmin(ReadOnlyAdmin):
    list_display = (
        "slug", "name", "publisher", "category", "state", "certified", "hidden", "rating_avg",
        "rating_count", "install_count",
    )  # fmt: skip
    list_filter = ("state", "certified", "hidden", "category", "pricing_model", "publisher")
    search_fields = ("slug", "name", "summary")
    inlines = [VersionInline]
    actions = ["hide", "show"]
    exclude = ("search_vector", "description_html", "tags_text")

    @admin.action(description=_("Hide the selected blueprints from the catalog"))
    def hide(self, request: HttpRequest, queryset: QuerySet[Blueprint]) -> None:
        _run(
            self,
            request,
            queryset,
            lambda b: services.blueprint_moderate(blueprint=b, hidden=True, actor=request.user),
        )

    @admin.action(description=_("Show the selected blueprints in the catalog again"))
    def show(self, request: HttpRequest, queryset: QuerySet[Blueprint]) -> None:
        _run(
            self,
            request,
            queryset,
            lambda b: services.blueprint_moderate(blueprint=b, hidden=False, actor=request.user),
        )


class VersionAdmin(ReadOnlyAdmin):
    list_display = ("blueprint", "version", "state", "provider", "model", "sunset_date")
    list_filter = ("state", "provider")
    search_fields = ("blueprint__slug", "blueprint__name", "version")
    list_select_related = ("blueprint",)
    actions = ["certify", "rollback", "deprecate", "retire"]

    def _move(self, request: HttpRequest, queryset: Any, to: str, **extra: Any) -> None:
        _run(
            self,
            request,
            queryset,
            lambda v: services.version_transition(version=v, to=to, actor=request.user, **extra),
        )

    @admin.action(description=_("Certify the selected versions"))
    def certify(self, request: HttpRequest, queryset: QuerySet[BlueprintVersion]) -> None:
        self._move(request, queryset, State.CERTIFIED)

    @admin.action(description=_("Roll the selected certified versions back to experimental"))
    def rollback(self, request: HttpRequest, queryset: QuerySet[BlueprintVersion]) -> None:
        self._move(request, queryset, State.EXPERIMENTAL)

    @admin.action(description=_("Deprecate the selected versions (sunset in 90 days)"))
    def deprecate(self, request: HttpRequest, queryset: QuerySet[BlueprintVersion]) -> None:
        sunset = timezone.localdate() + DEFAULT_SUNSET
        self._move(request, queryset, State.DEPRECATED, sunset_date=sunset)

    @admin.action(description=_("Retire the selected deprecated versions"))
    def retire(self, request: HttpRequest, queryset: QuerySet[BlueprintVersion]) -> None:
        self._move(request, queryset, State.RETIRED)


class ReportAdmin(ReadOnlyAdmin):
    """The review moderation queue: open reports first."""

    list_display = ("review_excerpt", "rating", "blueprint", "reason", "status", "created_at")
    list_filter = ("status",)
    list_select_related = ("review", "review__blueprint")
    ordering = ("status", "created_at")
    actions = ["remove", "dismiss"]

    @admin.display(description=_("review"))
    def review_excerpt(self, obj: ReviewReport) -> str:
        return obj.review.text[:120] or "—"

    @admin.display(description=_("rating"))
    def rating(self, obj: ReviewReport) -> int:
        return obj.review.rating

    @admin.display(description=_("blueprint"))
    def blueprint(self, obj: ReviewReport) -> str:
        return obj.review.blueprint.name

    @admin.action(description=_("Hide the reported reviews"))
    def remove(self, request: HttpRequest, queryset: QuerySet[ReviewReport]) -> None:
        _run(
            self,
            request,
            queryset.filter(status=ReviewReport.Status.OPEN),
            lambda r: services.report_resolve(report=r, decision="remove", actor=request.user),
        )

    @admin.action(description=_("Dismiss the selected reports"))
    def dismiss(self, request: HttpRequest, queryset: QuerySet[ReviewReport]) -> None:
        _run(
            self,
            request,
            queryset.filter(status=ReviewReport.Status.OPEN),
            lambda r: services.report_resolve(report=r, decision="dismiss", actor=request.user),
        )


class ReviewAdmin(ReadOnlyAdmin):
    list_display = ("blueprint", "rating", "author_name", "tenant", "hidden", "updated_at")
    list_filter = ("hidden", "rating")
    search_fields = ("blueprint__slug", "text", "author_name")
    list_select_related = ("blueprint", "tenant")


class PublisherAdmin(AuditedModelAdmin):
    list_display = ("slug", "name", "verified", "created_at")
    search_fields = ("slug", "name")
    filter_horizontal = ("members",)
    formfield_overrides: ClassVar = {models.URLField: {"assume_scheme": "https"}}

    def formfield_for_manytomany(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        if db_field.name == "members":
            kwargs["queryset"] = User.objects.filter(role=Role.PUBLISHER)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


platform_admin_site.register(Blueprint, BlueprintAdmin)
platform_admin_site.register(BlueprintVersion, VersionAdmin)
platform_admin_site.register(ReviewReport, ReportAdmin)
platform_admin_site.register(Review, ReviewAdmin)
platform_admin_site.register(Publisher, PublisherAdmin)
