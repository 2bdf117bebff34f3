"""Publishing: the API and the command take blueprint files, refuse bad ones with their lines, and
change nothing when they refuse."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from apps.audit.models import AuditEvent
from apps.marketplace.models import Blueprint, BlueprintVersion, KnowledgeDocument
from tests.marketplace.conftest import (
    PLATFORM_EMAIL,
    PUBLISHER_EMAIL,
    as_json,
    blueprint_yaml,
    publish,
)

URL = "/api/v1/marketplace/publish/"


def counts() -> tuple[int, int, int]:
    return (
        Blueprint.objects.count(),
        BlueprintVersion.objects.count(),
        KnowledgeDocument.objects.count(),
    )


def test_a_publisher_publishes_a_file_as_a_draft(db, public_client):
    client = public_client(PUBLISHER_EMAIL)

    response = client.post(URL, {"content": blueprint_yaml()}, content_type="application/json")

    assert response.status_code == 201, response.content
    body = as_json(response)
    assert body["blueprint"] == "invoice-checker"
    assert body["state"] == "draft"
    version = BlueprintVersion.objects.get(pk=body["version_id"])
    assert version.documents.count() == 1
    assert version.blueprint.state == Blueprint.State.DRAFT  # not listed until released
    assert AuditEvent.objects.filter(action="blueprint.published").exists()


def test_the_yaml_itself_can_be_the_request_body(db, public_client):
    client = public_client(PUBLISHER_EMAIL)

    response = client.post(URL, blueprint_yaml(), content_type="application/yaml")

    assert response.status_code == 201, response.content


def test_a_dry_run_checks_everything_and_changes_nothing(db, public_client):
    client = public_client(PUBLISHER_EMAIL)
    before = counts()

    response = client.post(URL + "?dry_run=true", blueprint_yaml(), content_type="application/yaml")

    assert response.status_code == 200, response.content
    assert as_json(response)["dry_run"] is True
    assert counts() == before


def test_an_invalid_file_gets_line_precise_errors_and_changes_nothing(db, public_client):
    client = public_client(PUBLISHER_EMAIL)
    text = blueprint_yaml().replace("icon:", "colour: blue\nicon:", 1)
    before = counts()

    response = client.post(URL, {"content": text}, content_type="application/json")

    assert response.status_code == 400
    error = as_json(response)["error"]
    assert error["code"] == "invalid_blueprint_file"
    assert error["details"]["errors"][0]["path"] == "colour"
    assert error["details"]["errors"][0]["line"] == text.splitlines().index("colour: blue") + 1
    assert counts() == before


def test_a_version_that_already_exists_is_a_conflict(db, public_client):
    publish()
    client = public_client(PUBLISHER_EMAIL)
    before = counts()

    response = client.post(URL, {"content": blueprint_yaml()}, content_type="application/json")

    assert response.status_code == 409
    assert as_json(response)["error"]["code"] == "version_exists"
    assert counts() == before


def test_a_new_version_changes_the_listing_only_when_it_is_released(db, public_client):
    publish()
    client = public_client(PUBLISHER_EMAIL)
    new_file = blueprint_yaml(
        name="Invoice Checker Pro",
        pricing={"model": "monthly", "price": "9.00", "currency": "EUR"},
        version__version="1.1.0",
    )

    response = client.post(URL, {"content": new_file}, content_type="application/json")

    assert response.status_code == 201
    blueprint = Blueprint.objects.get(slug="invoice-checker")
    assert (blueprint.name, blueprint.pricing_model) == ("Invoice Checker", "free")
    assert sorted(blueprint.versions.values_list("version", flat=True)) == ["1.0.0", "1.1.0"]
    assert blueprint.state == Blueprint.State.LISTED  # 1.0.0 is still certified

    released = client.post(
        f"/api/v1/marketplace/versions/{as_json(response)['version_id']}/release/"
    )

    assert released.status_code == 200
    blueprint.refresh_from_db()
    assert (blueprint.name, blueprint.pricing_model) == ("Invoice Checker Pro", "monthly")


def test_releasing_an_older_version_does_not_take_over_the_listing(db):
    publish(name="Invoice Checker 2", version__version="2.0.0")
    older = publish(release="draft", name="Invoice Checker One", version__version="1.5.0")

    from apps.marketplace.services import version_transition

    version_transition(version=older, to="experimental", actor=None)

    assert Blueprint.objects.get(slug="invoice-checker").name == "Invoice Checker 2"


def test_a_publisher_cannot_publish_for_a_publisher_it_does_not_belong_to(db, public_client):
    client = public_client(PUBLISHER_EMAIL)
    before = counts()

    response = client.post(
        URL,
        {"content": blueprint_yaml(publisher="agent-factory")},
        content_type="application/json",
    )

    assert response.status_code == 403
    assert as_json(response)["error"]["code"] == "not_publisher_member"
    assert counts() == before


def test_a_slug_of_another_publisher_cannot_be_taken_over(db, public_client):
    client = public_client(PUBLISHER_EMAIL)

    response = client.post(
        URL, {"content": blueprint_yaml(slug="it-helpdesk")}, content_type="application/json"
    )

    assert response.status_code == 409
    assert as_json(response)["error"]["code"] == "slug_taken"


def test_platform_admins_do_not_publish(db, public_client):
    response = public_client(PLATFORM_EMAIL).post(
        URL, {"content": blueprint_yaml()}, content_type="application/json"
    )

    assert response.status_code == 403


def test_private_blueprints_must_name_existing_organisations(db, public_client):
    response = public_client(PUBLISHER_EMAIL).post(
        URL,
        {"content": blueprint_yaml(visibility="private", tenants=["acme", "nobody-here"])},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "nobody-here" in as_json(response)["error"]["details"]["errors"][0]["message"]


def test_the_command_publishes_and_releases(db, tmp_path):
    path = tmp_path / "invoice.yaml"
    path.write_text(blueprint_yaml())
    out = io.StringIO()

    call_command("publish_blueprint", str(path), "--release", "certified", stdout=out)

    assert "published invoice-checker 1.0.0 (certified)" in out.getvalue()
    assert Blueprint.objects.get(slug="invoice-checker").certified


def test_the_command_dry_run_publishes_nothing(db, tmp_path):
    path = tmp_path / "invoice.yaml"
    path.write_text(blueprint_yaml())
    before = counts()

    call_command("publish_blueprint", str(path), "--dry-run", stdout=io.StringIO())

    assert counts() == before


def test_the_command_prints_path_line_and_column_for_each_problem(db, tmp_path):
    path = tmp_path / "broken.yaml"
    text = blueprint_yaml(version__version="one").replace("icon:", "colour: blue\nicon:", 1)
    path.write_text(text)
    err = io.StringIO()

    with pytest.raises(CommandError):
        call_command("publish_blueprint", str(path), stdout=io.StringIO(), stderr=err)

    lines = err.getvalue().splitlines()
    colour_line = text.splitlines().index("colour: blue") + 1
    assert f"{path}:{colour_line}:1: colour: Unknown key 'colour'." in lines
    assert any(line.startswith(f"{path}:") and "version.version" in line for line in lines)
    assert not Blueprint.objects.filter(slug="invoice-checker").exists()
