"""The platform API for organisations (public host, platform admins only)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context, schema_exists

from apps.audit.models import AuditEvent
from apps.tenants.models import Tenant
from apps.tenants.services import tenant_provision

PLATFORM_ADMIN = "platform@agentfactory.example"
PUBLISHER = "publisher@agentfactory.example"


@pytest.fixture
def platform(client_for):
    return client_for("localhost", PLATFORM_ADMIN)


def test_platform_admin_provisions_a_tenant_and_gets_a_one_time_password(db, platform):
    response = platform.post(
        "/api/v1/tenants/",
        {
            "slug": "initech",
            "name": "Initech",
            "admin_email": "boss@initech.example",
            "plan": "team",
        },
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "initech"
    assert body["plan"] == "team"
    assert body["domains"] == ["initech.localhost"]
    assert body["url"] == "http://initech.localhost/"  # the scheme and port the caller used
    assert len(body["admin_password"]) >= 12
    assert schema_exists("initech")
    assert platform.get("/api/v1/tenants/initech/").json().get("admin_password") is None


def test_chosen_password_is_never_echoed(db, platform):
    response = platform.post(
        "/api/v1/tenants/",
        {
            "slug": "initech",
            "name": "Initech",
            "admin_email": "boss@initech.example",
            "admin_password": "a-long-passphrase-1",
        },
        content_type="application/json",
    )
    assert response.status_code == 201
    assert response.json()["admin_password"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "No Good", "name": "X", "admin_email": "a@b.example"}, "slug"),
        ({"slug": "acme", "name": "X", "admin_email": "a@b.example"}, "slug"),
        ({"slug": "initech", "name": "X", "admin_email": "nope"}, "admin_email"),
        ({"slug": "initech", "admin_email": "a@b.example"}, "name"),
        ({"slug": "initech", "name": "X", "admin_email": "a@b.example", "plan": "gold"}, "plan"),
    ],
)
def test_bad_input_gets_a_400_naming_the_field_and_writes_nothing(db, platform, body, field):
    before = Tenant.objects.count()
    response = platform.post("/api/v1/tenants/", body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["details"]
    assert Tenant.objects.count() == before


def test_malformed_json_gets_a_400_in_the_error_format(db, platform):
    response = platform.post("/api/v1/tenants/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


@pytest.mark.parametrize(("email", "status"), [(None, 401), (PUBLISHER, 403)])
def test_only_platform_admins_may_use_the_tenant_api(db, client_for, email, status):
    client = client_for("localhost", email)
    assert client.get("/api/v1/tenants/").status_code == status
    response = client.post(
        "/api/v1/tenants/",
        {"slug": "x1x", "name": "X", "admin_email": "a@b.example"},
        content_type="application/json",
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] in {"not_authenticated", "permission_denied"}
    assert not Tenant.objects.filter(slug="x1x").exists()


def test_tenant_api_is_not_served_on_tenant_hosts(db, acme, client_for):
    client = client_for(acme.host, acme.admin_email)
    assert client.get("/api/v1/tenants/").status_code == 404


def test_suspend_and_resume_through_the_api(db, platform, acme):
    response = platform.post(
        "/api/v1/tenants/acme/suspend/", {"reason": "Unpaid"}, content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "suspended"
    again = platform.post(
        "/api/v1/tenants/acme/suspend/", {"reason": "Again"}, content_type="application/json"
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_suspended"
    assert platform.post("/api/v1/tenants/acme/resume/").json()["status"] == "active"


def test_suspend_without_a_reason_is_refused(db, platform, acme):
    response = platform.post("/api/v1/tenants/acme/suspend/", {}, content_type="application/json")
    assert response.status_code == 400
    assert "reason" in response.json()["error"]["details"]
    assert Tenant.objects.get(slug="acme").status == "active"


def test_suspension_is_audited_in_both_trails(db, platform, acme):
    platform.post(
        "/api/v1/tenants/acme/suspend/", {"reason": "Unpaid"}, content_type="application/json"
    )
    assert AuditEvent.objects.filter(action="tenant.suspended", actor_label=PLATFORM_ADMIN).exists()
    with schema_context(acme.schema):
        event = AuditEvent.objects.filter(action="tenant.suspended").get()
        assert event.metadata == {"reason": "Unpaid"}


def test_delete_needs_the_slug_repeated(db, platform):
    tenant_provision(slug="initech", name="Initech", admin_email="boss@initech.example")
    response = platform.delete("/api/v1/tenants/initech/")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "confirmation_required"
    assert schema_exists("initech")
    response = platform.delete("/api/v1/tenants/initech/?confirm=acme")
    assert response.status_code == 400
    assert schema_exists("initech")

    assert platform.delete("/api/v1/tenants/initech/?confirm=initech").status_code == 204
    assert not schema_exists("initech")
    assert not Tenant.objects.filter(slug="initech").exists()
    event = AuditEvent.objects.filter(action="tenant.deleted").get()
    assert event.metadata["tenant_audit_chain_intact"] is True


def test_unknown_tenant_is_a_json_404(db, platform):
    response = platform.get("/api/v1/tenants/nobody/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_list_filters_by_status(db, platform, acme):
    platform.post("/api/v1/tenants/acme/suspend/", {"reason": "x"}, content_type="application/json")
    slugs = [t["slug"] for t in platform.get("/api/v1/tenants/?status=suspended").json()["results"]]
    assert slugs == ["acme"]


def test_list_query_count_does_not_grow_with_tenants(db, platform):
    platform.get("/api/v1/tenants/")  # warm up session and content types
    with CaptureQueriesContext(connection) as few:
        platform.get("/api/v1/tenants/")
    for index in range(3):
        tenant_provision(
            slug=f"many-{index}", name=f"Many {index}", admin_email=f"a@m{index}.example"
        )
    with CaptureQueriesContext(connection) as more:
        response = platform.get("/api/v1/tenants/")
    assert len(response.json()["results"]) == 5
    assert len(more.captured_queries) == len(few.captured_queries)
