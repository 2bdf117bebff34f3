"""The base every API view extends: a fixed permission stack and a scoped queryset.

Subclasses declare ``permission_map`` (action → ``resource:action``) and implement
``scoped_queryset``; they never override ``get_queryset`` or the permission classes, so a view
cannot forget to check a permission or scope its rows.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Model, QuerySet
from rest_framework import permissions, viewsets
from rest_framework.request import Request

from apps.accounts.models import ApiKey
from apps.accounts.permissions import has_permission
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record


class RolePermission(permissions.BasePermission):
    """Allow a request when the caller's role grants the permission its action requires."""

    def has_permission(self, request: Request, view: Any) -> bool:
        required = view.required_permission()
        if required is None:
            return True
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        allowed = has_permission(request.user, required, api_key=api_key)
        if not allowed and request.user.is_authenticated:
            metadata = {
                "permission": required,
                "method": request.method,
                "path": request.get_full_path()[:500],
            }
            if api_key is not None:
                metadata["api_key"] = api_key.prefix
            audit_record(
                action="permission.denied",
                actor=request.user,
                outcome=AuditEvent.Outcome.DENIED,
                metadata=metadata,
            )
        return allowed


class ScopedViewSet(viewsets.GenericViewSet[Any]):
    permission_classes = [permissions.IsAuthenticated, RolePermission]
    permission_map: ClassVar[dict[str, str | None]] = {}
    # What the rows are, for the OpenAPI generator, which has no caller to scope by.
    schema_model: ClassVar[type[Model] | None] = None

    def required_permission(self) -> str | None:
        if self.action in (None, "metadata"):
            # No such method here (DRF answers 405), or OPTIONS, which only describes the API.
            return None
        try:
            return self.permission_map[self.action]
        except KeyError:
            # An action nobody mapped is refused rather than silently allowed.
            return "__unmapped__"

    def scoped_queryset(self) -> QuerySet[Any]:
        raise NotImplementedError

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False) and self.schema_model is not None:
            return self.schema_model._default_manager.none()
        return self.scoped_queryset()
