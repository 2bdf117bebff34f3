"""Fixtures and helpers for the SSO tests: connections in a tenant's schema, and a browser (the
Django test client) walking through a SAML sign-in with the test IdP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.sso.models import Connection
from apps.sso.services import connection_create
from tests.identity.saml_idp import KeyPair, SsoRedirect, TestIdP, make_keypair, parse_sso_redirect

GROUP_MAPPING = [
    {"group": "engineering", "role": "developer"},
    {"group": "admins", "role": "tenant_admin"},
    {"group": "auditors", "role": "auditor"},
]


@pytest.fixture(scope="session")
def idp() -> TestIdP:
    return TestIdP()


@pytest.fixture(scope="session")
def stranger_key() -> KeyPair:
    return make_keypair("Not the IdP")


def saml_connection(org: Any, idp: TestIdP, slug: str = "okta", **fields: Any) -> Connection:
    options: dict[str, Any] = {
        "display_name": "Okta",
        "saml_entity_id": idp.entity_id,
        "saml_sso_url": idp.sso_url,
        "saml_slo_url": idp.slo_url,
        "saml_certificates": [idp.keypair.certificate_b64],
        "role_mapping": GROUP_MAPPING,
    }
    options.update(fields)
    with schema_context(org.schema):
        return connection_create(actor=None, protocol="saml", slug=slug, **options)


def events(org: Any, action: str) -> list[AuditEvent]:
    with schema_context(org.schema):
        return list(AuditEvent.objects.filter(action=action).order_by("id"))


def last_failure(org: Any) -> AuditEvent:
    return events(org, "auth.login_failed")[-1]


def signed_in_email(client: Client, org: Any) -> str | None:
    with schema_context(org.schema):
        user_id = client.session.get("_auth_user_id")
        if user_id is None:
            return None
        return str(User.objects.get(pk=user_id).email)


def user_or_none(org: Any, email: str) -> User | None:
    with schema_context(org.schema):
        return User.objects.filter(email=email).first()


@dataclass
class SamlBrowser:
    """A browser on an organisation's host, signing in through one SAML connection."""

    client: Client
    org: Any
    slug: str

    @property
    def base(self) -> str:
        return f"http://{self.org.host}/accounts/saml/{self.slug}"

    @property
    def acs_url(self) -> str:
        return f"{self.base}/acs/"

    @property
    def entity_id(self) -> str:
        return f"{self.base}/metadata/"

    def start(self) -> SsoRedirect:
        response = self.client.post(f"/accounts/saml/{self.slug}/login/?process=login")
        assert response.status_code == 302, response.content[:500]
        return parse_sso_redirect(response["Location"])

    def post(self, saml_response: str, relay_state: str = "") -> Any:
        return self.client.post(
            f"/accounts/saml/{self.slug}/acs/",
            {"SAMLResponse": saml_response, "RelayState": relay_state},
            follow=True,
        )


def browser(org: Any, slug: str = "okta") -> SamlBrowser:
    return SamlBrowser(Client(HTTP_HOST=org.host), org, slug)
