from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from apps.audit.models import AuditEvent
from apps.core.admin import RoleGatedAdmin
from apps.core.admin_sites import platform_admin_site, tenant_admin_site


class AuditEventAdmin(RoleGatedAdmin):
    """Read-only: the trail is append-only, even for administrators."""

    list_display = (
        "occurred_at",
        "action",
        "outcome",
        "actor_label",
        "target_type",
        "target_id",
        "ip_address",
    )
    list_filter = ("outcome", "actor_type", "action")
    search_fields = ("action", "actor_label", "target_id", "request_id")
    date_hierarchy = "occurred_at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


platform_admin_site.register(AuditEvent, AuditEventAdmin)
tenant_admin_site.register(AuditEvent, AuditEventAdmin)
