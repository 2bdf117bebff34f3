"""allauth's OpenID Connect provider with what its code flow leaves out (allauth 65.21 decodes
the id_token from the token endpoint with ``verify_signature=False`` and sends no nonce):

- a fresh ``nonce`` in every authorization request, kept in the sign-in state (session);
- the id_token's signature verified against the provider's JWKS (PyJWT ``PyJWKClient``), RS256
  or ES256 only (``none`` and HMAC are refused), with issuer, audience, expiry (60 s leeway) and
  nonce checked;
- PKCE S256 always on.

Selected through ``SOCIALACCOUNT_PROVIDERS["openid_connect"]["provider_class"]``; the URLs stay
``/accounts/oidc/<slug>/login/`` and ``/accounts/oidc/<slug>/login/callback/``.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

import jwt
import requests
from allauth.socialaccount.models import SocialApp, SocialToken
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from allauth.socialaccount.providers.oauth2.utils import generate_code_challenge
from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from django.http import HttpRequest, HttpResponse

ALLOWED_ALGORITHMS = ("RS256", "ES256")
LEEWAY_SECONDS = 60
JWKS_TIMEOUT_SECONDS = 5


class SSOLoginError(OAuth2Error):
    """A refused OIDC sign-in; ``sso_reason`` goes to the audit trail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.sso_reason = reason


def _normalise_issuer(url: str) -> str:
    return url.rstrip("/")


class TenantOIDCAdapter(OpenIDConnectOAuth2Adapter):
    expected_nonce: str | None = None

    @property
    def openid_config(self) -> dict[str, Any]:
        try:
            config = super().openid_config
        except (requests.RequestException, ValueError) as exc:
            raise SSOLoginError("discovery_failed", type(exc).__name__) from exc
        configured = _normalise_issuer(self.get_provider().app.settings["server_url"])
        # OIDC Discovery 4.3: the document's issuer must be the one we asked.
        if _normalise_issuer(str(config.get("issuer", ""))) != configured:
            raise SSOLoginError("wrong_issuer", "discovery document names another issuer")
        return dict(config)

    def complete_login(
        self, request: HttpRequest, app: SocialApp, token: SocialToken, **kwargs: Any
    ) -> Any:
        id_token = (kwargs.get("response") or {}).get("id_token")
        if not id_token:
            raise SSOLoginError("missing_id_token")
        claims = self.verify_id_token(app, id_token)
        data: dict[str, Any] = {"id_token": claims}
        try:
            userinfo = self._fetch_user_info(token.token)
        except (requests.RequestException, ValueError) as exc:
            raise SSOLoginError("userinfo_failed", type(exc).__name__) from exc
        # OIDC Core 5.3.2: a UserInfo response about someone else must not be used.
        if str(userinfo.get("sub")) != str(claims.get("sub")):
            raise SSOLoginError("userinfo_mismatch")
        data["userinfo"] = {**claims, **userinfo}
        return self.get_provider().sociallogin_from_response(request, data)

    def verify_id_token(self, app: SocialApp, id_token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise SSOLoginError("malformed_token") from exc
        alg = header.get("alg")
        if alg == "none":
            raise SSOLoginError("alg_none")
        if alg not in ALLOWED_ALGORITHMS:
            raise SSOLoginError("alg_not_allowed", str(alg))
        config = self.openid_config
        try:
            client = jwt.PyJWKClient(config["jwks_uri"], timeout=JWKS_TIMEOUT_SECONDS)
            key = client.get_signing_key_from_jwt(id_token)
        except (jwt.PyJWKClientError, KeyError) as exc:
            raise SSOLoginError("unknown_signing_key", type(exc).__name__) from exc
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key,
                algorithms=list(ALLOWED_ALGORITHMS),
                audience=app.client_id,
                issuer=_normalise_issuer(app.settings["server_url"]),
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.InvalidSignatureError as exc:
            raise SSOLoginError("signature_invalid") from exc
        except jwt.InvalidIssuerError as exc:
            raise SSOLoginError("wrong_issuer") from exc
        except jwt.InvalidAudienceError as exc:
            raise SSOLoginError("audience") from exc
        except jwt.ExpiredSignatureError as exc:
            raise SSOLoginError("expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise SSOLoginError("not_yet_valid") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise SSOLoginError("alg_not_allowed") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise SSOLoginError("missing_claim", exc.claim) from exc
        except jwt.PyJWTError as exc:
            raise SSOLoginError("malformed_token", type(exc).__name__) from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != app.client_id:
            raise SSOLoginError("audience", "azp")
        nonce = claims.get("nonce")
        if (
            not self.expected_nonce
            or not isinstance(nonce, str)
            or not hmac.compare_digest(nonce, self.expected_nonce)
        ):
            raise SSOLoginError("wrong_nonce")
        return claims


class TenantOIDCProvider(OpenIDConnectProvider):
    package = "apps.sso.oidc"  # allauth mounts apps/sso/oidc/urls.py instead of its own
    oauth2_adapter_class = TenantOIDCAdapter

    def get_pkce_params(self) -> dict[str, Any]:
        return dict(generate_code_challenge())  # S256, whatever the settings say

    def redirect(
        self,
        request: HttpRequest,
        process: Any,
        next_url: str | None = None,
        data: Any = None,
        **kwargs: Any,
    ) -> HttpResponse:
        nonce = secrets.token_urlsafe(32)
        auth_params = dict(kwargs.pop("auth_params", None) or self.get_auth_params())
        auth_params["nonce"] = nonce
        return super().redirect(
            request, process, next_url, data, auth_params=auth_params, nonce=nonce, **kwargs
        )
