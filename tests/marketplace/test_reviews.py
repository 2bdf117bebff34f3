"""Reviews and ratings: one per person, consistent averages, publisher replies and moderation."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from apps.audit.models import AuditEvent
from apps.marketplace.models import Blueprint, Review, ReviewReport
from apps.marketplace.services import review_create, review_update
from tests.marketplace.conftest import PLATFORM_EMAIL, PUBLISHER_EMAIL, as_json, publish

API = "/api/v1/marketplace/reviews/"


def post_review(client, slug="invoice-checker", **body):
    return client.post(API, {"blueprint": slug, **body}, content_type="application/json")


def test_a_member_reviews_and_the_rating_follows(db, client_for, acme):
    publish()
    client = client_for(acme.host, acme.member_emails[0])

    response = post_review(client, rating=4, text="Saves me an hour a week.")

    assert response.status_code == 201, response.content
    body = as_json(response)
    assert body["mine"] is True
    review = Review.objects.get(pk=body["id"])
    assert (review.tenant_id, review.user_id) == (
        acme.tenant.pk,
        acme.user(acme.member_emails[0]).pk,
    )
    blueprint = Blueprint.objects.get(slug="invoice-checker")
    assert (blueprint.rating_count, blueprint.rating_avg) == (1, Decimal("4.00"))
    with schema_context(acme.schema):
        assert AuditEvent.objects.filter(action="review.created").exists()


def test_a_second_review_by_the_same_person_is_a_conflict(db, client_for, acme):
    publish()
    client = client_for(acme.host, acme.member_emails[0])
    post_review(client, rating=4)

    response = post_review(client, rating=1)

    assert response.status_code == 409
    assert as_json(response)["error"]["code"] == "review_exists"
    assert Review.objects.filter(blueprint__slug="invoice-checker").count() == 1


@pytest.mark.parametrize("rating", [0, 6, -1, 3.5, "five", None, True])
def test_a_rating_outside_one_to_five_is_refused(db, client_for, acme, rating):
    publish()

    response = post_review(client_for(acme.host, acme.admin_email), rating=rating)

    assert response.status_code == 400
    assert "rating" in as_json(response)["error"]["details"]
    assert not Review.objects.exists()


def test_a_retired_blueprint_takes_no_reviews(db, client_for, acme):
    from datetime import timedelta

    from django.utils import timezone

    from apps.marketplace.services import version_transition

    version = publish()
    version = version_transition(
        version=version,
        to="deprecated",
        actor=None,
        sunset_date=timezone.localdate() + timedelta(days=1),
    )
    version_transition(version=version, to="retired", actor=None)

    response = post_review(client_for(acme.host, acme.admin_email), rating=5)

    assert response.status_code == 409
    assert as_json(response)["error"]["code"] == "blueprint_retired"
    assert not Review.objects.exists()


def test_editing_a_review_updates_the_average(db, client_for, acme, globex):
    publish()
    mine = client_for(acme.host, acme.member_emails[0])
    review_id = as_json(post_review(mine, rating=2))["id"]
    post_review(client_for(globex.host, globex.admin_email), rating=4)

    response = mine.patch(
        f"{API}{review_id}/", {"rating": 5, "text": "Better now."}, content_type="application/json"
    )

    assert response.status_code == 200
    blueprint = Blueprint.objects.get(slug="invoice-checker")
    assert (blueprint.rating_count, blueprint.rating_avg) == (2, Decimal("4.50"))


def test_nobody_edits_or_deletes_anothers_review(db, client_for, acme, globex):
    publish()
    review_id = as_json(post_review(client_for(acme.host, acme.member_emails[0]), rating=5))["id"]
    colleague = client_for(acme.host, acme.admin_email)
    stranger = client_for(globex.host, globex.admin_email)

    for client in (colleague, stranger):
        edit = client.patch(f"{API}{review_id}/", {"rating": 1}, content_type="application/json")
        delete = client.delete(f"{API}{review_id}/")
        assert (edit.status_code, delete.status_code) == (404, 404)
    assert Review.objects.get(pk=review_id).rating == 5


def test_reviews_show_a_display_name_never_an_email(db, client_for, acme):
    publish()
    post_review(client_for(acme.host, acme.member_emails[0]), rating=5, text="Good.")

    page = client_for(acme.host, acme.admin_email).get("/marketplace/invoice-checker/")

    html = page.content.decode()
    assert "A verified user" in html
    assert acme.member_emails[0] not in html


def test_the_publisher_replies_and_the_reply_is_shown(db, client_for, public_client, acme):
    publish()
    review_id = as_json(post_review(client_for(acme.host, acme.admin_email), rating=3))["id"]

    response = public_client(PUBLISHER_EMAIL).post(
        f"{API}{review_id}/reply/",
        {"text": "Thanks, fixed in 1.1."},
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    page = client_for(acme.host, acme.admin_email).get("/marketplace/invoice-checker/")
    assert "Thanks, fixed in 1.1." in page.content.decode()


def test_only_the_blueprints_own_publisher_replies(db, client_for, public_client, acme):
    review_id = as_json(
        post_review(client_for(acme.host, acme.admin_email), slug="it-helpdesk", rating=3)
    )["id"]

    response = public_client(PUBLISHER_EMAIL).post(
        f"{API}{review_id}/reply/", {"text": "Not mine to answer."}, content_type="application/json"
    )

    assert response.status_code == 403
    assert Review.objects.get(pk=review_id).publisher_reply == ""


def test_a_reported_review_reaches_moderation_and_removal_fixes_the_rating(
    db, client_for, public_client, acme, globex
):
    publish()
    abusive = as_json(post_review(client_for(acme.host, acme.admin_email), rating=1, text="!!"))
    post_review(client_for(globex.host, globex.admin_email), rating=5)
    reporter = client_for(globex.host, globex.member_emails[0])

    reported = reporter.post(
        f"{API}{abusive['id']}/report/", {"reason": "Spam."}, content_type="application/json"
    )
    again = reporter.post(
        f"{API}{abusive['id']}/report/", {"reason": "Spam!"}, content_type="application/json"
    )
    assert (reported.status_code, again.status_code) == (201, 409)

    moderator = public_client(PLATFORM_EMAIL)
    queue = as_json(moderator.get("/api/v1/marketplace/reports/"))
    assert [r["review"]["id"] for r in queue["results"]] == [abusive["id"]]
    resolved = moderator.post(
        f"/api/v1/marketplace/reports/{queue['results'][0]['id']}/resolve/",
        {"decision": "remove"},
        content_type="application/json",
    )

    assert resolved.status_code == 200
    assert Review.objects.get(pk=abusive["id"]).hidden
    blueprint = Blueprint.objects.get(slug="invoice-checker")
    assert (blueprint.rating_count, blueprint.rating_avg) == (1, Decimal("5.00"))
    assert as_json(moderator.get("/api/v1/marketplace/reports/"))["results"] == []
    assert ReviewReport.objects.get().status == ReviewReport.Status.REMOVED


def test_the_review_form_shows_errors_inline_and_keeps_the_text(db, client_for, acme):
    publish()
    client = client_for(acme.host, acme.admin_email)

    page = client.post("/marketplace/invoice-checker/review/", {"text": "No stars given"})

    assert page.status_code == 400
    html = page.content.decode()
    assert "No stars given" in html
    assert 'class="error"' in html
    assert not Review.objects.exists()


def test_ratings_stay_consistent_under_concurrent_writes(committed, acme, globex):
    version = publish(slug="busy-blueprint", name="Busy Blueprint")
    blueprint = version.blueprint
    people = [(acme, email) for email in (acme.admin_email, *acme.member_emails)] + [
        (globex, email) for email in (globex.admin_email, *globex.member_emails)
    ]
    barrier = threading.Barrier(len(people))
    errors: list[BaseException] = []

    def write(org, email, rating):
        try:
            with schema_context(org.schema):
                user = org.user(email)
                barrier.wait(timeout=10)
                review = review_create(
                    blueprint=blueprint, tenant=org.tenant, user=user, rating=rating, text=""
                )
                review_update(
                    review=review, tenant=org.tenant, user=user, rating=6 - rating, text="again"
                )
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=write, args=(org, email, 1 + i % 5))
        for i, (org, email) in enumerate(people)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert errors == []
        blueprint.refresh_from_db()
        ratings = list(Review.objects.filter(blueprint=blueprint).values_list("rating", flat=True))
        assert len(ratings) == len(people) == blueprint.rating_count
        assert blueprint.rating_sum == sum(ratings)
        assert blueprint.rating_avg == round(Decimal(sum(ratings)) / len(ratings), 2)
    finally:
        Blueprint.objects.filter(pk=blueprint.pk).delete()
