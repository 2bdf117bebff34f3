"""Who may do what: a role → ``resource:action`` matrix, checked by one function.

DRF permission classes, page views and websocket consumers all call ``has_permission``; nothing else
decides. (The identity work extends the matrix; docs/security/rbac.md mirrors it.)
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from apps.accounts.models import PLATFORM_ROLES, TENANT_ROLES, Role
from apps.tenants.db import connection

# Everyone signed in may manage their own API keys.
_EVERYONE = frozenset({"api_keys:own"})
# Browsing the catalog and reviewing what one uses; auditors only read the audit trail.
_CATALOG_USER = frozenset({"catalog:read", "reviews:write"})
# Seeing the organisation's deployments (to chat with them); auditors read only the trail.
_DEPLOYMENT_USER = frozenset({"deployments:read", "chat:use"})
_USER = _EVERYONE | _CATALOG_USER | _DEPLOYMENT_USER

MATRIX: dict[str, frozenset[str]] = {
    Role.TENANT_ADMIN: _USER
    | frozenset(
        {"audit:read", "audit:export", "members:read", "members:manage", "sso:manage"}
        | {"catalog:manage", "deployments:manage", "deployments:operate"}
    ),
    Role.DEVELOPER: _USER | frozenset({"deployments:manage", "deployments:operate"}),
    Role.OPERATOR: _USER | frozenset({"deployments:operate"}),
    Role.ANALYST: _USER,
    Role.AUDITOR: _EVERYONE | frozenset({"audit:read", "audit:export"}),
    Role.MEMBER: _USER,
    Role.PLATFORM_ADMIN: _EVERYONE
    | frozenset({"tenants:read", "tenants:manage", "plans:manage", "audit:read"})
    | frozenset({"catalog:read", "blueprints:certify", "reviews:moderate"}),
    Role.PUBLISHER: _EVERYONE | frozenset({"catalog:read", "blueprints:publish", "reviews:reply"}),
}


def roles_for_current_schema(schema: str | None = None) -> frozenset[str]:
    """Platform roles exist only in the public schema, tenant roles only in tenant schemas (of
    the connection's schema, or ``schema``)."""
    schema = connection.schema_name if schema is None else schema
    return PLATFORM_ROLES if schema == settings.PUBLIC_SCHEMA_NAME else TENANT_ROLES


def role_choices_for_current_schema() -> list[tuple[str, Any]]:
    allowed = roles_for_current_schema()
    return [(value, label) for value, label in Role.choices if value in allowed]


def permissions_of(user: Any, *, schema: str | None = None) -> frozenset[str]:
    """Everything ``user``'s role grants here, or in ``schema`` (empty for inactive or anonymous
    users)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return frozenset()
    if user.role not in roles_for_current_schema(schema):
        return frozenset()
    return MATRIX.get(user.role, frozenset())


def has_permission(
    user: Any, permission: str, *, api_key: Any = None, schema: str | None = None
) -> bool:
    """True when the active, signed-in ``user`` holds ``permission`` through their role — a role
    that counts only in the kind of schema it belongs to (a ``platform_admin`` row inside a tenant
    grants nothing). With an ``api_key``, the permission must also be among the key's scopes."""
    if api_key is not None and permission not in api_key.scopes:
        return False  # a key may do less than its owner, never more
    return permission in permissions_of(user, schema=schema)
