"""Edge cases found in review: each once produced a 500, a wrong status, or a false alarm."""

import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from apps.audit.models import AuditEvent
from apps.audit.selectors import audit_chain_verify
from apps.audit.services import audit_record


def test_probes_answer_on_a_bare_ip_host(db):
    client = Client(HTTP_HOST="10.1.2.3")
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_other_paths_on_an_unknown_ip_are_still_refused(db):
    assert Client(HTTP_HOST="10.1.2.3").get("/api/v1/tenant/").status_code == 404


def test_readyz_recovers_after_the_database_drops_its_connections(committed):
    client = Client(HTTP_HOST="127.0.0.1")
    assert client.get("/readyz").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    assert client.get("/readyz").status_code == 200


def _backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def test_readyz_leaves_no_connection_behind(committed):
    client = Client(HTTP_HOST="127.0.0.1")
    client.get("/readyz")
    before = _backends()
    for _ in range(12):
        assert client.get("/readyz").status_code == 200
    assert _backends() <= before


def test_unsupported_method_is_405_and_not_an_audited_denial(db, acme, client_for):
    client = client_for(acme.host, acme.admin_email)
    with schema_context(acme.schema):
        before = AuditEvent.objects.count()
    response = client.put("/api/v1/audit/events/", {}, content_type="application/json")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    with schema_context(acme.schema):
        assert AuditEvent.objects.count() == before


def test_a_nul_byte_in_the_path_is_refused_and_still_audited(db, acme, client_for):
    client = client_for(acme.host, acme.member_emails[0])
    response = client.get("/api/v1/audit/events/%00/")
    assert response.status_code == 403
    with schema_context(acme.schema):
        event = AuditEvent.objects.order_by("-id").first()
        assert event.action == "permission.denied"
        assert audit_chain_verify().ok


def test_metadata_that_jsonb_would_change_still_verifies(db, acme):
    with schema_context(acme.schema):
        audit_record(
            action="odd.values",
            metadata={"big": 1e20, "negzero": -0.0, "nan": float("nan"), "nul": "a\x00b", "f": 0.1},
        )
        assert audit_chain_verify().ok
        stored = AuditEvent.objects.order_by("-id").first().metadata
    assert stored == {"big": 10**20, "negzero": 0, "nan": "nan", "nul": "a\ufffdb", "f": 0.1}


def test_an_oversized_api_body_is_413(db, client_for):
    client = client_for("localhost", "platform@agentfactory.example")
    body = '{"name": "' + "x" * (3 * 1024 * 1024) + '"}'
    response = client.post("/api/v1/tenants/", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("role", ["platform_admin", "publisher"])
def test_a_platform_role_inside_a_tenant_grants_nothing(db, acme, role):
    from apps.accounts.models import User
    from apps.accounts.permissions import has_permission

    with schema_context(acme.schema):
        user = User.objects.create_user(f"odd-{role}@acme.example", "x" * 12, role=role)
        assert not has_permission(user, "tenants:manage")
        assert not has_permission(user, "audit:read")


def test_roles_of_the_wrong_kind_cannot_be_given(db, acme):
    from apps.accounts.services import user_create
    from apps.core.exceptions import InvalidInput

    with schema_context(acme.schema), pytest.raises(InvalidInput):
        user_create(email="x@acme.example", password="x" * 12, role="platform_admin")
    with pytest.raises(InvalidInput):
        user_create(email="x@platform.example", password="x" * 12, role="tenant_admin")


def test_the_tenant_admin_cannot_pick_platform_roles_in_the_admin(db, acme, client_for):
    page = client_for(acme.host, acme.admin_email).get("/admin/accounts/user/add/").content.decode()
    assert 'value="tenant_admin"' in page
    assert 'value="platform_admin"' not in page
