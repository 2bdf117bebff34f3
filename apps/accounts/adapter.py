"""How allauth behaves in this product: organisations are joined by invitation or single sign-on
(never by open sign-up on a workspace host), and every failed or refused sign-in is audited.

Single sign-on (apps/sso): allauth's ``SocialApp`` objects are built from the organisation's
connections at run time (``list_apps``/``get_app``), an SSO sign-in resolves its person through
``apps.sso.services.sso_sign_in`` (links, just-in-time creation, group → role mapping), and every
SSO failure ends on one error page with one audit event (``on_authentication_error``). When the
organisation requires SSO, password sign-in is refused for everyone but the break-glass admin.
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialApp
from django.core.exceptions import MultipleObjectsReturned, ValidationError
from django.http import HttpRequest

from apps.accounts.policy import password_sign_in_check
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

    def authenticate(self, request: HttpRequest, **credentials: Any) -> Any:
        user = super().authenticate(request, **credentials)
        # Checked after the password, so that the answer reveals nothing to someone who does not
        # know it.
        if user is not None:
            password_sign_in_check(user, attempted=_attempted_identity(credentials))
        return user

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
        # Just-in-time creation from a tenant's own identity provider is decided per connection
        # (apps.sso.services.sso_sign_in, called from pre_social_login).
        return True

    def list_apps(
        self, request: HttpRequest, provider: str | None = None, client_id: str | None = None
    ) -> list[SocialApp]:
        """The organisation's enabled connections, as unsaved SocialApps. Stored SocialApp rows
        and settings-defined apps are deliberately ignored: connections are the one source."""
        from apps.sso.socialapps import social_apps

        return social_apps(provider=provider, client_id=client_id)

    def get_app(self, request: HttpRequest, provider: str, client_id: str | None = None) -> Any:
        apps = self.list_apps(request, provider=provider, client_id=client_id)
        if not apps:
            raise SocialApp.DoesNotExist()
        if len(apps) > 1:
            raise MultipleObjectsReturned
        return apps[0]

    def pre_social_login(self, request: HttpRequest, sociallogin: Any) -> None:
        from apps.sso.identity import identity_from
        from apps.sso.selectors import connection_enabled_by_slug
        from apps.sso.services import SignInRefused, sso_sign_in
        from apps.sso.views import sign_in_failed

        connection = connection_enabled_by_slug(slug=sociallogin.account.provider)
        if connection is None:
            raise ImmediateHttpResponse(
                sign_in_failed(request, reason="unknown_connection", method="sso", slug="")
            )
        request._agentfactory_sso = connection.protocol  # type: ignore[attr-defined]
        identity = identity_from(connection=connection, sociallogin=sociallogin)
        try:
            user = sso_sign_in(
                connection=connection, identity=identity, account=sociallogin.account
            )
        except SignInRefused as exc:
            raise ImmediateHttpResponse(
                sign_in_failed(
                    request,
                    reason=exc.reason,
                    method=connection.protocol,
                    slug=connection.slug,
                    message=exc.message,
                    attempted=identity.email,
                )
            ) from exc
        sociallogin.user = user

    def on_authentication_error(
        self,
        request: HttpRequest,
        provider: Any,
        error: Any = None,
        exception: Any = None,
        extra_context: Any = None,
    ) -> None:
        from apps.sso.views import failure_reason, sign_in_failed

        reason, method = failure_reason(
            provider=provider, error=error, exception=exception, extra=extra_context or {}
        )
        raise ImmediateHttpResponse(
            sign_in_failed(
                request, reason=reason, method=method, slug=str(getattr(provider, "sub_id", ""))
            )
        )
