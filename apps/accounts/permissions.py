"""Who may do what: a role → ``resource:action`` matrix, checked by one function.

DRF permission classes, page views and websocket consumers all call ``has_permission``; nothing else
decides. (The identity work extends the matrix; docs/security/rbac.md mirrors it.)
"""

from __future__ import annotations

from typing import Any

from apps.accounts.models import Role

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


def has_permission(user: Any, permission: str) -> bool:
    """True when the active, signed-in ``user`` holds ``permission`` through their role."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return permission in MATRIX.get(user.role, frozenset())
