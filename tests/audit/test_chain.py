"""The audit trail: chained, append-only at the database, and checked by verify_audit_chain."""

import threading
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction
from django_tenants.utils import schema_context

from apps.audit.chain import GENESIS_HASH
from apps.audit.models import AuditEvent
from apps.audit.selectors import audit_chain_verify
from apps.audit.services import Actor, audit_record
from apps.tenants.services import tenant_delete, tenant_provision


def test_events_chain_each_to_the_one_before(db, acme):
    with schema_context(acme.schema):
        first_id = AuditEvent.objects.order_by("id").first().id
        for index in range(3):
            audit_record(action="test.event", metadata={"n": index})
        events = list(AuditEvent.objects.order_by("id"))
        assert events[0].id == first_id
        assert events[0].prev_hash == GENESIS_HASH
        for before, after in zip(events, events[1:], strict=False):
            assert after.prev_hash == before.hash
        assert audit_chain_verify().ok


def test_event_made_during_a_request_records_who_where_and_which_request(db, acme, client_for):
    member = acme.member_emails[0]
    client = client_for(acme.host, member)
    response = client.get(
        "/api/v1/audit/events/", HTTP_X_REQUEST_ID="req-123", HTTP_USER_AGENT="pytest-agent"
    )
    assert response.status_code == 403
    with schema_context(acme.schema):
        event = AuditEvent.objects.order_by("-id").first()
        user = acme.user(member)
    assert event.action == "permission.denied"
    assert event.outcome == "denied"
    assert (event.actor_type, event.actor_id, event.actor_label) == ("user", str(user.pk), member)
    assert (event.request_id, event.user_agent, event.ip_address) == (
        "req-123",
        "pytest-agent",
        "127.0.0.1",
    )
    assert event.metadata == {
        "permission": "audit:read",
        "method": "GET",
        "path": "/api/v1/audit/events/",
    }


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET action = 'forged'",
        "DELETE FROM audit_auditevent",
        "TRUNCATE audit_auditevent",
    ],
)
def test_database_rejects_changes_to_the_trail(db, acme, statement):
    with schema_context(acme.schema):
        before = list(AuditEvent.objects.order_by("id").values_list("id", "action"))
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
        assert list(AuditEvent.objects.order_by("id").values_list("id", "action")) == before


def test_database_rejects_changes_in_the_public_trail_too(db):
    audit_record(action="platform.probe")
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM audit_auditevent")


def _tamper(schema: str, sql: str, params: list) -> None:
    """What an attacker with table-owner rights could do: disable the guard and edit history."""
    with schema_context(schema), connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_no_update_delete")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_no_update_delete")


def test_verify_detects_an_altered_event(db, acme, capsys):
    with schema_context(acme.schema):
        victim = audit_record(action="payment.approved", metadata={"amount": 100})
        audit_record(action="after")
    _tamper(
        acme.schema,
        "UPDATE audit_auditevent SET metadata = %s WHERE id = %s",
        ['{"amount": 1}', victim.id],
    )

    with schema_context(acme.schema):
        report = audit_chain_verify()
    assert (report.ok, report.broken_at) == (False, victim.id)
    with pytest.raises(CommandError):
        call_command("verify_audit_chain", "--tenant", "acme")
    assert f"chain broken at event {victim.id}" in capsys.readouterr().out


def test_verify_detects_a_removed_event(db, acme):
    with schema_context(acme.schema):
        removed = audit_record(action="one")
        following = audit_record(action="two")
    _tamper(acme.schema, "DELETE FROM audit_auditevent WHERE id = %s", [removed.id])
    with schema_context(acme.schema):
        report = audit_chain_verify()
    assert report.broken_at == following.id
    assert "removed" in report.reason


def test_verify_command_reports_every_intact_chain(db, acme, globex, capsys):
    call_command("verify_audit_chain")
    out = capsys.readouterr().out
    assert "public:" in out
    assert "acme:" in out
    assert "globex:" in out
    assert "broken" not in out


def test_verify_command_rejects_an_unknown_tenant(db):
    with pytest.raises(CommandError, match="No tenant"):
        call_command("verify_audit_chain", "--tenant", "nobody")


def test_twenty_concurrent_writers_leave_one_unbroken_chain(committed):
    slug = f"conc-{uuid.uuid4().hex[:6]}"
    result = tenant_provision(slug=slug, name="Concurrency", admin_email="admin@conc.example")
    schema = result.tenant.schema_name
    try:
        start = threading.Barrier(20)
        errors: list[BaseException] = []

        def writer(index: int) -> None:
            try:
                start.wait()
                with schema_context(schema), transaction.atomic():
                    audit_record(action="concurrent.write", actor=Actor.system(f"writer-{index}"))
            except BaseException as exc:
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert errors == []
        with schema_context(schema):
            assert AuditEvent.objects.filter(action="concurrent.write").count() == 20
            report = audit_chain_verify()
            assert report.ok, report
            # One chain: every hash is the previous-hash of at most one event.
            prevs = list(AuditEvent.objects.values_list("prev_hash", flat=True))
            assert len(prevs) == len(set(prevs))
    finally:
        tenant_delete(tenant=result.tenant, confirm=result.tenant.slug)
