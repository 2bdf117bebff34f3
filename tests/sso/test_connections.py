"""Managing connections: the pages (tenant admins only), the service's validation of SAML
metadata and certificates, the metadata fetch (from a local server), auditing, and require-SSO."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from apps.accounts.policy import security_policy_update
from apps.accounts.services import user_create
from apps.core.exceptions import InvalidInput
from apps.sso.models import Connection
from apps.sso.services import connection_create, connection_delete
from tests.conftest import PASSWORD
from tests.sso.conftest import events, last_failure, saml_connection


def saml_form(idp, **overrides):
    form = {
        "display_name": "Entra ID",
        "slug": "entra",
        "enabled": "on",
        "jit_enabled": "on",
        "default_role": "member",
        "role_mapping": "agent-admins = tenant_admin\nagent-devs = developer",
        "saml_name_id_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        "saml_metadata": idp.metadata_xml(),
    }
    form.update(overrides)
    return form


def test_tenant_admins_create_a_saml_connection_from_metadata(db, acme, idp, client_for):
    admin = client_for(acme.host, acme.admin_email)

    response = admin.post("/sso/new/saml/", saml_form(idp))

    assert response.status_code == 302
    with schema_context(acme.schema):
        connection = Connection.objects.get(slug="entra")
    assert connection.saml_entity_id == idp.entity_id
    assert connection.saml_sso_url == idp.sso_url
    assert connection.saml_certificates == [idp.keypair.certificate_b64]
    assert connection.role_mapping == [
        {"group": "agent-admins", "role": "tenant_admin"},
        {"group": "agent-devs", "role": "developer"},
    ]
    created = events(acme, "sso_connection.created")[-1]
    assert created.actor_label == acme.admin_email
    assert created.metadata["slug"] == "entra"
    listing = admin.get("/sso/").content.decode()
    assert f"http://{acme.host}/accounts/saml/entra/metadata/" in listing
    assert f"http://{acme.host}/accounts/saml/entra/acs/" in listing


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("this is <not xml", "not valid SAML metadata XML"),
        (None, "Add a signing certificate"),
    ],
    ids=["not-xml", "no-certificate"],
)
def test_bad_metadata_is_refused_with_a_field_error(db, acme, idp, client_for, metadata, message):
    admin = client_for(acme.host, acme.admin_email)
    xml = metadata if metadata is not None else idp.metadata_without_certificate()

    response = admin.post("/sso/new/saml/", saml_form(idp, saml_metadata=xml))

    assert response.status_code == 400
    page = response.content.decode()
    assert message in page
    assert 'class="field field-invalid"' in page
    with schema_context(acme.schema):
        assert not Connection.objects.exists()


def test_a_doctype_in_metadata_is_refused(db, acme, idp):
    xml = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>'
        + idp.metadata_xml().split("?>", 1)[1]
    )
    with schema_context(acme.schema), pytest.raises(InvalidInput) as caught:
        connection_create(
            actor=None, protocol="saml", slug="dtd", display_name="DTD", saml_metadata_xml=xml
        )
    assert "saml_metadata" in caught.value.details


def test_certificates_are_required_and_validated(db, acme, idp):
    base = {
        "display_name": "Okta",
        "saml_entity_id": idp.entity_id,
        "saml_sso_url": idp.sso_url,
    }
    with schema_context(acme.schema):
        with pytest.raises(InvalidInput) as missing:
            connection_create(actor=None, protocol="saml", slug="okta", **base)
        with pytest.raises(InvalidInput) as garbage:
            connection_create(
                actor=None,
                protocol="saml",
                slug="okta",
                saml_certificates=["bm90IGEgY2VydA=="],
                **base,
            )
    assert "saml_certificates" in missing.value.details
    assert "saml_certificates" in garbage.value.details


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("slug", "Not A Slug"),
        ("slug", "saml"),
        ("default_role", "platform_admin"),
        ("role_mapping", [{"group": "x", "role": "platform_admin"}]),
        ("role_mapping", [{"group": "", "role": "member"}]),
        ("saml_sso_url", "http://idp.example.test/sso"),
    ],
)
def test_invalid_settings_are_refused_field_by_field(db, acme, idp, field, value):
    options = {
        "slug": "okta",
        "display_name": "Okta",
        "saml_entity_id": idp.entity_id,
        "saml_sso_url": idp.sso_url,
        "saml_certificates": [idp.keypair.certificate_b64],
    }
    options[field] = value
    with schema_context(acme.schema), pytest.raises(InvalidInput) as caught:
        connection_create(actor=None, protocol="saml", **options)
    assert field in caught.value.details


@pytest.fixture
def metadata_server(idp) -> Iterator[str]:
    body = idp.metadata_xml().encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/samlmetadata+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metadata"
    finally:
        server.shutdown()
        server.server_close()


def test_metadata_is_fetched_server_side_from_its_url(db, acme, idp, metadata_server, settings):
    settings.SSO_ALLOW_INSECURE_URLS = True
    settings.SSO_ALLOW_PRIVATE_NETWORKS = True
    with schema_context(acme.schema):
        connection = connection_create(
            actor=None,
            protocol="saml",
            slug="fetched",
            display_name="Fetched",
            saml_metadata_url=metadata_server,
        )
    assert connection.saml_entity_id == idp.entity_id
    assert connection.saml_certificates == [idp.keypair.certificate_b64]


def test_metadata_on_private_addresses_is_not_fetched_by_default(
    db, acme, metadata_server, settings
):
    settings.SSO_ALLOW_INSECURE_URLS = True
    with schema_context(acme.schema), pytest.raises(InvalidInput) as caught:
        connection_create(
            actor=None,
            protocol="saml",
            slug="fetched",
            display_name="Fetched",
            saml_metadata_url=metadata_server,
        )
    assert "saml_metadata_url" in caught.value.details


@pytest.mark.parametrize("email", ["member", "auditor", None])
def test_only_tenant_admins_reach_the_sso_pages(db, acme, client_for, email):
    address = {"member": acme.member_emails[0], "auditor": f"auditor@{acme.slug}.example"}.get(
        email or ""
    )
    client = client_for(acme.host, address) if address else Client(HTTP_HOST=acme.host)

    response = client.get("/sso/")

    assert response.status_code == (403 if address else 302)


def test_enable_disable_and_delete_are_audited(db, acme, idp, client_for):
    connection = saml_connection(acme, idp)
    admin = client_for(acme.host, acme.admin_email)

    assert admin.post(f"/sso/{connection.pk}/toggle/").status_code == 302
    with schema_context(acme.schema):
        assert Connection.objects.get(pk=connection.pk).enabled is False
    change = events(acme, "sso_connection.changed")[-1]
    assert change.metadata["changes"] == {"enabled": {"before": True, "after": False}}

    assert admin.get(f"/sso/{connection.pk}/delete/").status_code == 200
    assert admin.post(f"/sso/{connection.pk}/delete/").status_code == 302
    with schema_context(acme.schema):
        assert not Connection.objects.filter(pk=connection.pk).exists()
    assert events(acme, "sso_connection.deleted")[-1].metadata["slug"] == "okta"


def test_another_organisations_connection_pages_show_nothing(db, acme, globex, idp, client_for):
    theirs = saml_connection(globex, idp, slug="globex-okta", display_name="Globex Okta")
    admin = client_for(acme.host, acme.admin_email)

    response = admin.get(f"/sso/{theirs.pk}/", follow=True)

    assert "Globex Okta" not in response.content.decode()
    assert "There is no such connection." in response.content.decode()
    admin.post(f"/sso/{theirs.pk}/toggle/")
    with schema_context(globex.schema):
        assert Connection.objects.get(pk=theirs.pk).enabled is True


def test_deleting_a_connection_removes_its_account_links(db, acme, idp):
    from allauth.socialaccount.models import SocialAccount

    connection = saml_connection(acme, idp)
    with schema_context(acme.schema):
        SocialAccount.objects.create(user=acme.user(acme.admin_email), provider="okta", uid="x")
        connection_delete(actor=None, connection=connection)
        assert not SocialAccount.objects.filter(provider="okta").exists()


def _require_sso(org) -> str:
    """Require SSO (admin as break-glass) and return a fresh member's address: the shared members
    may be rate-limited by other tests' failed attempts."""
    email = f"sso-required-{uuid.uuid4().hex[:8]}@{org.slug}.example"
    with schema_context(org.schema):
        user_create(email=email, password=PASSWORD, email_verified=True)
        security_policy_update(
            actor=None, require_sso=True, break_glass_user=org.user(org.admin_email)
        )
    return email


def _browser(org) -> Client:
    return Client(HTTP_HOST=org.host, REMOTE_ADDR=f"198.51.100.{uuid.uuid4().int % 250 + 1}")


def test_password_sign_in_is_refused_when_sso_is_required(db, acme):
    member = _require_sso(acme)
    client = _browser(acme)

    response = client.post("/accounts/login/", {"login": member, "password": PASSWORD})

    assert response.status_code == 200
    assert "requires single sign-on" in response.content.decode()
    with schema_context(acme.schema):
        assert "_auth_user_id" not in client.session
    failure = last_failure(acme)
    assert (failure.outcome, failure.actor_label, failure.metadata) == (
        "denied",
        member,
        {"reason": "sso_required", "method": "password"},
    )


def test_the_break_glass_admin_may_still_use_a_password(db, acme):
    _require_sso(acme)

    response = _browser(acme).post(
        "/accounts/login/", {"login": acme.admin_email, "password": PASSWORD}
    )

    assert response.status_code == 302


def test_a_wrong_password_is_still_just_a_wrong_password_when_sso_is_required(db, acme):
    member = _require_sso(acme)

    response = _browser(acme).post("/accounts/login/", {"login": member, "password": "wrong"})

    assert "requires single sign-on" not in response.content.decode()
    assert last_failure(acme).metadata["reason"] == "invalid_credentials"


def test_an_oidc_issuer_on_a_private_or_local_address_is_refused(db, acme):
    from django_tenants.utils import schema_context

    from apps.core.exceptions import InvalidInput
    from apps.sso import services

    with schema_context(acme.schema):
        admin = acme.user(acme.admin_email)
        for issuer in ("https://127.0.0.1/", "https://10.0.0.5/realms/x", "https://localhost/"):
            with pytest.raises(InvalidInput) as error:
                services.connection_create(
                    actor=admin,
                    protocol="oidc",
                    slug="internal-idp",
                    display_name="Internal",
                    oidc_issuer=issuer,
                    oidc_client_id="client",
                    oidc_client_secret="secret",
                )
            assert "oidc_issuer" in error.value.details
