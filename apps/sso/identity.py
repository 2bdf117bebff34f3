"""What an identity provider asserted about the person, read through the connection's mapping."""

from __future__ import annotations

from typing import Any

from apps.sso.models import Connection
from apps.sso.services import Identity


def _first(data: dict[str, Any], names: list[str]) -> Any:
    for name in names:
        value = data.get(name)
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if value not in (None, ""):
            return value
    return None


def _groups(data: dict[str, Any], names: list[str]) -> list[str]:
    for name in names:
        value = data.get(name)
        if value in (None, "", []):
            continue
        values = value if isinstance(value, list | tuple) else [value]
        return [str(item) for item in values if item not in (None, "")]
    return []


def _as_bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")


def identity_from(*, connection: Connection, sociallogin: Any) -> Identity:
    account = sociallogin.account
    extra: dict[str, Any] = dict(account.extra_data or {})
    if connection.protocol == Connection.Protocol.OIDC:
        data = dict(extra.get("userinfo") or extra.get("id_token") or {})
        verified = _as_bool(data.get("email_verified"))
    else:
        data = extra  # SAML: attribute name -> list of values
        verified = None  # SAML carries no standard "verified" flag
    user = sociallogin.user
    email = _first(data, connection.mapping("email")) or (getattr(user, "email", "") or "")
    return Identity(
        uid=str(account.uid),
        email=str(email),
        email_verified=verified,
        first_name=str(_first(data, connection.mapping("first_name")) or ""),
        last_name=str(_first(data, connection.mapping("last_name")) or ""),
        groups=_groups(data, connection.mapping("groups")),
    )
