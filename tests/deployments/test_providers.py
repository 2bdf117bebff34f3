"""Deployments on a cloud provider (the local fake OpenAI server, through the real SDK): the
start check, failures recorded with their type, and the provider address check."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from apps.deployments.models import Deployment, ProviderFailure, RuntimeCall
from tests.deployments.conftest import API, as_json
from tests.marketplace.conftest import publish
from tests.runtime.fake_openai import FakeOpenAI, Reply

SCHEMA = {
    "type": "object",
    "properties": {
        "openai_api_key": {"type": "string", "title": "OpenAI API key", "x-secret": True},
        "openai_base_url": {"type": "string", "title": "OpenAI-compatible server", "format": "uri"},
    },
}


@pytest.fixture
def fake_openai():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def cloud_blueprint(db):
    return publish(
        slug="cloud-helper",
        name="Cloud Helper",
        version__provider="openai",
        version__model="gpt-4.1-mini",
        version__tools=[],
        version__settings_schema=SCHEMA,
    )


def deploy_cloud(deploy, server, key="sk-good"):
    return deploy(
        blueprint="cloud-helper",
        name="Cloud",
        settings={"openai_api_key": key, "openai_base_url": server.base_url},
    )


def test_a_working_key_makes_the_deployment_active_and_answers(
    cloud_blueprint, deploy, client_for, acme, fake_openai
):
    fake_openai.script(Reply(text=("ok",)), Reply(text=("Hello from ", "the cloud.")))
    created = as_json(deploy_cloud(deploy, fake_openai))
    admin = client_for(acme.host, acme.admin_email)

    assert as_json(admin.get(f"{API}{created['id']}/"))["status"] == "active"
    body = as_json(
        admin.post(f"{API}{created['id']}/ask/", {"message": "hi"}, content_type="application/json")
    )

    assert body["reply"] == "Hello from the cloud."
    assert body["offline"] is False
    assert fake_openai.completions[-1].headers["authorization"] == "Bearer sk-good"


def test_a_refused_key_puts_the_deployment_in_error_with_a_reason(
    cloud_blueprint, deploy, client_for, acme, fake_openai
):
    fake_openai.script(Reply.error_reply(401, "Incorrect API key", type="invalid_request_error"))

    created = as_json(deploy_cloud(deploy, fake_openai, key="sk-wrong"))

    body = as_json(client_for(acme.host, acme.admin_email).get(f"{API}{created['id']}/"))
    assert body["status"] == "error"
    assert "refused the API key" in body["status_reason"]
    assert "sk-wrong" not in str(body)
    page = client_for(acme.host, acme.admin_email).get(f"/deployments/{created['id']}/")
    assert "The agent could not start." in page.content.decode()


def test_a_failing_provider_is_recorded_and_answered_503(
    cloud_blueprint, deploy, client_for, acme, fake_openai
):
    fake_openai.script(Reply(text=("ok",)), *[Reply.error_reply(500) for _ in range(4)])
    created = as_json(deploy_cloud(deploy, fake_openai))

    response = client_for(acme.host, acme.admin_email).post(
        f"{API}{created['id']}/ask/", {"message": "hi"}, content_type="application/json"
    )

    assert response.status_code == 503
    error = as_json(response)["error"]
    assert error["code"] == "provider_failed"
    assert error["details"] == {"kind": "unavailable", "retryable": True}
    with schema_context(acme.schema):
        kinds = list(ProviderFailure.objects.values_list("kind", flat=True))
        call = RuntimeCall.objects.get()
    assert kinds == ["unavailable"] * 4
    assert (call.outcome, call.error_kind) == ("failed", "unavailable")


def test_a_provider_address_on_a_private_network_is_refused(
    cloud_blueprint, deploy, acme, fake_openai, settings
):
    settings.PROVIDER_ALLOW_PRIVATE_NETWORKS = False

    response = deploy_cloud(deploy, fake_openai)

    assert response.status_code == 400
    assert "openai_base_url" in as_json(response)["error"]["details"]
    with schema_context(acme.schema):
        assert not Deployment.objects.exists()
