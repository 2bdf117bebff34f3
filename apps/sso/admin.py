"""The organisation's admin site lists its connections and sends additions and edits to the SSO
pages, whose service validates certificates and metadata, never shows the client secret and
audits every change (secret changes as "secret replaced")."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from apps.core.admin import AuditedModelAdmin
from apps.core.admin_sites import tenant_admin_site
from apps.sso.models import Connection


class ConnectionAdmin(AuditedModelAdmin):
    list_display = ("display_name", "slug", "protocol", "enabled", "jit_enabled", "updated_at")
    list_filter = ("protocol", "enabled")
    search_fields = ("display_name", "slug")
    exclude = ("oidc_client_secret",)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return redirect("sso:connections")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        if not object_id.isdigit():
            return redirect("sso:connections")
        return redirect("sso:connection-edit", pk=int(object_id))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the SSO pages delete through the service (account links go too)


tenant_admin_site.register(Connection, ConnectionAdmin)
