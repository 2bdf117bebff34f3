"""allauth's OIDC login and callback views with our adapter; the callback hands the nonce kept
in the sign-in state to the adapter, which checks it against the id_token."""

from __future__ import annotations

from typing import Any

from allauth.account.internal.decorators import login_not_required
from allauth.socialaccount.models import SocialApp
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from django.http import Http404, HttpRequest, HttpResponse

from apps.sso.oidc.provider import TenantOIDCAdapter


class TenantOIDCCallbackView(OAuth2CallbackView):
    adapter: TenantOIDCAdapter

    def _get_state(self, request: HttpRequest, provider: Any) -> Any:
        state, response = super()._get_state(request, provider)
        if state is not None:
            self.adapter.expected_nonce = state.get("nonce")
        return state, response


@login_not_required
def login(request: HttpRequest, provider_id: str) -> HttpResponse:
    try:
        view = OAuth2LoginView.adapter_view(TenantOIDCAdapter(request, provider_id))
        return view(request)
    except SocialApp.DoesNotExist as exc:
        raise Http404 from exc


@login_not_required
def callback(request: HttpRequest, provider_id: str) -> HttpResponse:
    try:
        view = TenantOIDCCallbackView.adapter_view(TenantOIDCAdapter(request, provider_id))
        request._agentfactory_sso = "oidc"  # type: ignore[attr-defined]
        return view(request)
    except SocialApp.DoesNotExist as exc:
        raise Http404 from exc
