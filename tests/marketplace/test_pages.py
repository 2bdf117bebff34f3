"""The marketplace pages: shareable search URLs, facet counts, empty and error states, the detail
page, safe rendering, and the platform admin's moderation and certification pages."""

from __future__ import annotations

from apps.marketplace.models import Blueprint, BlueprintVersion, Review
from tests.marketplace.conftest import PLATFORM_EMAIL, publish


def html(response) -> str:
    assert response.status_code in (200, 400), response.status_code
    return response.content.decode()


def test_the_search_url_carries_every_filter_and_the_page_shows_them(db, client_for, acme):
    client = client_for(acme.host, acme.member_emails[0])

    page = html(client.get("/marketplace/?q=sql&category=data&sort=name"))

    assert "SQL Helper" in page
    assert 'value="sql"' in page  # the search box keeps the words
    assert '<option value="data" selected>' in page
    assert '<option value="name" selected>' in page
    assert "Data and analytics (" in page  # facet counts beside the options


def test_the_fetch_request_gets_only_the_results(db, client_for, acme):
    client = client_for(acme.host, acme.member_emails[0])

    partial = html(client.get("/marketplace/?q=helpdsk", HTTP_X_REQUESTED_WITH="fetch"))

    assert "IT Helpdesk" in partial
    assert "<html" not in partial


def test_the_empty_state_offers_to_clear_the_filters(db, client_for, acme):
    page = html(client_for(acme.host, acme.admin_email).get("/marketplace/?q=zzzqqqxxx"))

    assert "No blueprints match" in page
    assert "Clear all filters" in page


def test_invalid_filters_get_an_error_a_person_can_act_on(db, client_for, acme):
    response = client_for(acme.host, acme.admin_email).get("/marketplace/?category=weapons")

    assert response.status_code == 400
    assert "Start a new search" in html(response)


def test_the_first_visit_shows_trending_and_newest(db, client_for, acme):
    from apps.marketplace.services import blueprint_install_record

    blueprint_install_record(
        version=BlueprintVersion.objects.filter(blueprint__slug="translator").get(),
        tenant=acme.tenant,
    )

    page = html(client_for(acme.host, acme.admin_email).get("/marketplace/"))

    assert "Trending this week" in page
    assert "New in the marketplace" in page


def test_the_detail_page_shows_versions_settings_and_ratings(db, client_for, acme):
    publish()

    page = html(client_for(acme.host, acme.admin_email).get("/marketplace/invoice-checker/"))

    assert "<h2>What it does</h2>" in page  # Markdown rendered
    assert "ERP token" in page
    assert "secret, stored encrypted" in page
    assert "1.0.0" in page
    assert "Certified" in page
    assert "No reviews yet." in page
    assert "Write a review" in page


def test_review_text_is_escaped(db, client_for, acme, globex):
    publish()
    client_for(globex.host, globex.admin_email).post(
        "/api/v1/marketplace/reviews/",
        {"blueprint": "invoice-checker", "rating": 2, "text": "<script>alert(1)</script>"},
        content_type="application/json",
    )
    assert Review.objects.count() == 1

    page = html(client_for(acme.host, acme.admin_email).get("/marketplace/invoice-checker/"))

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_rendering_sanitises_even_rows_written_around_validation(db, client_for, acme):
    from apps.marketplace.markdown import render_markdown

    publish()
    Blueprint.objects.filter(slug="invoice-checker").update(
        description_html=render_markdown("[x](javascript:alert(1)) <img src=x onerror=alert(1)>")
    )

    page = html(client_for(acme.host, acme.admin_email).get("/marketplace/invoice-checker/"))

    assert 'href="javascript:' not in page
    assert "onerror" not in page.replace("&lt;img src=x onerror=alert(1)&gt;", "")


def test_auditors_do_not_browse_the_catalog(db, client_for, acme):
    auditor = client_for(acme.host, f"auditor@{acme.slug}.example")

    assert auditor.get("/marketplace/").status_code == 403
    assert auditor.get("/api/v1/marketplace/blueprints/").status_code == 403


def test_the_platform_admin_certifies_from_the_admin(db, client_for):
    version = publish(release="experimental")
    admin = client_for("localhost", PLATFORM_EMAIL)

    response = admin.post(
        "/admin/marketplace/blueprintversion/",
        {"action": "certify", "_selected_action": [version.pk]},
    )

    assert response.status_code == 302
    version.refresh_from_db()
    assert version.state == "certified"


def test_the_admin_refuses_illegal_moves_with_a_message(db, client_for):
    version = publish(release="draft")
    admin = client_for("localhost", PLATFORM_EMAIL)

    response = admin.post(
        "/admin/marketplace/blueprintversion/",
        {"action": "retire", "_selected_action": [version.pk]},
        follow=True,
    )

    assert "cannot become retired" in html(response)
    version.refresh_from_db()
    assert version.state == "draft"


def test_the_admin_moderation_queue_hides_a_reported_review(db, client_for, acme):
    publish()
    member = client_for(acme.host, acme.member_emails[0])
    member.post(
        "/api/v1/marketplace/reviews/",
        {"blueprint": "invoice-checker", "rating": 1, "text": "rude words"},
        content_type="application/json",
    )
    review = Review.objects.get()
    reporter = client_for(acme.host, acme.admin_email)
    reporter.post(f"/marketplace/reviews/{review.pk}/report/", {"reason": "Offensive."})
    admin = client_for("localhost", PLATFORM_EMAIL)

    queue = html(admin.get("/admin/marketplace/reviewreport/"))
    report_id = review.reports.get().pk
    admin.post(
        "/admin/marketplace/reviewreport/",
        {"action": "remove", "_selected_action": [report_id]},
    )

    assert "rude words" in queue
    review.refresh_from_db()
    assert review.hidden
    assert "rude words" not in html(reporter.get("/marketplace/invoice-checker/"))
    own_view = html(member.get("/marketplace/invoice-checker/"))
    assert "Your review was hidden by the moderators." in own_view
    assert "rude words" not in own_view
