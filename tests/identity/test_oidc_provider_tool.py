"""The local OpenID Connect provider used by the sign-in tests, checked over real HTTP: httpx as the
client, PyJWT with a JWKS fetched from the provider as the verifier, and allauth's own JWT code as
the relying party will use it."""

from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from allauth.socialaccount.internal import jwtkit, statekit
from allauth.socialaccount.models import SocialApp
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.http import HttpRequest
from django.test import RequestFactory
from jwt.types import Options

from tests.identity.oidc_provider import (
    DEFAULT_USER,
    LocalOIDCProvider,
    Tamper,
    b64url,
    pkce_pair,
)

CLIENT_ID = "acme-portal"
CLIENT_SECRET = "acme-portal-secret"
REDIRECT_URI = "http://acme.localhost:8000/accounts/oidc/acme/login/callback/"


@pytest.fixture
def idp() -> Iterator[LocalOIDCProvider]:
    with LocalOIDCProvider() as provider:
        provider.add_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
        yield provider
        assert provider.server_errors == []


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=False, timeout=5) as client:
        yield client


def authorize(
    idp: LocalOIDCProvider, http: httpx.Client, **params: str | None
) -> tuple[httpx.Response, dict[str, str]]:
    """GET /authorize (PKCE S256, state and nonce by default); returns the response and the
    redirect's query parameters."""
    query: dict[str, str | None] = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid profile email",
        "state": "state-123",
        "nonce": "nonce-456",
        **params,
    }
    response = http.get(
        idp.authorization_endpoint, params={k: v for k, v in query.items() if v is not None}
    )
    location = response.headers.get("location", "")
    return response, dict(httpx.URL(location).params) if location else {}


def code_for(idp: LocalOIDCProvider, http: httpx.Client, **params: str | None) -> tuple[str, str]:
    """An authorization code and the PKCE verifier it was bound to."""
    verifier, challenge = pkce_pair()
    response, result = authorize(
        idp, http, code_challenge=challenge, code_challenge_method="S256", **params
    )
    assert response.status_code == 302, response.text
    return result["code"], verifier


def exchange(
    idp: LocalOIDCProvider,
    http: httpx.Client,
    code: str,
    verifier: str | None,
    *,
    secret: str = CLIENT_SECRET,
    basic: bool = False,
    redirect_uri: str = REDIRECT_URI,
) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier is not None:
        form["code_verifier"] = verifier
    if basic:
        return http.post(idp.token_endpoint, data=form, auth=(CLIENT_ID, secret))
    return http.post(
        idp.token_endpoint, data={**form, "client_id": CLIENT_ID, "client_secret": secret}
    )


def id_token_for(idp: LocalOIDCProvider, http: httpx.Client, tamper: Tamper) -> str:
    idp.tamper = tamper
    code, verifier = code_for(idp, http)
    response = exchange(idp, http, code, verifier)
    assert response.status_code == 200, response.text
    return str(response.json()["id_token"])


def verify(idp: LocalOIDCProvider, token: str, relax: Options | None = None) -> dict[str, Any]:
    """Verify as a relying party does: key from the JWKS by kid, RS256 only, iss, aud and exp
    required and checked (``relax`` turns checks off)."""
    signing_key = jwt.PyJWKClient(idp.jwks_uri).get_signing_key_from_jwt(token)
    options: Options = {"require": ["iss", "sub", "aud", "exp", "iat"]}
    options.update(relax or {})
    return jwt.decode(
        token,
        signing_key,
        algorithms=["RS256"],
        audience=CLIENT_ID,
        issuer=idp.issuer,
        options=options,
    )


# -- discovery and keys -------------------------------------------------------------------------


def test_discovery_document(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    assert idp.issuer == f"http://127.0.0.1:{idp.port}"
    response = http.get(idp.discovery_url)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    assert doc["issuer"] == idp.issuer
    assert doc["authorization_endpoint"] == f"{idp.issuer}/authorize"
    assert doc["token_endpoint"] == f"{idp.issuer}/token"
    assert doc["userinfo_endpoint"] == f"{idp.issuer}/userinfo"
    assert doc["jwks_uri"] == f"{idp.issuer}/jwks"
    assert doc["response_types_supported"] == ["code"]
    assert doc["subject_types_supported"] == ["public"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_post",
        "client_secret_basic",
    ]
    assert idp.requests == [("GET", "/.well-known/openid-configuration")]


def test_discovery_overrides(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    idp.discovery_overrides = {"token_endpoint_auth_methods_supported": ["client_secret_basic"]}

    doc = http.get(idp.discovery_url).json()

    assert doc["token_endpoint_auth_methods_supported"] == ["client_secret_basic"]
    assert doc["issuer"] == idp.issuer


def test_jwks_publishes_the_rsa_2048_signing_key(
    idp: LocalOIDCProvider, http: httpx.Client
) -> None:
    keys = http.get(idp.jwks_uri).json()["keys"]

    assert len(keys) == 1
    (key,) = keys
    assert {k: key[k] for k in ("kty", "use", "alg", "kid")} == {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": idp.kid,
    }
    public_key = jwt.PyJWK(key).key
    assert public_key.key_size == 2048
    assert "d" not in key  # public part only


def test_path_prefix_is_part_of_issuer_and_endpoints(http: httpx.Client) -> None:
    with LocalOIDCProvider(path_prefix="/realms/acme/") as idp:
        assert idp.issuer == f"http://127.0.0.1:{idp.port}/realms/acme"
        doc = http.get(idp.discovery_url).json()
        assert doc["issuer"] == idp.issuer
        assert doc["jwks_uri"] == f"{idp.issuer}/jwks"
        assert http.get(f"http://127.0.0.1:{idp.port}/jwks").status_code == 404
        assert idp.hits("/.well-known/openid-configuration") == 1


# -- the authorization-code flow ----------------------------------------------------------------


def test_code_flow_with_pkce(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    idp.next_user = {
        "sub": "u-42",
        "email": "ada@acme.example",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "groups": ["admins", "engineering"],
    }
    verifier, challenge = pkce_pair()

    response, result = authorize(idp, http, code_challenge=challenge, code_challenge_method="S256")

    assert response.status_code == 302
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    assert set(result) == {"code", "state"}
    assert result["state"] == "state-123"
    assert idp.last_authorize_params is not None
    assert idp.last_authorize_params["code_challenge"] == challenge
    assert idp.last_authorize_params["code_challenge_method"] == "S256"

    response = exchange(idp, http, result["code"], verifier)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 300
    assert tokens["access_token"]
    assert idp.last_token_params is not None
    assert idp.last_token_params["code_verifier"] == verifier
    assert idp.last_token_auth_method == "client_secret_post"
    assert idp.last_id_token == tokens["id_token"]

    header = jwt.get_unverified_header(tokens["id_token"])
    assert header == {"alg": "RS256", "typ": "JWT", "kid": idp.kid}
    claims = verify(idp, tokens["id_token"])
    assert claims["iss"] == idp.issuer
    assert claims["aud"] == CLIENT_ID
    assert claims["nonce"] == "nonce-456"
    assert claims["sub"] == "u-42"
    assert claims["email"] == "ada@acme.example"
    assert claims["email_verified"] is True
    assert claims["given_name"] == "Ada"
    assert claims["family_name"] == "Lovelace"
    assert claims["name"] == "Ada Lovelace"
    assert claims["groups"] == ["admins", "engineering"]
    assert 0 < claims["exp"] - claims["iat"] <= 300
    at_hash = b64url(hashlib.sha256(tokens["access_token"].encode()).digest()[:16])
    assert claims["at_hash"] == at_hash

    response = http.get(
        idp.userinfo_endpoint, headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )

    assert response.status_code == 200
    assert response.json() == {
        "sub": "u-42",
        "email": "ada@acme.example",
        "email_verified": True,
        "given_name": "Ada",
        "family_name": "Lovelace",
        "name": "Ada Lovelace",
        "groups": ["admins", "engineering"],
    }
    assert idp.requests == [
        ("GET", "/authorize"),
        ("POST", "/token"),
        ("GET", "/jwks"),
        ("GET", "/userinfo"),
    ]


def test_default_user_signs_in_when_none_chosen(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    code, verifier = code_for(idp, http)
    claims = verify(idp, exchange(idp, http, code, verifier).json()["id_token"])

    assert {k: claims[k] for k in DEFAULT_USER} == DEFAULT_USER


def test_client_secret_basic(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    code, verifier = code_for(idp, http)

    response = exchange(idp, http, code, verifier, basic=True)

    assert response.status_code == 200, response.text
    assert idp.last_token_auth_method == "client_secret_basic"
    assert idp.last_token_params is not None
    assert "client_secret" not in idp.last_token_params


def test_client_restricted_to_one_auth_method(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    idp.add_client(
        CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI], token_endpoint_auth_method="client_secret_basic"
    )
    code, verifier = code_for(idp, http)

    response = exchange(idp, http, code, verifier)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert exchange(idp, http, code, verifier, basic=True).status_code == 200


def test_flow_without_pkce_when_not_required(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    response, result = authorize(idp, http)
    assert response.status_code == 302

    tokens = exchange(idp, http, result["code"], None).json()

    assert verify(idp, tokens["id_token"])["nonce"] == "nonce-456"


def test_no_nonce_claim_when_none_was_sent(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    code, verifier = code_for(idp, http, nonce=None)

    claims = verify(idp, exchange(idp, http, code, verifier).json()["id_token"])

    assert "nonce" not in claims


# -- refused exchanges --------------------------------------------------------------------------


def test_code_is_single_use(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    code, verifier = code_for(idp, http)
    first = exchange(idp, http, code, verifier)
    assert first.status_code == 200

    replay = exchange(idp, http, code, verifier)

    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # The replay revokes the access token the code was exchanged for.
    userinfo = http.get(
        idp.userinfo_endpoint,
        headers={"Authorization": f"Bearer {first.json()['access_token']}"},
    )
    assert userinfo.status_code == 401
    assert userinfo.json()["error"] == "invalid_token"


@pytest.mark.parametrize("verifier", ["wrong-" + "v" * 60, None], ids=["wrong", "missing"])
def test_code_verifier_must_match_challenge(
    idp: LocalOIDCProvider, http: httpx.Client, verifier: str | None
) -> None:
    code, _ = code_for(idp, http)

    response = exchange(idp, http, code, verifier)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("basic", [False, True], ids=["client_secret_post", "client_secret_basic"])
def test_wrong_client_secret(idp: LocalOIDCProvider, http: httpx.Client, basic: bool) -> None:
    code, verifier = code_for(idp, http)

    response = exchange(idp, http, code, verifier, secret="not-the-secret", basic=basic)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")
    assert idp.last_token_auth_method is None
    # The code was not spent by the failed attempt.
    assert exchange(idp, http, code, verifier, basic=basic).status_code == 200


def test_missing_client_authentication(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    code, verifier = code_for(idp, http)

    response = http.post(
        idp.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
            "code_verifier": verifier,
        },
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_redirect_uri_must_match_at_token(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    code, verifier = code_for(idp, http)

    response = exchange(idp, http, code, verifier, redirect_uri="http://elsewhere.test/cb")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_grant_type_must_be_authorization_code(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    response = http.post(
        idp.token_endpoint,
        data={"grant_type": "password", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )

    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_forced_token_error(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    code, verifier = code_for(idp, http)
    idp.tamper = {"token_error": "invalid_grant"}

    response = exchange(idp, http, code, verifier)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_require_pkce(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    idp.require_pkce = True

    response, result = authorize(idp, http)

    assert response.status_code == 302
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    assert result == {
        "error": "invalid_request",
        "error_description": "code_challenge required",
        "state": "state-123",
    }


def test_only_s256_challenges(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    response, result = authorize(idp, http, code_challenge="x" * 43, code_challenge_method="plain")

    assert response.status_code == 302
    assert result["error"] == "invalid_request"
    assert "code" not in result


def test_person_declines(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    idp.next_user = None

    response, result = authorize(idp, http)

    assert response.status_code == 302
    assert result["error"] == "access_denied"
    assert result["state"] == "state-123"


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "profile email"}, "invalid_scope"),
    ],
)
def test_authorize_errors_are_redirected(
    idp: LocalOIDCProvider, http: httpx.Client, params: dict[str, str], error: str
) -> None:
    response, result = authorize(idp, http, **params)

    assert response.status_code == 302
    assert result["error"] == error
    assert result["state"] == "state-123"


@pytest.mark.parametrize(
    "params",
    [{"client_id": "nobody"}, {"redirect_uri": "http://evil.test/cb"}],
    ids=["unknown-client", "unregistered-redirect-uri"],
)
def test_authorize_never_redirects_to_unverified_uri(
    idp: LocalOIDCProvider, http: httpx.Client, params: dict[str, str]
) -> None:
    response, _ = authorize(idp, http, **params)

    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.json()["error"] == "invalid_request"


def test_userinfo_requires_a_bearer_token(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    missing = http.get(idp.userinfo_endpoint)
    unknown = http.get(idp.userinfo_endpoint, headers={"Authorization": "Bearer nope"})

    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert unknown.status_code == 401
    assert unknown.json()["error"] == "invalid_token"


def test_userinfo_tamper(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    idp.tamper = {"userinfo": {"sub": "someone-else"}}
    code, verifier = code_for(idp, http)
    tokens = exchange(idp, http, code, verifier).json()

    userinfo = http.get(
        idp.userinfo_endpoint, headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).json()

    assert userinfo["sub"] == "someone-else"
    assert verify(idp, tokens["id_token"])["sub"] == DEFAULT_USER["sub"]


# -- tampered id_tokens -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tamper", "error", "disabled_check"),
    [
        ({"bad_signature": True}, jwt.InvalidSignatureError, {"verify_signature": False}),
        ({"iss": "http://127.0.0.1:1/evil"}, jwt.InvalidIssuerError, {"verify_iss": False}),
        ({"aud": "someone-else"}, jwt.InvalidAudienceError, {"verify_aud": False}),
        ({"expired": True}, jwt.ExpiredSignatureError, {"verify_exp": False}),
    ],
    ids=["bad-signature", "wrong-iss", "wrong-aud", "expired"],
)
def test_tampered_id_token_is_rejected_for_that_reason(
    idp: LocalOIDCProvider,
    http: httpx.Client,
    tamper: Tamper,
    error: type[jwt.PyJWTError],
    disabled_check: Options,
) -> None:
    token = id_token_for(idp, http, tamper)

    with pytest.raises(error) as caught:
        verify(idp, token)

    assert type(caught.value) is error
    # Nothing else is wrong with it: without that one check the token verifies.
    if "verify_signature" in disabled_check:
        options: Options = {"verify_signature": False, "verify_iss": True}
        claims = jwt.decode(
            token, options=options, issuer=idp.issuer, audience=CLIENT_ID, algorithms=["RS256"]
        )
        assert jwt.get_unverified_header(token)["kid"] == idp.kid
    else:
        claims = verify(idp, token, disabled_check)
    assert claims["sub"] == DEFAULT_USER["sub"]


def test_wrong_nonce(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    claims = verify(idp, id_token_for(idp, http, {"nonce": "attacker-nonce"}))

    assert claims["nonce"] == "attacker-nonce"
    assert idp.last_authorize_params is not None
    assert claims["nonce"] != idp.last_authorize_params["nonce"]


def test_missing_nonce(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    claims = verify(idp, id_token_for(idp, http, {"drop_nonce": True}))

    assert idp.last_authorize_params is not None
    assert idp.last_authorize_params["nonce"] == "nonce-456"
    assert "nonce" not in claims


def test_alg_none_is_rejected_when_rs256_is_required(
    idp: LocalOIDCProvider, http: httpx.Client
) -> None:
    token = id_token_for(idp, http, {"alg_none": True})

    assert jwt.get_unverified_header(token)["alg"] == "none"
    assert token.endswith(".")
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(idp, token)


def test_claims_and_drop_claims(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    token = id_token_for(
        idp, http, {"claims": {"groups": ["root"], "acr": "mfa"}, "drop_claims": ["email"]}
    )

    claims = verify(idp, token)

    assert claims["groups"] == ["root"]
    assert claims["acr"] == "mfa"
    assert "email" not in claims


def test_unknown_tamper_key_is_refused(idp: LocalOIDCProvider) -> None:
    with pytest.raises(ValueError, match="unknown tamper keys"):
        idp.tamper = {"expird": True}  # type: ignore[typeddict-unknown-key]


def test_next_user_needs_a_subject(idp: LocalOIDCProvider) -> None:
    with pytest.raises(ValueError, match="sub"):
        idp.next_user = {"email": "nobody@example.com"}


# -- allauth's own id_token verification against the provider -----------------------------------


def test_allauth_verifies_tokens_with_the_jwks_over_http(
    idp: LocalOIDCProvider, http: httpx.Client
) -> None:
    """allauth's token-authentication path (``OpenIDConnectProvider.verify_token``) checks the
    signature with the key the JWKS publishes for the token's kid, fetched with requests."""
    doc = http.get(idp.discovery_url).json()

    def allauth_verify(token: str) -> dict[str, Any]:
        return jwtkit.verify_and_decode(
            credential=token,
            keys_url=doc["jwks_uri"],
            issuer=doc["issuer"],
            audience=[CLIENT_ID],
            lookup_kid=jwtkit.lookup_kid_jwk,
        )

    assert allauth_verify(id_token_for(idp, http, {}))["sub"] == DEFAULT_USER["sub"]
    tampers: list[Tamper] = [
        {"bad_signature": True},
        {"iss": "http://127.0.0.1:1/evil"},
        {"aud": "someone-else"},
        {"expired": True},
    ]
    for tamper in tampers:
        with pytest.raises(OAuth2Error, match="Invalid id_token"):
            allauth_verify(id_token_for(idp, http, tamper))
    assert idp.hits("/jwks") == 5


@pytest.mark.parametrize(
    "tamper",
    [{"bad_signature": True}, {"alg_none": True}, {"nonce": "other"}, {"drop_nonce": True}],
    ids=["bad-signature", "alg-none", "wrong-nonce", "no-nonce"],
)
def test_allauth_code_flow_decoding_does_not_check_signature_or_nonce(
    idp: LocalOIDCProvider, http: httpx.Client, tamper: Tamper
) -> None:
    """What allauth 65.21's ``OpenIDConnectOAuth2Adapter._decode_id_token`` does after a token
    exchange: ``verify_signature=False`` (the token came straight from the token endpoint) and no
    nonce check. Pinned so that an allauth upgrade that changes it is noticed."""
    token = id_token_for(idp, http, tamper)

    claims = jwtkit.verify_and_decode(
        credential=token,
        keys_url=idp.jwks_uri,
        issuer=idp.issuer,
        audience=CLIENT_ID,
        lookup_kid=jwtkit.lookup_kid_jwk,
        verify_signature=False,
    )

    assert claims["sub"] == DEFAULT_USER["sub"]
    assert idp.hits("/jwks") == 0


@pytest.mark.parametrize(
    "tamper",
    [{"iss": "http://127.0.0.1:1/evil"}, {"aud": "someone-else"}, {"expired": True}],
    ids=["wrong-iss", "wrong-aud", "expired"],
)
def test_allauth_code_flow_decoding_checks_iss_aud_exp(
    idp: LocalOIDCProvider, http: httpx.Client, tamper: Tamper
) -> None:
    token = id_token_for(idp, http, tamper)

    with pytest.raises(OAuth2Error, match="Invalid id_token"):
        jwtkit.verify_and_decode(
            credential=token,
            keys_url=idp.jwks_uri,
            issuer=idp.issuer,
            audience=CLIENT_ID,
            lookup_kid=jwtkit.lookup_kid_jwk,
            verify_signature=False,
        )


class _AppProvider(OpenIDConnectProvider):
    """allauth's OIDC provider for an unsaved SocialApp (no database lookup of the app)."""

    def get_oauth2_adapter(self, request: HttpRequest) -> OpenIDConnectOAuth2Adapter:
        return _AppAdapter(request, self.app.provider_id, self)


class _AppAdapter(OpenIDConnectOAuth2Adapter):
    def __init__(self, request: HttpRequest, provider_id: str, provider: _AppProvider) -> None:
        super().__init__(request, provider_id)
        self._provider = provider

    def get_provider(self) -> _AppProvider:
        return self._provider


def test_allauth_oidc_adapter_completes_a_login(idp: LocalOIDCProvider, http: httpx.Client) -> None:
    """allauth's own OAuth2/OIDC code (requests for discovery, token and userinfo; PKCE from
    SOCIALACCOUNT_PROVIDERS) against the provider, up to the SocialLogin it builds."""
    callback = "http://acme.localhost/accounts/oidc/acme/login/callback/"
    idp.add_client("acme-sso", "acme-sso-secret", [callback])
    idp.next_user = {"sub": "u-7", "email": "grace@acme.example", "groups": ["admins"]}
    app = SocialApp(
        provider="openid_connect",
        provider_id="acme",
        name="Acme SSO",
        client_id="acme-sso",
        secret="acme-sso-secret",
        settings={"server_url": idp.issuer},
    )
    factory = RequestFactory(HTTP_HOST="acme.localhost")
    login_request = factory.post("/accounts/oidc/acme/login/")
    login_request.session = SessionStore()
    provider = _AppProvider(login_request, app=app)

    redirect = provider.redirect(login_request, "login")
    response = http.get(redirect["Location"])

    assert response.status_code == 302
    result = httpx.URL(response.headers["location"])
    assert str(result.copy_with(query=None)) == callback
    sent = idp.last_authorize_params
    assert sent is not None
    assert sent["code_challenge_method"] == "S256"  # OAUTH_PKCE_ENABLED in settings
    assert "nonce" not in sent  # allauth sends none

    callback_request = factory.get(result.path, dict(result.params))
    callback_request.session = login_request.session
    state = statekit.unstash_state(
        callback_request, provider_id="acme", state_id=result.params["state"]
    )
    adapter = provider.get_oauth2_adapter(callback_request)
    client = adapter.get_client(callback_request, app)
    token_data = adapter.get_access_token_data(
        callback_request, app, client, pkce_code_verifier=state["pkce_code_verifier"]
    )
    login = adapter.complete_login(
        callback_request, app, adapter.parse_token(token_data), response=token_data
    )

    assert login.account.uid == "u-7"
    assert login.account.extra_data["id_token"]["groups"] == ["admins"]
    assert login.account.extra_data["userinfo"]["email"] == "grace@acme.example"
    assert [(e.email, e.verified) for e in login.email_addresses] == [("grace@acme.example", True)]
    assert idp.last_token_auth_method == "client_secret_post"
    assert idp.last_token_params is not None
    assert idp.last_token_params["code_verifier"] == state["pkce_code_verifier"]
    assert idp.requests == [
        ("GET", "/.well-known/openid-configuration"),
        ("GET", "/authorize"),
        ("GET", "/.well-known/openid-configuration"),
        ("POST", "/token"),
        ("GET", "/userinfo"),
    ]  # no /jwks: the id_token from the token endpoint is not signature-checked


# -- the server itself --------------------------------------------------------------------------


def test_binds_loopback_only_and_stops_cleanly() -> None:
    provider = LocalOIDCProvider()
    with provider:
        port = provider.port
        assert provider.running
        assert provider._server is not None
        assert provider._server.server_address[0] == "127.0.0.1"
        assert httpx.get(provider.jwks_uri).status_code == 200
        thread = provider._thread
    assert not provider.running
    assert thread is not None
    assert not thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/jwks", timeout=2)
    # Nothing listens there any more (SO_REUSEADDR: the closed connections may be in TIME_WAIT).
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
    provider.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not running"):
        _ = provider.issuer


def test_basic_credentials_are_form_decoded(http: httpx.Client) -> None:
    """RFC 6749 2.3.1 form-encodes client_id and secret before Basic; requests does not."""
    with LocalOIDCProvider() as idp:
        idp.add_client("id:with colon", "p@ss word+", [REDIRECT_URI])
        _, result = authorize(idp, http, client_id="id:with colon")
        raw = base64.b64encode(b"id%3Awith+colon:p%40ss+word%2B").decode()

        response = http.post(
            idp.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": result["code"],
                "redirect_uri": REDIRECT_URI,
            },
            headers={"Authorization": f"Basic {raw}"},
        )

        assert response.status_code == 200, response.text
        assert idp.last_token_auth_method == "client_secret_basic"
