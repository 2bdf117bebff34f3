"""Blueprint files and catalog rows for the marketplace tests."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from apps.marketplace.blueprint_file import load_blueprint_file
from apps.marketplace.models import Blueprint, BlueprintVersion
from apps.marketplace.services import blueprint_publish, version_transition

State = BlueprintVersion.State
PUBLISHER_EMAIL = "publisher@agentfactory.example"
PLATFORM_EMAIL = "platform@agentfactory.example"


def blueprint_data(**overrides: Any) -> dict[str, Any]:
    """A valid blueprint file of the northwind publisher, as data."""
    data: dict[str, Any] = {
        "format": 1,
        "slug": "invoice-checker",
        "name": "Invoice Checker",
        "summary": "Checks supplier invoices against purchase orders.",
        "description": "## What it does\n\nCompares **invoices** with purchase orders and flags "
        "differences in quantities and prices.",
        "category": "data",
        "tags": ["finance", "invoices"],
        "icon": "🧾",
        "publisher": "northwind",
        "pricing": {"model": "free"},
        "visibility": "public",
        "version": {
            "version": "1.0.0",
            "changelog": "First release.",
            "instructions": "You check invoices against purchase orders carefully.",
            "provider": "local",
            "model": "local-retrieval",
            "tools": ["knowledge_search", "calculator"],
            "knowledge": [{"title": "Matching rules", "content": "Quantities must match."}],
            "guardrails": {"max_input_chars": 4000, "pii_redaction": ["email"]},
            "settings_schema": {
                "type": "object",
                "additionalProperties": False,
                "required": ["currency"],
                "properties": {
                    "currency": {
                        "type": "string",
                        "title": "Currency",
                        "enum": ["EUR", "USD"],
                        "default": "EUR",
                    },
                    "erp_token": {"type": "string", "title": "ERP token", "x-secret": True},
                },
            },
        },
    }
    for key, value in overrides.items():
        if key.startswith("version__"):
            data["version"][key.removeprefix("version__")] = value
        else:
            data[key] = value
    return data


def blueprint_yaml(**overrides: Any) -> str:
    return yaml.safe_dump(blueprint_data(**overrides), sort_keys=False, allow_unicode=True)


def publish(release: str = State.CERTIFIED, **overrides: Any) -> BlueprintVersion:
    """Publish a blueprint file as the operator and take its version to ``release``."""
    spec = load_blueprint_file(blueprint_yaml(**overrides))
    version = blueprint_publish(spec=spec, actor=None).version
    paths: dict[str, list[str]] = {
        State.DRAFT: [],
        State.EXPERIMENTAL: [State.EXPERIMENTAL],
        State.CERTIFIED: [State.EXPERIMENTAL, State.CERTIFIED],
    }
    for state in paths[release]:
        version = version_transition(version=version, to=state, actor=None)
    return version


def blueprint(slug: str) -> Blueprint:
    return Blueprint.objects.get(slug=slug)


def as_json(response: Any) -> Any:
    return json.loads(response.content)


@pytest.fixture
def public_client(client_for):
    return lambda email=None: client_for("localhost", email)
