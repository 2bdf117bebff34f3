"""How allauth behaves in this product: organisations are joined by invitation or single sign-on
(never by open sign-up on a workspace host), and every failed or refused sign-in is audited."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record


def _attempted_identity(credentials: dict[str, Any]) -> str:
    return str(credentials.get("email") or credentials.get("username") or "")[:254]


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        # New organisations sign up on the public site (tenants:signup); people join one through
        # an invitation or their identity provider.
        return False

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        try:
            super().pre_authenticate(request, **credentials)
        except ValidationError:
            audit_record(
                action="auth.login_failed",
                actor=Actor.anonymous(_attempted_identity(credentials)),
                outcome=AuditEvent.Outcome.DENIED,
                metadata={"reason": "locked_out", "method": "password"},
            )
            raise

    def authentication_failed(self, request: HttpRequest, **credentials: Any) -> None:
        audit_record(
            action="auth.login_failed",
            actor=Actor.anonymous(_attempted_identity(credentials)),
            outcome=AuditEvent.Outcome.FAILURE,
            metadata={"reason": "invalid_credentials", "method": "password"},
        )
        super().authentication_failed(request, **credentials)


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest, sociallogin: Any) -> bool:
        # Just-in-time creation from a tenant's own identity provider is decided per connection.
        return True
