from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from apps.accounts.api_keys import api_key_revoke
from apps.accounts.models import ApiKey, User
from apps.accounts.permissions import role_choices_for_current_schema
from apps.core.admin import AuditedModelAdmin
from apps.core.admin_sites import platform_admin_site, tenant_admin_site


class UserAdmin(AuditedModelAdmin, DjangoUserAdmin[User]):
    ordering = ("email",)
    list_display = ("email", "full_name", "role", "is_active", "last_login")
    list_filter = ("role", "is_active", "is_staff")
    search_fields = ("email", "full_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Profile"), {"fields": ("full_name", "role")}),
        # Access follows the role; superuser status is not granted from the admin.
        (_("Access"), {"fields": ("is_active", "is_staff")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "role", "password1", "password2")}),
    )
    readonly_fields = ("last_login", "date_joined")
    filter_horizontal = ()

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        # Django's view saves and logs separately; the change and its audit event commit together.
        with transaction.atomic():
            return super().user_change_password(request, id, form_url)

    def formfield_for_choice_field(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "role":
            kwargs["choices"] = role_choices_for_current_schema()
        return super().formfield_for_choice_field(db_field, request, **kwargs)


platform_admin_site.register(User, UserAdmin)
tenant_admin_site.register(User, UserAdmin)


class ApiKeyAdmin(AuditedModelAdmin):
    """Administrators see and revoke keys; secrets were never stored, so none can be shown."""

    list_display = (
        "name",
        "prefix",
        "user",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__email")
    readonly_fields = (
        "user",
        "name",
        "prefix",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )
    exclude = ("key_hash",)
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are created by their owner, who alone sees the secret

    @admin.action(description=_("Revoke the selected API keys"))
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key, actor=request.user)


platform_admin_site.register(ApiKey, ApiKeyAdmin)
tenant_admin_site.register(ApiKey, ApiKeyAdmin)
