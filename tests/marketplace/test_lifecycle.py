"""The version lifecycle: only the allowed transitions, only by the allowed roles, each audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.exceptions import Conflict
from apps.marketplace.models import Blueprint, BlueprintVersion
from apps.marketplace.selectors import blueprint_detail, deployable_version
from apps.marketplace.services import version_transition
from tests.marketplace.conftest import PLATFORM_EMAIL, PUBLISHER_EMAIL, as_json, publish

State = BlueprintVersion.State


def transition(client, version, **body):
    return client.post(
        f"/api/v1/marketplace/versions/{version.pk}/transition/",
        body,
        content_type="application/json",
    )


def release(client, version):
    return client.post(f"/api/v1/marketplace/versions/{version.pk}/release/")


def test_the_whole_lifecycle_through_the_api(db, public_client, acme):
    publisher, admin = public_client(PUBLISHER_EMAIL), public_client(PLATFORM_EMAIL)
    version = publish(release=State.DRAFT)
    later = publish(release=State.CERTIFIED, version__version="2.0.0")

    assert release(publisher, version).status_code == 200
    assert transition(admin, version, to="certified").status_code == 200
    assert transition(admin, version, to="experimental").status_code == 200  # rollback
    assert transition(admin, version, to="certified").status_code == 200
    sunset = (timezone.localdate() + timedelta(days=30)).isoformat()
    response = transition(admin, version, to="deprecated", sunset_date=sunset, replacement=later.pk)
    assert response.status_code == 200, response.content
    assert as_json(response)["replacement"]["version"] == "2.0.0"
    assert transition(admin, version, to="retired").status_code == 200

    version.refresh_from_db()
    assert version.state == State.RETIRED
    moves = AuditEvent.objects.filter(
        action="blueprint_version.transition", target_id=str(version.pk)
    ).order_by("id")
    assert [(e.metadata["from"], e.metadata["to"]) for e in moves] == [
        ("draft", "experimental"),
        ("experimental", "certified"),
        ("certified", "experimental"),
        ("experimental", "certified"),
        ("certified", "deprecated"),
        ("deprecated", "retired"),
    ]


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (State.DRAFT, "certified"),
        (State.DRAFT, "retired"),
        (State.EXPERIMENTAL, "retired"),
        (State.EXPERIMENTAL, "deprecated"),
        (State.CERTIFIED, "draft"),
        (State.CERTIFIED, "retired"),
    ],
)
def test_an_illegal_transition_is_a_conflict_and_changes_nothing(db, public_client, start, to):
    version = publish(release=start)

    response = transition(public_client(PLATFORM_EMAIL), version, to=to)

    assert response.status_code == 409
    error = as_json(response)["error"]
    assert error["code"] == "illegal_transition"
    assert error["details"]["from"] == start
    version.refresh_from_db()
    assert version.state == start


def test_a_publisher_cannot_certify(db, public_client):
    version = publish(release=State.EXPERIMENTAL)

    response = transition(public_client(PUBLISHER_EMAIL), version, to="certified")

    assert response.status_code == 403
    version.refresh_from_db()
    assert version.state == State.EXPERIMENTAL
    assert AuditEvent.objects.filter(action="permission.denied").exists()


def test_a_platform_admin_cannot_release_a_publishers_draft(db, public_client):
    version = publish(release=State.DRAFT)

    by_release = release(public_client(PLATFORM_EMAIL), version)
    by_transition = transition(public_client(PLATFORM_EMAIL), version, to="experimental")

    assert by_release.status_code == 403
    assert by_transition.status_code == 403
    version.refresh_from_db()
    assert version.state == State.DRAFT


def test_deprecation_needs_a_future_sunset_date(db, public_client):
    version = publish()
    admin = public_client(PLATFORM_EMAIL)

    missing = transition(admin, version, to="deprecated")
    past = transition(admin, version, to="deprecated", sunset_date="2020-01-01")

    assert missing.status_code == 400
    assert "sunset_date" in as_json(missing)["error"]["details"]
    assert past.status_code == 400
    version.refresh_from_db()
    assert version.state == State.CERTIFIED


def test_a_retired_version_cannot_be_deployed_and_a_deprecated_one_warns(
    db, public_client, client_for, acme
):
    version = publish()
    admin = public_client(PLATFORM_EMAIL)
    sunset = timezone.localdate() + timedelta(days=10)
    transition(admin, version, to="deprecated", sunset_date=sunset.isoformat())

    page = client_for(acme.host, acme.admin_email).get("/marketplace/invoice-checker/")
    assert "is deprecated and stops working on" in page.content.decode()
    assert deployable_version(tenant=acme.tenant, slug="invoice-checker", version="1.0.0")

    transition(admin, version, to="retired")

    with pytest.raises(Conflict) as caught:
        deployable_version(tenant=acme.tenant, slug="invoice-checker", version="1.0.0")
    assert caught.value.code == "version_retired"
    assert Blueprint.objects.get(slug="invoice-checker").state == Blueprint.State.RETIRED
    retired_page = client_for(acme.host, acme.admin_email).get("/marketplace/invoice-checker/")
    assert "This blueprint is retired" in retired_page.content.decode()


def test_deprecated_versions_are_retired_on_their_sunset_date(db):
    from apps.marketplace.tasks import retire_sunset_versions

    due = publish()
    later = publish(slug="later-one", name="Later One")
    for version, days in ((due, 1), (later, 5)):
        version_transition(
            version=version,
            to="deprecated",
            actor=None,
            sunset_date=timezone.localdate() + timedelta(days=days),
        )
    BlueprintVersion.objects.filter(pk=due.pk).update(sunset_date=timezone.localdate())

    retired = retire_sunset_versions.apply().get()

    assert retired == [due.pk]
    assert BlueprintVersion.objects.get(pk=due.pk).state == State.RETIRED
    assert BlueprintVersion.objects.get(pk=later.pk).state == State.DEPRECATED
    assert retire_sunset_versions.apply().get() == []  # idempotent


def test_drafts_are_invisible_to_organisations(db, acme):
    publish(release=State.DRAFT)

    with pytest.raises(Exception, match="No such blueprint"):
        blueprint_detail(tenant=acme.tenant, slug="invoice-checker")


def test_the_recommended_version_is_the_newest_certified(db, client_for, acme):
    publish()
    publish(release=State.EXPERIMENTAL, version__version="1.1.0")

    body = as_json(
        client_for(acme.host, acme.admin_email).get(
            "/api/v1/marketplace/blueprints/invoice-checker/"
        )
    )

    assert body["recommended_version"] == "1.0.0"
    assert [v["version"] for v in body["versions"]] == ["1.1.0", "1.0.0"]
    secret = [f for f in body["versions"][0]["settings"] if f["name"] == "erp_token"]
    assert secret[0]["secret"] is True
