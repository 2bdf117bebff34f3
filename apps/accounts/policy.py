"""The organisation's security policy: reading it, changing it (audited), and what it implies."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from apps.accounts.models import Role, SecurityPolicy, User
from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record
from apps.core.exceptions import InvalidInput

_FIELDS = ("require_mfa", "require_sso", "break_glass_user")


def security_policy_get() -> SecurityPolicy:
    """The policy in force; an organisation that never changed it has the defaults (no row is
    written by reading)."""
    return SecurityPolicy.objects.filter(pk=1).first() or SecurityPolicy(pk=1)


def security_policy_update(*, actor: Any, **changes: Any) -> SecurityPolicy:
    unknown = set(changes) - set(_FIELDS)
    if unknown:
        raise InvalidInput(
            _("Unknown policy settings."), details={k: [_("Unknown setting.")] for k in unknown}
        )
    with transaction.atomic():
        policy = SecurityPolicy.objects.select_for_update().get_or_create(pk=1)[0]
        before = {name: _describe(getattr(policy, name)) for name in _FIELDS}
        for name, value in changes.items():
            setattr(policy, name, value)
        glass = policy.break_glass_user
        if glass is not None and (glass.role != Role.TENANT_ADMIN or not glass.is_active):
            raise InvalidInput(
                _("The break-glass administrator must be an active tenant admin."),
                details={"break_glass_user": [_("Choose an active tenant admin.")]},
            )
        if policy.require_sso and glass is None:
            raise InvalidInput(
                _(
                    "Name a break-glass administrator before requiring single sign-on, so that a "
                    "broken identity provider cannot lock everyone out."
                ),
                details={"break_glass_user": [_("Required when single sign-on is required.")]},
            )
        policy.save()
        after = {name: _describe(getattr(policy, name)) for name in _FIELDS}
        audit_record(
            action="security_policy.changed",
            actor=actor,
            target_type="security_policy",
            target_id=policy.pk,
            metadata={"before": before, "after": after},
        )
    return policy


def _describe(value: Any) -> Any:
    return value.email if isinstance(value, User) else value


def password_sign_in_allowed(user: User) -> bool:
    """False when the organisation requires SSO and ``user`` is not its break-glass admin."""
    policy = security_policy_get()
    return not policy.require_sso or policy.break_glass_user_id == user.pk


def password_sign_in_check(user: User, *, attempted: str) -> None:
    """Refuse (audited, ValidationError) a correct password when the organisation requires SSO
    and ``user`` is not its break-glass admin. Called after the password was verified, so the
    answer reveals nothing to someone who does not know it; used by every password form."""
    if password_sign_in_allowed(user):
        return
    audit_record(
        action="auth.login_failed",
        actor=Actor.anonymous(attempted[:254]),
        outcome=AuditEvent.Outcome.DENIED,
        metadata={"reason": "sso_required", "method": "password"},
    )
    raise ValidationError(
        _(
            "Your organisation requires single sign-on. Sign in with your identity provider instead."
        ),
        code="sso_required",
    )
