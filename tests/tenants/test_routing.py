"""The host chooses the organisation; unknown hosts get a 404 and suspended ones a 403."""

import pytest
from django.test import Client

from apps.tenants.models import Tenant
from apps.tenants.services import tenant_resume, tenant_suspend


def test_tenant_host_serves_that_tenants_sign_in_page(db, acme):
    response = Client(HTTP_HOST=acme.host).get("/accounts/login/")
    assert response.status_code == 200
    assert "Sign in to Acme Corp" in response.content.decode()


def test_tenant_host_with_port_routes_like_without(db, acme):
    response = Client(HTTP_HOST=f"{acme.host}:8000").get("/api/v1/tenant/")
    assert response.json()["slug"] == "acme"


def test_tenant_home_requires_sign_in(db, acme):
    response = Client(HTTP_HOST=acme.host).get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_public_host_serves_landing_and_signup(db):
    client = Client(HTTP_HOST="localhost")
    assert "Create a workspace" in client.get("/").content.decode()
    assert client.get("/signup/").status_code == 200


def test_tenant_pages_are_not_on_the_public_host(db):
    assert Client(HTTP_HOST="localhost").get("/api/v1/tenant/").status_code == 404


def test_unknown_host_gets_a_404_page_not_an_error(db):
    response = Client(HTTP_HOST="nobody.localhost").get("/")
    assert response.status_code == 404
    assert "There is no organisation at this address" in response.content.decode()


def test_unknown_host_on_api_paths_gets_a_json_404(db):
    response = Client(HTTP_HOST="nobody.localhost").get("/api/v1/tenant/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_host"


def test_host_outside_allowed_hosts_gets_a_404(db):
    response = Client(HTTP_HOST="evil.example.com").get("/")
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("path", "content_type"), [("/", "text/html"), ("/api/v1/tenant/", "application/json")]
)
def test_suspended_tenant_answers_403_with_an_explanation(db, acme, path, content_type):
    tenant = Tenant.objects.get(pk=acme.tenant.pk)  # a copy: the session's object stays as it was
    tenant_suspend(tenant=tenant, reason="Unpaid invoice")
    response = Client(HTTP_HOST=acme.host).get(path)
    assert response.status_code == 403
    assert response["Content-Type"].startswith(content_type)
    assert "suspended" in response.content.decode()
    tenant_resume(tenant=tenant)
    assert Client(HTTP_HOST=acme.host).get("/api/v1/tenant/").status_code == 200


def test_health_endpoints_answer_on_any_host(db):
    for host in ("127.0.0.1", "localhost", "nobody.localhost", "acme.localhost"):
        assert Client(HTTP_HOST=host).get("/healthz").status_code == 200
