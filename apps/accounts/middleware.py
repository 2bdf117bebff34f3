"""Enforce the organisation's "require two-factor authentication" policy."""

from __future__ import annotations

from collections.abc import Callable

from allauth.mfa.models import Authenticator
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _

from apps.accounts.policy import security_policy_get
from apps.core.middleware import is_api_request, json_error_response

# Reachable without a second factor: signing in and out, setting up the factor, static files,
# the language switch and the probes.
_EXEMPT_PREFIXES = ("/accounts/", "/static/", "/i18n/", "/healthz", "/readyz", "/metrics")


class RequireMfaMiddleware:
    """When the policy requires it, a signed-in person without an authenticator app is sent to set
    one up before anything else (API calls made with their session get a 403 saying so)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self._must_set_up_mfa(request):
            if is_api_request(request):
                return json_error_response(
                    403,
                    code="mfa_required",
                    message=_(
                        "Your organisation requires two-factor authentication. Set it up first."
                    ),
                )
            return redirect("mfa_activate_totp")
        return self.get_response(request)

    @staticmethod
    def _must_set_up_mfa(request: HttpRequest) -> bool:
        user = getattr(request, "user", None)
        tenant = getattr(request, "tenant", None)
        if user is None or not user.is_authenticated or tenant is None:
            return False
        if tenant.schema_name == settings.PUBLIC_SCHEMA_NAME or request.path.startswith(
            _EXEMPT_PREFIXES
        ):
            return False
        if not security_policy_get().require_mfa:
            return False
        return not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
