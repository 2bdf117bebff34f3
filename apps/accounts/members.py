"""Members and invitations: who belongs to the organisation, with which role.

The one rule that protects every organisation: there is always at least one active tenant admin.
Demoting, deactivating or removing the last one is refused, under a row lock so that two admins
cannot remove each other at the same moment.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.accounts.models import Invitation, Role, User
from apps.accounts.permissions import roles_for_current_schema
from apps.accounts.services import user_create
from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record
from apps.core.exceptions import Conflict, InvalidInput
from apps.tenants.db import connection

INVITATION_VALIDITY = timedelta(days=7)
_SALT = "accounts.invitation"


# Invitations


def invitation_token(invitation: Invitation) -> str:
    """The signed token of an invitation link: names the invitation and the organisation."""
    return signing.dumps(
        {"i": invitation.pk, "s": connection.schema_name}, salt=_SALT, compress=True
    )


def invitation_create(*, email: str, role: str, actor: User, accept_url: str) -> Invitation:
    """Invite ``email``. ``accept_url`` is the link with ``{token}`` to fill in (built by the caller,
    who knows the host)."""
    email = (email or "").strip().lower()
    errors: dict[str, list[str]] = {}
    try:
        validate_email(email)
    except ValidationError:
        errors["email"] = [_("Enter a valid email address.")]
    if role not in roles_for_current_schema():
        errors["role"] = [_("Choose one of the organisation's roles.")]
    if not errors.get("email") and User.objects.filter(email__iexact=email).exists():
        errors["email"] = [_("This person is already a member.")]
    if (
        not errors.get("email")
        and Invitation.objects.filter(
            email__iexact=email, status=Invitation.Status.PENDING
        ).exists()
    ):
        errors["email"] = [
            _("This person already has a pending invitation. Revoke it to send a new one.")
        ]
    if errors:
        raise InvalidInput(_("The invitation could not be sent."), details=errors)

    with transaction.atomic():
        invitation = Invitation.objects.create(email=email, role=role, invited_by=actor)
        audit_record(
            action="invitation.created",
            actor=actor,
            target_type="invitation",
            target_id=invitation.pk,
            metadata={"email": email, "role": role},
        )
        link = accept_url.format(token=invitation_token(invitation))
        transaction.on_commit(lambda: _send_invitation(invitation, link))
    return invitation


def _send_invitation(invitation: Invitation, link: str) -> None:
    send_mail(
        subject=_("You are invited to join a workspace on Agent Factory"),
        message=_(
            "You have been invited to join a workspace on Agent Factory as %(role)s.\n\n"
            "Accept the invitation within seven days: %(link)s\n"
        )
        % {"role": invitation.get_role_display(), "link": link},
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[invitation.email],
    )


def invitation_for_token(token: str) -> Invitation:
    """The pending invitation a token names, or InvalidInput saying why it cannot be used (each
    refusal is audited)."""
    try:
        return _invitation_for_token(token)
    except InvalidInput as exc:
        audit_record(
            action="invitation.refused",
            outcome=AuditEvent.Outcome.DENIED,
            actor=Actor.anonymous(),
            target_type="invitation",
            metadata={"reason": exc.code},
        )
        raise


def _invitation_for_token(token: str) -> Invitation:
    try:
        data = signing.loads(token, salt=_SALT, max_age=INVITATION_VALIDITY)
    except signing.SignatureExpired as exc:
        raise InvalidInput(
            _("This invitation has expired. Ask an administrator for a new one."),
            code="invitation_expired",
        ) from exc
    except signing.BadSignature as exc:
        raise InvalidInput(
            _("This invitation link is not valid."), code="invitation_invalid"
        ) from exc
    if data.get("s") != connection.schema_name:
        raise InvalidInput(
            _(
                "This invitation is for another workspace. Open the link exactly as you received it."
            ),
            code="invitation_other_tenant",
        )
    invitation = Invitation.objects.filter(pk=data.get("i")).first()
    if invitation is None or invitation.status == Invitation.Status.REVOKED:
        raise InvalidInput(_("This invitation was withdrawn."), code="invitation_revoked")
    if invitation.status == Invitation.Status.ACCEPTED:
        raise InvalidInput(
            _("This invitation has already been used. Sign in instead."), code="invitation_used"
        )
    return invitation


def invitation_accept(*, token: str, password: str, full_name: str = "") -> User:
    with transaction.atomic():
        invitation = invitation_for_token(token)
        # Lock the row: two submissions of one link cannot both create an account.
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.status != Invitation.Status.PENDING:
            raise InvalidInput(
                _("This invitation has already been used. Sign in instead."), code="invitation_used"
            )
        try:
            validate_password(password, User(email=invitation.email))
        except ValidationError as exc:
            raise InvalidInput(
                _("Choose a stronger password."), details={"password": list(exc.messages)}
            ) from exc
        user = user_create(
            email=invitation.email,
            password=password,
            role=invitation.role,
            full_name=full_name.strip()[:150],
            actor=None,
            email_verified=True,  # the invitation reached this address
        )
        invitation.status = Invitation.Status.ACCEPTED
        invitation.accepted_at = timezone.now()
        invitation.accepted_user = user
        invitation.save(update_fields=["status", "accepted_at", "accepted_user"])
        audit_record(
            action="invitation.accepted",
            actor=user,
            target_type="invitation",
            target_id=invitation.pk,
            metadata={"email": invitation.email, "role": invitation.role},
        )
    return user


def invitation_revoke(*, invitation: Invitation, actor: User) -> Invitation:
    if invitation.status != Invitation.Status.PENDING:
        raise Conflict(_("Only a pending invitation can be revoked."), code="not_pending")
    with transaction.atomic():
        invitation.status = Invitation.Status.REVOKED
        invitation.save(update_fields=["status"])
        audit_record(
            action="invitation.revoked",
            actor=actor,
            target_type="invitation",
            target_id=invitation.pk,
            metadata={"email": invitation.email},
        )
    return invitation


# Members


def _ensure_an_admin_remains(member: User, *, losing_admin: bool) -> None:
    """Refuse when ``member`` is the last active tenant admin and is about to stop being one."""
    if not losing_admin or member.role != Role.TENANT_ADMIN or not member.is_active:
        return
    admins = list(
        User.objects.select_for_update()
        .filter(role=Role.TENANT_ADMIN, is_active=True)
        .values_list("pk", flat=True)
    )
    if admins == [member.pk]:
        raise Conflict(
            _(
                "This is the organisation's last active tenant admin. Make someone else a tenant admin first."
            ),
            code="last_admin",
        )


def member_role_change(*, member: User, role: str, actor: User) -> User:
    if role not in roles_for_current_schema():
        raise InvalidInput(
            _("Choose one of the organisation's roles."), details={"role": [_("Unknown role.")]}
        )
    with transaction.atomic():
        _ensure_an_admin_remains(member, losing_admin=role != Role.TENANT_ADMIN)
        before = member.role
        member.role = role
        member.is_staff = role == Role.TENANT_ADMIN
        member.save(update_fields=["role", "is_staff"])
        audit_record(
            action="member.role_changed",
            actor=actor,
            target_type="user",
            target_id=member.pk,
            metadata={"email": member.email, "from": before, "to": role},
        )
    return member


def member_deactivate(*, member: User, actor: User) -> User:
    if not member.is_active:
        raise Conflict(_("This member is already deactivated."), code="already_deactivated")
    with transaction.atomic():
        _ensure_an_admin_remains(member, losing_admin=True)
        member.is_active = False
        member.save(update_fields=["is_active"])
        audit_record(
            action="member.deactivated",
            actor=actor,
            target_type="user",
            target_id=member.pk,
            metadata={"email": member.email},
        )
    return member


def member_reactivate(*, member: User, actor: User) -> User:
    if member.is_active:
        raise Conflict(_("This member is already active."), code="already_active")
    with transaction.atomic():
        member.is_active = True
        member.save(update_fields=["is_active"])
        audit_record(
            action="member.reactivated",
            actor=actor,
            target_type="user",
            target_id=member.pk,
            metadata={"email": member.email},
        )
    return member


def member_remove(*, member: User, actor: User) -> None:
    with transaction.atomic():
        _ensure_an_admin_remains(member, losing_admin=True)
        pk, email = member.pk, member.email
        member.delete()
        audit_record(
            action="member.removed",
            actor=actor,
            target_type="user",
            target_id=pk,
            metadata={"email": email},
        )
