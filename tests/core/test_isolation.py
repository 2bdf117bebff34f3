"""No organisation ever sees another's data: through the ORM, the API, the admin or the cache.
(Websocket isolation is in test_websockets.py.)"""

from django.core.cache import cache
from django.db import connection
from django_tenants.utils import schema_context

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record


def test_orm_rows_of_one_tenant_are_invisible_from_another(db, acme, globex):
    with schema_context(acme.schema):
        User.objects.create_user("secret@acme.example", "x" * 12)
        audit_record(action="acme.secret")
    with schema_context(globex.schema):
        assert not User.objects.filter(email="secret@acme.example").exists()
        assert not AuditEvent.objects.filter(action="acme.secret").exists()


def _event_only_in(owner, other) -> AuditEvent:
    """An event whose id the other schema does not have, and will not reach while the test
    runs (its own events, a sign-in's say, take ids of its own sequence)."""
    with schema_context(other.schema):
        other_max = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    table = AuditEvent._meta.db_table
    with schema_context(owner.schema), connection.cursor() as cursor:
        # The owner's next id well past the other's (never below an id the owner already used).
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
            f"greatest(%s, (SELECT coalesce(max(id), 0) FROM {table})))",
            [table, other_max + 1_000],
        )
        return audit_record(action="acme.private", metadata={"secret": "s3cr3t"})


def test_api_never_returns_another_tenants_event(db, acme, globex, client_for):
    client = client_for(globex.host, globex.admin_email)
    event = _event_only_in(acme, globex)
    response = client.get(f"/api/v1/audit/events/{event.id}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = client.get("/api/v1/audit/events/?page_size=200")
    assert response.status_code == 200
    assert response.json()["results"], "globex sees its own events"
    listing = response.content.decode()
    assert "s3cr3t" not in listing
    assert event.hash not in listing


def test_an_account_of_one_tenant_cannot_sign_in_at_another(db, acme, globex, client_for):
    response = client_for(globex.host).post(
        "/accounts/login/",
        {"login": acme.admin_email, "password": "correct-horse-battery-staple"},
    )
    assert response.status_code == 200  # the form again, with an error
    assert "_auth_user_id" not in response.wsgi_request.session


def test_admin_lists_only_the_tenants_own_people(db, acme, globex, client_for):
    page = client_for(globex.host, globex.admin_email).get("/admin/accounts/user/").content.decode()
    assert globex.admin_email in page
    assert acme.admin_email not in page


def test_platform_models_are_not_in_a_tenants_admin(db, globex, client_for):
    client = client_for(globex.host, globex.admin_email)
    assert client.get("/admin/tenants/tenant/").status_code == 404
    assert "/admin/tenants/" not in client.get("/admin/").content.decode()


def test_cache_keys_are_prefixed_by_tenant(db, acme, globex):
    with schema_context(acme.schema):
        cache.set("greeting", "hello from acme")
    with schema_context(globex.schema):
        assert cache.get("greeting") is None
        cache.set("greeting", "hello from globex")
    with schema_context(acme.schema):
        assert cache.get("greeting") == "hello from acme"


def test_auditors_read_the_trail_and_the_list_query_count_is_flat(db, acme, client_for):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = client_for(acme.host, f"auditor@{acme.slug}.example")
    assert client.get("/api/v1/audit/events/").status_code == 200
    with CaptureQueriesContext(connection) as few:
        client.get("/api/v1/audit/events/")
    with schema_context(acme.schema):
        for index in range(30):
            audit_record(action="bulk", metadata={"n": index})
    with CaptureQueriesContext(connection) as many:
        response = client.get("/api/v1/audit/events/")
    assert len(response.json()["results"]) >= 30
    assert len(many.captured_queries) == len(few.captured_queries)
