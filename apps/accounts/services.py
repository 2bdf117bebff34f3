"""Writes on users of the current schema."""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from django.db import transaction
from django.utils.translation import gettext as _

from apps.accounts.models import Role, User
from apps.accounts.permissions import roles_for_current_schema
from apps.audit.services import audit_record
from apps.core.exceptions import InvalidInput


def user_create(
    *,
    email: str,
    password: str | None,
    role: str = Role.MEMBER,
    full_name: str = "",
    actor: Any = None,
    is_staff: bool = False,
    is_superuser: bool = False,
    email_verified: bool = False,
) -> User:
    """Create a user in the current schema. ``email_verified`` is for callers that have proven the
    address themselves (an accepted invitation, an identity provider, the organisation's founder
    at sign-up); anyone else gets a confirmation e-mail on first sign-in."""
    if role not in roles_for_current_schema():
        raise InvalidInput(
            _("This role does not exist here."), details={"role": [_("Choose another role.")]}
        )
    with transaction.atomic():
        user = User.objects.create_user(
            email,
            password,
            role=role,
            full_name=full_name,
            is_staff=is_staff,
            is_superuser=is_superuser,
        )
        EmailAddress.objects.create(
            user=user, email=user.email, primary=True, verified=email_verified
        )
        audit_record(
            action="user.created",
            actor=actor,
            target_type="user",
            target_id=user.pk,
            metadata={"email": user.email, "role": role},
        )
    return user


def user_password_set(*, user: User, password: str, actor: Any = None) -> User:
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        audit_record(action="user.password_set", actor=actor, target_type="user", target_id=user.pk)
    return user
