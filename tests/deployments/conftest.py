"""Deploying in tests: the invoice-checker test blueprint (a required enum, a secret token)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django_tenants.utils import schema_context

from apps.deployments.models import Deployment
from tests.marketplace.conftest import publish

API = "/api/v1/deployments/"


def as_json(response: Any) -> Any:
    return json.loads(response.content) if response.content else None


@pytest.fixture
def blueprint_version(db):
    return publish()


def run_start_checks(org: Any, callbacks: list[Any]) -> None:
    """Run the start checks a request queued for after its commit, in this process (the tests'
    transaction never commits, and no worker consumes the broker here)."""
    from apps.deployments.tasks import deployment_start

    if not callbacks:
        return
    with schema_context(org.schema):
        for deployment in Deployment.objects.filter(status="configuring"):
            deployment_start.apply(args=(deployment.pk,))


@pytest.fixture
def deploy(client_for, acme, django_capture_on_commit_callbacks):
    """POST a deployment as acme's admin, then run the start check that follows the commit."""

    def make(client=None, **body: Any) -> Any:
        client = client or client_for(acme.host, acme.admin_email)
        payload = {"blueprint": "invoice-checker", "name": "Invoices", **body}
        payload.setdefault("settings", {"currency": "EUR", "erp_token": "tok-123-secret"})
        with django_capture_on_commit_callbacks() as callbacks:
            response = client.post(API, payload, content_type="application/json")
        run_start_checks(acme, callbacks)
        return response

    return make
