"""Deploying a blueprint: validated settings, encrypted secrets, status, quota and audit."""

from __future__ import annotations

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from apps.audit.models import AuditEvent
from apps.deployments.models import Deployment, DeploymentSecret
from apps.marketplace.models import Blueprint
from tests.deployments.conftest import API, as_json
from tests.marketplace.conftest import publish


def test_a_deploy_creates_an_active_deployment_and_counts_an_install(
    blueprint_version, deploy, client_for, acme
):
    response = deploy()

    assert response.status_code == 201, response.content
    body = as_json(response)
    assert body["status"] == "active"  # the offline provider needs no start check
    assert body["version"] == "1.0.0"
    assert body["settings"] == {"currency": "EUR"}
    assert body["secrets"] == {"erp_token": True}
    assert body["provider"] == {"name": "local", "model": "local-retrieval", "offline": True}
    assert "tok-123-secret" not in response.content.decode()
    assert Blueprint.objects.get(slug="invoice-checker").install_count == 1
    with schema_context(acme.schema):
        event = AuditEvent.objects.filter(action="deployment.created").latest("id")
        assert event.metadata["secrets"] == ["erp_token"]
        assert "tok-123-secret" not in str(event.metadata)


def test_the_secret_is_encrypted_in_the_database(blueprint_version, deploy, acme):
    deploy()

    with schema_context(acme.schema), connection.cursor() as cursor:
        cursor.execute("SELECT value FROM deployments_deploymentsecret")
        (stored,) = cursor.fetchone()
        plain = DeploymentSecret.objects.get().value

    assert stored.startswith("enc1:")
    assert "tok-123-secret" not in stored
    assert plain == "tok-123-secret"


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ({"currency": "JPY"}, "currency", "Choose one of"),
        ({"currency": 5}, "currency", "Choose one of"),
        ({"currency": "EUR", "colour": "blue"}, "__all__", "Unknown settings"),
        ({"currency": "EUR", "erp_token": 12}, "erp_token", "Expected text"),
    ],
)
def test_invalid_settings_get_field_errors_and_nothing_is_created(
    blueprint_version, deploy, acme, settings, field, message
):
    response = deploy(settings=settings)

    assert response.status_code == 400
    error = as_json(response)["error"]
    assert error["code"] == "invalid_settings"
    assert any(message in m for m in error["details"][field]), error
    with schema_context(acme.schema):
        assert not Deployment.objects.exists()
    assert Blueprint.objects.get(slug="invoice-checker").install_count == 0


def test_a_required_setting_without_a_default_must_be_given(db, deploy):
    publish(
        version__settings_schema={
            "type": "object",
            "required": ["company"],
            "properties": {"company": {"type": "string", "title": "Company", "minLength": 2}},
        }
    )

    missing = deploy(settings={})
    short = deploy(settings={"company": "A"})

    assert as_json(missing)["error"]["details"] == {"company": ["This setting is required."]}
    assert "company" in as_json(short)["error"]["details"]


def test_defaults_fill_in_missing_settings(blueprint_version, deploy):
    body = as_json(deploy(settings={}))

    assert body["settings"] == {"currency": "EUR"}  # the schema's default


def test_a_retired_version_cannot_be_deployed(db, deploy):
    from datetime import timedelta

    from django.utils import timezone

    from apps.marketplace.services import version_transition

    version = publish()
    version = version_transition(
        version=version,
        to="deprecated",
        actor=None,
        sunset_date=timezone.localdate() + timedelta(1),
    )
    version_transition(version=version, to="retired", actor=None)

    response = deploy(version="1.0.0")

    assert response.status_code in (404, 409)


def test_a_draft_or_unknown_version_is_not_found(db, deploy):
    publish(release="draft", version__version="0.9.0")
    publish(version__version="1.0.0")

    assert deploy(version="0.9.0").status_code == 404
    assert deploy(version="7.0.0").status_code == 404


def test_the_plan_limits_active_deployments(blueprint_version, deploy, acme):
    assert deploy(name="One").status_code == 201
    assert deploy(name="Two").status_code == 201

    third = deploy(name="Three")

    assert third.status_code == 403
    error = as_json(third)["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"] == {"limit": 2, "used": 2, "plan": "free"}
    assert "upgrade the plan" in error["message"]
    with schema_context(acme.schema):
        assert Deployment.objects.count() == 2


def test_a_paused_deployment_frees_a_slot_and_resuming_checks_the_limit(
    blueprint_version, deploy, client_for, acme, django_capture_on_commit_callbacks
):
    admin = client_for(acme.host, acme.admin_email)
    first = as_json(deploy(name="One"))
    deploy(name="Two")
    admin.post(f"{API}{first['id']}/pause/")

    assert deploy(name="Three").status_code == 201
    resumed = admin.post(f"{API}{first['id']}/resume/")

    assert resumed.status_code == 403
    assert as_json(resumed)["error"]["code"] == "quota_exceeded"
    with schema_context(acme.schema):
        assert Deployment.objects.get(pk=first["id"]).status == "paused"


def test_names_become_unique_slugs(blueprint_version, deploy):
    first = as_json(deploy(name="Invoice bot"))
    second = as_json(deploy(name="Invoice bot"))

    assert (first["slug"], second["slug"]) == ("invoice-bot", "invoice-bot-2")


def test_another_organisation_never_sees_a_deployment(
    blueprint_version, deploy, client_for, globex
):
    created = as_json(deploy())
    stranger = client_for(globex.host, globex.admin_email)

    assert stranger.get(f"{API}{created['id']}/").status_code == 404
    assert stranger.post(f"{API}{created['id']}/pause/").status_code == 404
    assert as_json(stranger.get(API)) == []


def test_roles(blueprint_version, deploy, client_for, acme):
    from apps.accounts.services import user_create
    from tests.conftest import PASSWORD

    with schema_context(acme.schema):
        user_create(
            email="ops@acme.example", password=PASSWORD, role="operator", email_verified=True
        )
    created = as_json(deploy())
    operator = client_for(acme.host, "ops@acme.example")
    member = client_for(acme.host, acme.member_emails[0])

    assert deploy(client=operator).status_code == 403
    assert operator.post(f"{API}{created['id']}/pause/").status_code == 200
    assert member.get(API).status_code == 200
    assert member.post(f"{API}{created['id']}/resume/").status_code == 403
    assert member.delete(f"{API}{created['id']}/").status_code == 403
