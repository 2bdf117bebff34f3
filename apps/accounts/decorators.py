"""The page-view face of the one permission check."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from apps.accounts.permissions import has_permission
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record

View = Callable[..., HttpResponse]


def permission_required(permission: str) -> Callable[[View], View]:
    """Anonymous visitors are sent to sign in; signed-in people without ``permission`` get the
    403 page, and the denial is audited."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_permission(request.user, permission):
                audit_record(
                    action="permission.denied",
                    actor=request.user,
                    outcome=AuditEvent.Outcome.DENIED,
                    metadata={
                        "permission": permission,
                        "method": request.method,
                        "path": request.get_full_path()[:500],
                    },
                )
                raise PermissionDenied
            return view(request, *args, **kwargs)

        wrapper.required_permission = permission  # type: ignore[attr-defined]
        return wrapper

    return decorator
