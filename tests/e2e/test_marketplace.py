"""A member finds an agent in the marketplace in a real browser, by keyboard, and reviews it."""

import re

import pytest
from playwright.sync_api import expect

from apps.marketplace.models import Blueprint, Review
from apps.marketplace.services import ratings_refresh
from tests.e2e.test_members import _off_the_browser_loop, _sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("committed")]


def _remove_reviews_of(org) -> None:
    def work():
        for blueprint_id in set(
            Review.objects.filter(tenant=org.tenant).values_list("blueprint_id", flat=True)
        ):
            Review.objects.filter(tenant=org.tenant, blueprint_id=blueprint_id).delete()
            ratings_refresh(blueprint_id)

    _off_the_browser_loop(work)


def test_a_member_searches_with_a_typo_filters_and_reviews(page, product_server, acme):
    base = f"http://{acme.host}:{product_server.port}"
    _sign_in(page, base, acme.member_emails[0])
    try:
        page.get_by_role("link", name="Marketplace").first.click()
        expect(page.get_by_role("heading", name="Marketplace", exact=True)).to_be_visible()
        expect(
            page.get_by_role("heading", name="Trending this week")
            .or_(page.get_by_role("heading", name="New in the marketplace"))
            .first
        ).to_be_visible()

        # Typing searches as you type; the URL follows, so it can be shared.
        search = page.get_by_role("searchbox")
        search.focus()
        page.keyboard.type("helpdsk")
        expect(page.locator("#result-count")).to_contain_text("helpdsk → helpdesk")
        expect(page.get_by_role("link", name=re.compile("IT Helpdesk"))).to_be_visible()
        expect(page).to_have_url(re.compile(r"q=helpdsk"))

        # A filter that excludes it gives the designed empty state.
        page.get_by_label("Category").select_option("sales")
        expect(page.get_by_role("heading", name="No blueprints match")).to_be_visible()
        expect(page).to_have_url(re.compile(r"category=sales"))
        page.get_by_label("Category").select_option("")
        expect(page.get_by_role("link", name=re.compile("IT Helpdesk"))).to_be_visible()

        # The shared URL opens the same results.
        page.goto(f"{base}/marketplace/?q=helpdsk&category=it")
        link = page.get_by_role("link", name=re.compile("IT Helpdesk"))
        link.focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name=re.compile("IT Helpdesk"), level=1)).to_be_visible()
        expect(page.get_by_role("heading", name="What a deployment asks for")).to_be_visible()

        # Review by keyboard: a missing rating is an inline error, then it works.
        page.get_by_label("Your review").fill("Answers VPN questions well.")
        page.get_by_role("button", name="Publish review").press("Enter")
        expect(page.locator(".stars-input .error")).to_contain_text("This field is required")
        expect(page.get_by_label("Your review")).to_have_value("Answers VPN questions well.")
        page.get_by_label("4★").check()
        page.get_by_role("button", name="Publish review").press("Enter")
        expect(page.locator(".messages")).to_contain_text("Thank you for your review.")
        expect(page.locator(".rating-summary")).to_contain_text("4.00")
        expect(page.get_by_role("button", name="Update review")).to_be_visible()
    finally:
        _remove_reviews_of(acme)


def test_the_public_site_shows_the_catalog_without_signing_in(page, product_server):
    page.goto(f"http://localhost:{product_server.port}/marketplace/?certified=true&sort=name")

    expect(page.get_by_label("Certified only")).to_be_checked()
    expect(page.locator(".catalog-cards .card").first).to_be_visible()
    count = _off_the_browser_loop(
        lambda: Blueprint.objects.filter(
            state="listed", certified=True, visibility="public"
        ).count()
    )
    expect(page.locator(".catalog-cards .card")).to_have_count(min(count, 20))
