"""Sign-in and sign-out reach the audit trail through Django's own authentication signals: they
fire for every way of signing in (pages, admin, SSO), which no single view sees. The receivers
record; they decide nothing."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver

from apps.audit.services import audit_record


def _method(request: Any) -> str:
    sociallogin = getattr(request, "_agentfactory_sso", None)
    return str(sociallogin) if sociallogin else "password"


@receiver(user_logged_in, dispatch_uid="audit_user_logged_in")
def audit_sign_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit_record(
        action="auth.login",
        actor=user,
        target_type="user",
        target_id=user.pk,
        metadata={"method": _method(request)},
    )


@receiver(user_logged_out, dispatch_uid="audit_user_logged_out")
def audit_sign_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    audit_record(action="auth.logout", actor=user, target_type="user", target_id=user.pk)
