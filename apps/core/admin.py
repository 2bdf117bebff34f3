"""Admin writes are writes: every save and delete made in an admin site is audited."""

from __future__ import annotations

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
    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            audit_record(
                action=f"{obj._meta.model_name}.{'changed' if change else 'created'}",
                actor=request.user,
                target_type=obj._meta.model_name or "",
                target_id=obj.pk,
                metadata={"via": "admin", "fields": sorted(form.changed_data)},
            )

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        with transaction.atomic():
            pk = obj.pk
            super().delete_model(request, obj)
            audit_record(
                action=f"{obj._meta.model_name}.deleted",
                actor=request.user,
                target_type=obj._meta.model_name or "",
                target_id=pk,
                metadata={"via": "admin", "repr": str(obj)[:200]},
            )

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:
            self.delete_model(request, obj)
