"""API keys: creation (the secret is shown once), revocation, and resolving a presented key."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.accounts.models import ApiKey, User
from apps.accounts.permissions import permissions_of
from apps.audit.services import audit_record
from apps.core.exceptions import Conflict, InvalidInput

KEY_PREFIX = "af_"
# last_used_at is a convenience, not an audit record: write it at most once a minute per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    secret: str  # the whole key, returned to its owner once and never stored


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(
    *,
    user: User,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    actor: Any = None,
) -> CreatedApiKey:
    name = (name or "").strip()
    errors: dict[str, list[str]] = {}
    if not name or len(name) > 100:
        errors["name"] = [_("Enter a name of 1 to 100 characters.")]
    allowed = permissions_of(user)
    unknown = sorted(set(scopes) - allowed)
    if not scopes:
        errors["scopes"] = [_("Choose at least one scope.")]
    elif unknown:
        errors["scopes"] = [
            _("Your role does not grant these scopes: %(scopes)s.") % {"scopes": ", ".join(unknown)}
        ]
    if expires_at is not None and expires_at <= timezone.now():
        errors["expires_at"] = [_("The expiry must be in the future.")]
    if errors:
        raise InvalidInput(_("The API key could not be created."), details=errors)

    prefix = secrets.token_hex(6)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            user=user,
            name=name,
            prefix=prefix,
            key_hash=_hash(secret),
            scopes=sorted(set(scopes)),
            expires_at=expires_at,
        )
        audit_record(
            action="api_key.created",
            actor=actor or user,
            target_type="api_key",
            target_id=api_key.pk,
            metadata={
                "name": name,
                "prefix": prefix,
                "scopes": api_key.scopes,
                "owner": user.email,
                "expires_at": expires_at,
            },
        )
    return CreatedApiKey(api_key, secret)


def api_key_revoke(*, api_key: ApiKey, actor: Any) -> ApiKey:
    if api_key.revoked_at is not None:
        raise Conflict(_("This API key is already revoked."), code="already_revoked")
    with transaction.atomic():
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_record(
            action="api_key.revoked",
            actor=actor,
            target_type="api_key",
            target_id=api_key.pk,
            metadata={"name": api_key.name, "prefix": api_key.prefix, "owner": api_key.user.email},
        )
    return api_key


def api_key_resolve(presented: str) -> ApiKey | None:
    """The usable key matching ``presented`` in this schema, with an active owner; else None."""
    if not presented.startswith(KEY_PREFIX) or presented.count("_") < 2:
        return None
    prefix = presented[len(KEY_PREFIX) :].split("_", 1)[0]
    api_key = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, _hash(presented)):
        return None
    if not api_key.is_usable or not api_key.user.is_active:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
