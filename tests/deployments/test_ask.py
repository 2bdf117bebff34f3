"""Asking a deployed agent: every shipped blueprint answers offline; guardrails, status, rate
limits and usage recording apply."""

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import schema_context

from apps.deployments.models import Deployment, RuntimeCall
from apps.marketplace.models import Blueprint, BlueprintVersion
from tests.deployments.conftest import API, as_json
from tests.runtime.test_local_provider import QUESTIONS


def sample_settings(schema: dict[str, Any]) -> dict[str, Any]:
    """Values for the required settings of a schema, as a person would fill them in."""
    values: dict[str, Any] = {}
    for name in schema.get("required", []):
        spec = schema["properties"][name]
        if "default" in spec:
            continue
        if "enum" in spec:
            values[name] = spec["enum"][0]
        elif spec["type"] == "boolean":
            values[name] = True
        elif spec["type"] in ("integer", "number"):
            values[name] = spec.get("minimum", 1)
        elif spec.get("format") == "email":
            values[name] = "help@acme.example"
        elif spec.get("format") == "uri":
            values[name] = "https://acme.example/help"
        else:
            text = "Acme Corp sells office furniture to small teams across Europe. " * 4
            values[name] = text[: max(spec.get("minLength", 0), 9)].strip()
            if len(values[name]) < spec.get("minLength", 0):
                values[name] = text[: spec["minLength"]]
    return values


@pytest.mark.parametrize("slug", sorted(QUESTIONS))
def test_every_shipped_blueprint_answers_through_its_deployment(db, slug, deploy, client_for, acme):
    question, document, phrase = QUESTIONS[slug]
    version = BlueprintVersion.objects.get(blueprint__slug=slug, state="certified")
    created = deploy(blueprint=slug, name=slug, settings=sample_settings(version.settings_schema))
    assert created.status_code == 201, created.content
    member = client_for(acme.host, acme.member_emails[0])

    response = member.post(
        f"{API}{as_json(created)['id']}/ask/",
        {"message": question},
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    body = as_json(response)
    assert body["offline"] is True
    assert document in body["reply"]
    assert phrase.lower() in body["reply"].lower()
    assert body["usage"]["provider"] == "local"
    with schema_context(acme.schema):
        call = RuntimeCall.objects.get()
    assert (call.outcome, call.user_id) == ("ok", acme.user(acme.member_emails[0]).pk)
    assert call.output_tokens > 0


def test_the_calculator_runs_through_function_calling(db, deploy, client_for, acme):
    version = BlueprintVersion.objects.get(blueprint__slug="data-analyst", state="certified")
    created = as_json(
        deploy(
            blueprint="data-analyst",
            name="Numbers",
            settings=sample_settings(version.settings_schema),
        )
    )

    body = as_json(
        client_for(acme.host, acme.admin_email).post(
            f"{API}{created['id']}/ask/",
            {"message": "What is 15% of 2,400?"},
            content_type="application/json",
        )
    )

    assert body["tool_calls"][0]["tool"] == "calculator"
    assert "360" in body["reply"]


def test_personal_data_is_redacted_and_blocked_topics_refused(db, deploy, client_for, acme):
    from tests.marketplace.conftest import publish

    publish(
        version__guardrails={
            "pii_redaction": ["email"],
            "blocked_topics": ["salaries"],
            "refusal_message": "I can't discuss salaries.",
        }
    )
    created = as_json(deploy())
    admin = client_for(acme.host, acme.admin_email)

    refused = as_json(
        admin.post(
            f"{API}{created['id']}/ask/",
            {"message": "What are the salaries of the finance team?"},
            content_type="application/json",
        )
    )

    assert refused["refused"] == "blocked_topic"
    assert refused["reply"] == "I can't discuss salaries."


def test_a_paused_or_retired_deployment_does_not_answer(
    blueprint_version, deploy, client_for, acme
):
    created = as_json(deploy())
    admin = client_for(acme.host, acme.admin_email)
    admin.post(f"{API}{created['id']}/pause/")

    paused = admin.post(
        f"{API}{created['id']}/ask/", {"message": "hello"}, content_type="application/json"
    )

    assert paused.status_code == 409
    assert as_json(paused)["error"]["code"] == "deployment_paused"
    with schema_context(acme.schema):
        Deployment.objects.filter(pk=created["id"]).update(status="active")
    BlueprintVersion.objects.filter(blueprint__slug="invoice-checker").update(state="retired")
    Blueprint.objects.filter(slug="invoice-checker").update(state="retired")
    retired = admin.post(
        f"{API}{created['id']}/ask/", {"message": "hello"}, content_type="application/json"
    )
    assert retired.status_code == 409
    assert "retired" in as_json(retired)["error"]["message"]


def test_too_many_messages_get_429_with_retry_after(
    blueprint_version, deploy, client_for, acme, settings
):
    from apps.accounts.services import user_create
    from tests.conftest import PASSWORD

    settings.RATE_LIMIT_USER_PER_MINUTE = 2
    created = as_json(deploy())
    with schema_context(acme.schema):
        user_create(email="chatty@acme.example", password=PASSWORD, email_verified=True)
    member = client_for(acme.host, "chatty@acme.example")
    url = f"{API}{created['id']}/ask/"

    answers = [
        member.post(url, {"message": "hello"}, content_type="application/json") for _ in range(3)
    ]

    assert [a.status_code for a in answers][:2] == [200, 200]
    assert answers[2].status_code == 429
    assert int(answers[2]["Retry-After"]) >= 1
    assert as_json(answers[2])["error"]["code"] == "rate_limited"


def test_auditors_cannot_chat(blueprint_version, deploy, client_for, acme):
    created = as_json(deploy())
    auditor = client_for(acme.host, f"auditor@{acme.slug}.example")

    response = auditor.post(
        f"{API}{created['id']}/ask/", {"message": "hi"}, content_type="application/json"
    )

    assert response.status_code == 403
