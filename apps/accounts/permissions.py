"""Who may do what: a role → ``resource:action`` matrix, checked by one function.

DRF permission classes, page views and websocket consumers all call ``has_permission``; nothing else
decides. (The identity work extends the matrix; docs/security/rbac.md mirrors it.)
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from apps.accounts.models import PLATFORM_ROLES, TENANT_ROLES, Role
from apps.tenants.db import connection

MATRIX: dict[str, frozenset[str]] = {
    Role.TENANT_ADMIN: frozenset({"audit:read", "audit:export", "members:read", "members:manage"}),
    Role.DEVELOPER: frozenset(),
    Role.OPERATOR: frozenset(),
    Role.ANALYST: frozenset(),
    Role.AUDITOR: frozenset({"audit:read", "audit:export"}),
    Role.MEMBER: frozenset(),
    Role.PLATFORM_ADMIN: frozenset(
        {"tenants:read", "tenants:manage", "plans:manage", "audit:read"}
    ),
    Role.PUBLISHER: frozenset(),
}


def roles_for_current_schema() -> frozenset[str]:
    """Platform roles exist only in the public schema, tenant roles only in tenant schemas."""
    return PLATFORM_ROLES if connection.schema_name == settings.PUBLIC_SCHEMA_NAME else TENANT_ROLES


def role_choices_for_current_schema() -> list[tuple[str, Any]]:
    allowed = roles_for_current_schema()
    return [(value, label) for value, label in Role.choices if value in allowed]


def has_permission(user: Any, permission: str) -> bool:
    """True when the active, signed-in ``user`` holds ``permission`` through their role — a role
    that counts only in the kind of schema it belongs to (a ``platform_admin`` row inside a tenant
    grants nothing)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.role not in roles_for_current_schema():
        return False
    return permission in MATRIX.get(user.role, frozenset())
