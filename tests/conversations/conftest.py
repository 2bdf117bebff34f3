"""Deployments to chat with, committed so that websocket consumers (their database threads) and
live servers see them, and removed afterwards with what they accumulated.

``active_deployment``: the shipped IT Helpdesk for acme on the offline ``local`` provider.
``cloud_deployment``: a test blueprint on provider ``openai`` (no tools, no PII redaction)
pointed at the ``fake_openai`` server; script its replies (the start check has used one).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django_tenants.utils import schema_context

from apps.accounts.models import User
from apps.deployments.models import Deployment
from apps.deployments.services import deployment_create
from apps.deployments.tasks import deployment_start
from apps.marketplace.models import Blueprint, Install
from tests.conftest import Org
from tests.marketplace.conftest import publish
from tests.runtime.fake_openai import FakeOpenAI, Reply

HELPDESK_SETTINGS = {"company_name": "Acme Corp", "helpdesk_email": "it@acme.example"}
CLOUD_SETTINGS_SCHEMA = {
    "type": "object",
    "properties": {
        "openai_api_key": {"type": "string", "title": "OpenAI API key", "x-secret": True},
        "openai_base_url": {"type": "string", "title": "OpenAI-compatible server", "format": "uri"},
    },
}


def deploy_for(org: Org, blueprint_slug: str, settings: dict[str, Any]) -> Deployment:
    """Deploy as the org's admin through the deployments service; a cloud provider's start
    check runs here, in this process (no worker consumes the broker in tests)."""
    with schema_context(org.schema), mock.patch.object(deployment_start, "delay_on_commit"):
        deployment = deployment_create(
            tenant=org.tenant,
            actor=User.objects.get(email=org.admin_email),
            blueprint_slug=blueprint_slug,
            name=f"Chat {uuid.uuid4().hex[:8]}",
            settings=settings,
        )
        if deployment.status == Deployment.Status.CONFIGURING:
            deployment_start.apply(args=(deployment.pk,))
        deployment.refresh_from_db()
        return deployment


def remove_deployment(org: Org, deployment: Deployment) -> None:
    """Delete the deployment with its conversations, calls and secrets, and its install."""
    with schema_context(org.schema):
        Deployment.objects.filter(pk=deployment.pk).delete()
    with schema_context("public"):
        install = (
            Install.objects.filter(tenant=org.tenant, version_id=deployment.version_id)
            .order_by("-id")
            .first()
        )
        if install is not None:
            install.delete()
            blueprint = Blueprint.objects.get(pk=deployment.blueprint_id)
            blueprint.install_count = max(0, blueprint.install_count - 1)
            blueprint.save(update_fields=["install_count"])


@pytest.fixture
def active_deployment(acme: Org, django_db_blocker: Any) -> Iterator[Deployment]:
    with django_db_blocker.unblock():
        deployment = deploy_for(acme, "it-helpdesk", HELPDESK_SETTINGS)
    assert deployment.status == Deployment.Status.ACTIVE
    yield deployment
    with django_db_blocker.unblock():
        remove_deployment(acme, deployment)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server
        assert not server.server_errors, server.server_errors


@pytest.fixture
def cloud_deployment(
    acme: Org, fake_openai: FakeOpenAI, django_db_blocker: Any
) -> Iterator[Deployment]:
    slug = f"chat-cloud-{uuid.uuid4().hex[:8]}"
    with django_db_blocker.unblock():
        with schema_context("public"):
            publish(
                slug=slug,
                name="Chat Cloud",
                version__provider="openai",
                version__model="gpt-4.1-mini",
                version__tools=[],
                # No PII redaction: it holds back a word until the next space, and tests compare
                # what streamed with what the fake server sent.
                version__guardrails={"max_input_chars": 4000},
                version__settings_schema=CLOUD_SETTINGS_SCHEMA,
            )
        fake_openai.script(Reply(text=("ok",)))  # the start check
        deployment = deploy_for(
            acme,
            slug,
            {"openai_api_key": "sk-chat-test", "openai_base_url": fake_openai.base_url},
        )
    try:
        assert deployment.status == Deployment.Status.ACTIVE, deployment.status_reason
        yield deployment
    finally:
        fake_openai.release()
        with django_db_blocker.unblock():
            remove_deployment(acme, deployment)
            with schema_context("public"):
                Blueprint.objects.filter(slug=slug).delete()
