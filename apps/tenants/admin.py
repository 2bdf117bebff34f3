from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from apps.core.admin import AuditedModelAdmin
from apps.core.admin_sites import platform_admin_site
from apps.core.exceptions import ServiceError
from apps.tenants import services
from apps.tenants.models import Domain, Plan, Tenant


class DomainInline(admin.TabularInline[Domain, Tenant]):
    model = Domain
    extra = 0


class TenantAdmin(AuditedModelAdmin):
    list_display = ("slug", "name", "status", "plan", "created_at")
    list_filter = ("status", "plan")
    search_fields = ("slug", "name")
    # Status changes go through the suspend/resume actions so both trails record them.
    readonly_fields = (
        "schema_name",
        "slug",
        "status",
        "suspended_reason",
        "created_at",
        "suspended_at",
    )
    inlines = [DomainInline]
    actions = ["suspend", "resume"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # provisioning clones a schema: use the sign-up page, the API or the command

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deleting drops a schema: the API or command, with explicit confirmation

    @admin.action(description=_("Suspend the selected organisations"))
    def suspend(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            try:
                services.tenant_suspend(
                    tenant=tenant, reason=str(_("Suspended by platform staff.")), actor=request.user
                )
            except ServiceError as exc:
                self.message_user(request, f"{tenant.slug}: {exc.message}", messages.WARNING)

    @admin.action(description=_("Resume the selected organisations"))
    def resume(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            try:
                services.tenant_resume(tenant=tenant, actor=request.user)
            except ServiceError as exc:
                self.message_user(request, f"{tenant.slug}: {exc.message}", messages.WARNING)


class PlanAdmin(AuditedModelAdmin):
    list_display = (
        "code",
        "name",
        "max_members",
        "max_active_deployments",
        "monthly_message_quota",
        "is_default",
    )


class DomainAdmin(AuditedModelAdmin):
    list_display = ("domain", "tenant", "is_primary")
    search_fields = ("domain",)


platform_admin_site.register(Tenant, TenantAdmin)
platform_admin_site.register(Plan, PlanAdmin)
platform_admin_site.register(Domain, DomainAdmin)
