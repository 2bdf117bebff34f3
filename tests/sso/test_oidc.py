"""OpenID Connect sign-in end to end against tests/identity/oidc_provider.py over real HTTP:
allauth's code flow with our additions (nonce, PKCE S256, id_token signature against the JWKS,
issuer, audience, expiry and nonce checks)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.db import connection as db_connection
from django.test import Client
from django_tenants.utils import schema_context

from apps.accounts.models import Role
from apps.sso.models import Connection
from apps.sso.services import connection_create, connection_update
from tests.identity.oidc_provider import LocalOIDCProvider
from tests.sso.conftest import GROUP_MAPPING, events, last_failure, signed_in_email, user_or_none

CLIENT_ID = "acme-agents"
CLIENT_SECRET = "s3cret-value-that-must-never-show"
GRACE = "grace@acme.example"


@pytest.fixture
def provider(settings) -> Iterator[LocalOIDCProvider]:
    settings.SSO_ALLOW_INSECURE_URLS = True  # the local provider speaks http on 127.0.0.1
    settings.SSO_ALLOW_PRIVATE_NETWORKS = True
    with LocalOIDCProvider() as idp:
        yield idp
        assert idp.server_errors == []


def oidc_connection(org: Any, idp: LocalOIDCProvider, slug: str = "keycloak") -> Connection:
    idp.add_client(
        CLIENT_ID, CLIENT_SECRET, [f"http://{org.host}/accounts/oidc/{slug}/login/callback/"]
    )
    with schema_context(org.schema):
        return connection_create(
            actor=None,
            protocol="oidc",
            slug=slug,
            display_name="Keycloak",
            oidc_issuer=idp.issuer,
            oidc_client_id=CLIENT_ID,
            oidc_client_secret=CLIENT_SECRET,
            role_mapping=GROUP_MAPPING,
        )


def sign_in(org: Any, idp: LocalOIDCProvider, slug: str = "keycloak") -> tuple[Client, Any]:
    client = Client(HTTP_HOST=org.host)
    start = client.post(f"/accounts/oidc/{slug}/login/?process=login")
    assert start.status_code == 302, start.content[:300]
    assert start["Location"].startswith(idp.authorization_endpoint)
    at_idp = httpx.get(start["Location"], follow_redirects=False, timeout=5)
    assert at_idp.status_code == 302, at_idp.text
    back = httpx.URL(at_idp.headers["location"])
    response = client.get(back.path, dict(back.params), follow=True)
    return client, response


def test_sign_in_with_pkce_and_nonce_creates_the_person_with_the_mapped_role(db, acme, provider):
    oidc_connection(acme, provider)
    provider.next_user = {
        "sub": "kc-1",
        "email": GRACE,
        "given_name": "Grace",
        "family_name": "Hopper",
        "groups": ["engineering", "auditors"],
    }

    client, response = sign_in(acme, provider)

    assert response.status_code == 200
    assert signed_in_email(client, acme) == GRACE
    sent = provider.last_authorize_params
    assert sent["code_challenge_method"] == "S256"
    assert len(sent["nonce"]) >= 32
    assert provider.last_token_params["code_verifier"]
    assert provider.hits("/jwks") >= 1  # the id_token signature was checked
    user = user_or_none(acme, GRACE)
    assert (user.role, user.full_name) == (Role.DEVELOPER, "Grace Hopper")
    login = events(acme, "auth.login")[-1]
    assert (login.actor_label, login.metadata["method"]) == (GRACE, "oidc")
    assert events(acme, "sso.sign_in")[-1].metadata["connection"] == "keycloak"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ({"bad_signature": True}, "signature_invalid"),
        ({"iss": "http://127.0.0.1:1/evil"}, "wrong_issuer"),
        ({"aud": "someone-else"}, "audience"),
        ({"expired": True}, "expired"),
        ({"nonce": "attacker-nonce"}, "wrong_nonce"),
        ({"drop_nonce": True}, "wrong_nonce"),
        ({"alg_none": True}, "alg_none"),
    ],
    ids=[
        "bad-signature",
        "wrong-issuer",
        "wrong-audience",
        "expired",
        "wrong-nonce",
        "no-nonce",
        "alg-none",
    ],
)
def test_tampered_id_tokens_are_refused(db, acme, provider, tamper, reason):
    oidc_connection(acme, provider)
    provider.next_user = {"sub": "kc-2", "email": GRACE, "groups": ["admins"]}
    provider.tamper = tamper

    client, response = sign_in(acme, provider)

    assert response.status_code == 403
    assert "Single sign-on failed" in response.content.decode()
    assert signed_in_email(client, acme) is None
    failure = last_failure(acme)
    assert failure.metadata == {"reason": reason, "method": "oidc", "connection": "keycloak"}
    assert user_or_none(acme, GRACE) is None


def test_the_person_declining_at_the_provider_is_audited(db, acme, provider):
    oidc_connection(acme, provider)
    provider.next_user = None

    client, response = sign_in(acme, provider)

    assert response.status_code == 403
    assert signed_in_email(client, acme) is None
    assert last_failure(acme).metadata["reason"] == "cancelled"


def test_another_organisations_oidc_connection_is_not_found_here(db, acme, globex, provider):
    oidc_connection(globex, provider, slug="globex-kc")

    response = Client(HTTP_HOST=acme.host).post("/accounts/oidc/globex-kc/login/")

    assert response.status_code == 404


def test_the_client_secret_is_stored_encrypted_and_never_shown(db, acme, provider, client_for):
    connection = oidc_connection(acme, provider)
    with schema_context(acme.schema), db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT oidc_client_secret FROM sso_connection WHERE id = %s", [connection.pk]
        )
        (raw,) = cursor.fetchone()
    assert CLIENT_SECRET not in raw
    assert raw.startswith("enc1:")

    admin = client_for(acme.host, acme.admin_email)
    for path in ("/sso/", f"/sso/{connection.pk}/"):
        page = admin.get(path)
        assert page.status_code == 200
        assert CLIENT_SECRET not in page.content.decode()

    # Saving the form without a secret keeps it; a new one replaces it, audited without value.
    form = {
        "display_name": "Keycloak EU",
        "enabled": "on",
        "jit_enabled": "on",
        "default_role": "member",
        "oidc_issuer": provider.issuer,
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": "",
        "oidc_scopes": "openid email profile groups",
    }
    assert admin.post(f"/sso/{connection.pk}/", form).status_code == 302
    with schema_context(acme.schema):
        assert Connection.objects.get(pk=connection.pk).oidc_client_secret == CLIENT_SECRET
    assert (
        admin.post(f"/sso/{connection.pk}/", form | {"oidc_client_secret": "n3w"}).status_code
        == 302
    )
    with schema_context(acme.schema):
        assert Connection.objects.get(pk=connection.pk).oidc_client_secret == "n3w"
    change = events(acme, "sso_connection.changed")[-1]
    assert change.metadata["changes"]["oidc_client_secret"] == "secret replaced"
    for event in events(acme, "sso_connection.created") + events(acme, "sso_connection.changed"):
        assert CLIENT_SECRET not in str(event.metadata)
        assert "n3w" not in str(event.metadata)


def test_service_update_rejects_scopes_without_openid(db, acme, provider):
    from apps.core.exceptions import InvalidInput

    connection = oidc_connection(acme, provider)
    with schema_context(acme.schema), pytest.raises(InvalidInput) as caught:
        connection_update(actor=None, connection=connection, oidc_scopes="email profile")
    assert "oidc_scopes" in caught.value.details
