"""The organisation's admin: deployments to look at (changes go through the pages and the API,
which validate settings and keep secrets out of sight) and the tool policy to edit."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from apps.core.admin import AuditedModelAdmin
from apps.core.admin_sites import tenant_admin_site
from apps.deployments.models import Deployment, ToolPolicy


class DeploymentAdmin(AuditedModelAdmin):
    list_display = ("name", "slug", "status", "version", "owner", "updated_at")
    list_filter = ("status",)
    search_fields = ("name", "slug")
    # Secrets are in their own table and never shown; settings hold no secret values.
    fields = ("name", "slug", "status", "status_reason", "settings", "fallback_provider", "owner")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ToolPolicyAdmin(AuditedModelAdmin):
    list_display = ("__str__", "allow_private_addresses", "updated_at")
    fields = ("allowed_hosts", "allow_private_addresses")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # One policy per organisation.
        return super().has_add_permission(request) and not ToolPolicy.objects.exists()


tenant_admin_site.register(Deployment, DeploymentAdmin)
tenant_admin_site.register(ToolPolicy, ToolPolicyAdmin)
