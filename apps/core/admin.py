"""Admin writes are writes: every save and delete made in an admin site is audited."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import Model
from django.http import HttpRequest

from apps.audit.services import audit_record


class RoleGatedAdmin(admin.ModelAdmin[Any]):
    """Whoever the site admits (by role, see admin_sites.py) may use its models; subclasses
    narrow this further. Django's per-model permission rows are not used for admin access."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.admin_site.has_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admin_site.has_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.admin_site.has_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admin_site.has_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admin_site.has_permission(request)


class AuditedModelAdmin(RoleGatedAdmin):
    """Every addition, change (including inline edits and password changes) and deletion made in
    an admin site is audited, with Django's own description of what changed."""

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._audit(request, obj, "created", message)
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._audit(request, obj, "changed", message)
        return super().log_change(request, obj, message)

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        # Called before every deletion, by the delete page and the bulk action alike.
        for obj in queryset:
            self._audit(request, obj, "deleted", "")
        return super().log_deletions(request, queryset)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        with transaction.atomic():
            super().delete_queryset(request, queryset)

    @staticmethod
    def _audit(request: HttpRequest, obj: Model, verb: str, message: Any) -> None:
        audit_record(
            action=f"{obj._meta.model_name}.{verb}",
            actor=request.user,
            target_type=obj._meta.model_name or "",
            target_id=obj.pk or "",
            metadata={"via": "admin", "object": str(obj)[:200], "change": _describe(message)},
        )


def _describe(message: Any) -> Any:
    """Django stores change messages as JSON text; keep them structured in the trail."""
    if isinstance(message, str) and message.startswith("["):
        try:
            return json.loads(message)
        except ValueError:
            return message
    return message if isinstance(message, list | str) else str(message)
