"""Managing a deployment: settings, secrets, key rotation, upgrade, delete, concurrency."""

from __future__ import annotations

import threading

from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django_tenants.utils import schema_context

from apps.audit.models import AuditEvent
from apps.core import crypto
from apps.deployments.models import Deployment, DeploymentSecret
from apps.deployments.services import deployment_create
from tests.deployments.conftest import API, as_json
from tests.marketplace.conftest import publish


def _secret_column(org) -> str:
    with schema_context(org.schema), connection.cursor() as cursor:
        cursor.execute("SELECT value FROM deployments_deploymentsecret")
        return cursor.fetchone()[0]


def test_changing_settings_audits_a_diff_and_never_the_secret(
    blueprint_version, deploy, client_for, acme
):
    created = as_json(deploy())
    admin = client_for(acme.host, acme.admin_email)

    response = admin.patch(
        f"{API}{created['id']}/",
        {"settings": {"currency": "USD", "erp_token": "new-token-456"}},
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    assert as_json(response)["settings"] == {"currency": "USD"}
    with schema_context(acme.schema):
        assert DeploymentSecret.objects.get().value == "new-token-456"
        event = AuditEvent.objects.filter(action="deployment.settings_changed").latest("id")
    assert event.metadata == {
        "changes": {"currency": ["EUR", "USD"]},
        "secrets_rotated": ["erp_token"],
    }
    assert "new-token-456" not in str(event.metadata)


def test_an_empty_secret_keeps_the_stored_one(blueprint_version, deploy, client_for, acme):
    created = as_json(deploy())

    client_for(acme.host, acme.admin_email).patch(
        f"{API}{created['id']}/",
        {"settings": {"currency": "USD", "erp_token": ""}},
        content_type="application/json",
    )

    with schema_context(acme.schema):
        assert DeploymentSecret.objects.get().value == "tok-123-secret"


def test_a_secret_is_replaced_without_being_shown(blueprint_version, deploy, client_for, acme):
    created = as_json(deploy())
    before = _secret_column(acme)

    response = client_for(acme.host, acme.admin_email).post(
        f"{API}{created['id']}/rotate-secret/",
        {"name": "erp_token", "value": "rotated-789"},
        content_type="application/json",
    )

    assert response.status_code == 200
    assert "rotated-789" not in response.content.decode()
    assert _secret_column(acme) != before
    unknown = client_for(acme.host, acme.admin_email).post(
        f"{API}{created['id']}/rotate-secret/",
        {"name": "currency", "value": "x"},
        content_type="application/json",
    )
    assert unknown.status_code == 400


def test_key_rotation_re_encrypts_every_secret(blueprint_version, deploy, acme, settings):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    deploy()
    under_old = _secret_column(acme)

    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_encryption_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115
    under_new = _secret_column(acme)

    assert under_new != under_old
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key is gone
    assert crypto.decrypt(under_new) == "tok-123-secret"
    with schema_context(acme.schema):
        assert DeploymentSecret.objects.get().value == "tok-123-secret"


def test_upgrade_refuses_settings_that_no_longer_fit(blueprint_version, deploy, client_for, acme):
    created = as_json(deploy(settings={"currency": "USD", "erp_token": "t"}))
    publish(
        release="certified",
        version__version="2.0.0",
        version__settings_schema={
            "type": "object",
            "additionalProperties": False,
            "required": ["currency", "region"],
            "properties": {
                "currency": {"type": "string", "enum": ["EUR"]},
                "region": {"type": "string", "title": "Region"},
                "erp_token": {"type": "string", "x-secret": True},
            },
        },
    )
    admin = client_for(acme.host, acme.admin_email)

    refused = admin.post(
        f"{API}{created['id']}/upgrade/", {"version": "2.0.0"}, content_type="application/json"
    )

    assert refused.status_code == 409
    error = as_json(refused)["error"]
    assert error["code"] == "settings_incompatible"
    assert set(error["details"]) == {"currency", "region"}
    assert as_json(admin.get(f"{API}{created['id']}/"))["version"] == "1.0.0"


def test_upgrade_to_a_compatible_version(blueprint_version, deploy, client_for, acme):
    created = as_json(deploy())
    publish(version__version="1.1.0")

    response = client_for(acme.host, acme.admin_email).post(
        f"{API}{created['id']}/upgrade/", {"version": "1.1.0"}, content_type="application/json"
    )

    assert response.status_code == 200
    assert as_json(response)["version"] == "1.1.0"
    with schema_context(acme.schema):
        event = AuditEvent.objects.filter(action="deployment.upgraded").latest("id")
    assert event.metadata == {"from": "1.0.0", "to": "1.1.0"}


def test_delete_is_soft_destroys_secrets_and_frees_the_name(
    blueprint_version, deploy, client_for, acme
):
    created = as_json(deploy(name="Invoices"))
    admin = client_for(acme.host, acme.admin_email)

    assert admin.delete(f"{API}{created['id']}/").status_code == 204

    with schema_context(acme.schema):
        row = Deployment.objects.get(pk=created["id"])
        assert row.status == "deleted"
        assert row.deleted_at is not None
        assert not DeploymentSecret.objects.exists()
    assert admin.get(f"{API}{created['id']}/").status_code == 404
    assert as_json(deploy(name="Invoices"))["slug"] == "invoices"


def test_two_concurrent_deploys_for_the_last_slot_give_one_deployment(committed, globex):
    version = publish(slug="race-blueprint", name="Race Blueprint")
    admin = globex.user(globex.admin_email)
    with schema_context(globex.schema):
        deployment_create(
            tenant=globex.tenant,
            actor=admin,
            blueprint_slug="race-blueprint",
            name="Existing",
            settings={},
        )
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt(name: str) -> None:
        try:
            with schema_context(globex.schema):
                barrier.wait(timeout=10)
                deployment_create(
                    tenant=globex.tenant,
                    actor=admin,
                    blueprint_slug="race-blueprint",
                    name=name,
                    settings={},
                )
            outcomes.append("created")
        except Exception as exc:  # the loser's error is the assertion's subject
            outcomes.append(getattr(exc, "code", repr(exc)))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(n,)) for n in ("Left", "Right")]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(outcomes) == ["created", "quota_exceeded"]
        with schema_context(globex.schema):
            assert Deployment.objects.exclude(status="deleted").count() == 2
    finally:
        with schema_context(globex.schema):
            Deployment.objects.all().delete()
        version.blueprint.delete()


def test_uploaded_documents_feed_the_knowledge_search(blueprint_version, deploy, client_for, acme):
    created = as_json(deploy())
    admin = client_for(acme.host, acme.admin_email)
    url = f"{API}{created['id']}/documents/"

    added = admin.post(
        url + "add/",
        {
            "title": "Supplier payment terms",
            "content": "Suppliers in Germany are paid within 45 days of the invoice date.",
        },
        content_type="application/json",
    )
    answer = as_json(
        admin.post(
            f"{API}{created['id']}/ask/",
            {"message": "How many days until German suppliers are paid?"},
            content_type="application/json",
        )
    )

    assert added.status_code == 201
    assert [d["title"] for d in as_json(admin.get(url))] == ["Supplier payment terms"]
    assert "45 days" in answer["reply"]
    removed = admin.post(f"{url}{as_json(added)['id']}/remove/")
    assert removed.status_code == 204
    assert as_json(admin.get(url)) == []


def test_an_empty_or_oversized_document_is_refused(blueprint_version, deploy, client_for, acme):
    created = as_json(deploy())
    admin = client_for(acme.host, acme.admin_email)
    url = f"{API}{created['id']}/documents/add/"

    empty = admin.post(url, {"title": "x", "content": "   "}, content_type="application/json")
    huge = admin.post(
        url, {"title": "x", "content": "a" * 200_001}, content_type="application/json"
    )

    assert empty.status_code == 400
    assert huge.status_code == 400
    with schema_context(acme.schema):
        assert not Deployment.objects.get(pk=created["id"]).documents.exists()
