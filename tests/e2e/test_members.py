"""A tenant admin manages people in a real browser; an invited person joins through the link."""

import re
import uuid

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from apps.accounts import members
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("committed")]


def _off_the_browser_loop(work):
    """Django refuses database calls on the thread where Playwright's event loop runs."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    def run():
        try:
            return work()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def _token_for(schema: str, email: str) -> str:
    with schema_context(schema):
        return members.invitation_token(members.Invitation.objects.get(email=email))


def _sign_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_an_admin_invites_and_the_invited_person_joins(page, browser, product_server, acme):
    base = f"http://{acme.host}:{product_server.port}"
    _sign_in(page, base, acme.admin_email)
    page.get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Members")).to_be_visible()

    email = f"joiner-{uuid.uuid4().hex[:6]}@acme.example"
    page.get_by_label("Email address").fill("not an email")
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.get_by_role("alert")).to_contain_text("Please correct the fields marked below")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Role", exact=True).select_option("developer")
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.get_by_role("status").or_(page.locator(".messages"))).to_contain_text(
        f"An invitation was sent to {email}"
    )

    # The e-mail went out from the server process; the link carries the same signed token.
    token = _off_the_browser_loop(lambda: _token_for(acme.schema, email))
    joiner = browser.new_context(locale="en-GB").new_page()
    joiner.goto(f"{base}/people/invitations/accept/{token}/")
    expect(joiner.get_by_role("heading", name="Join Acme Corp")).to_be_visible()
    joiner.get_by_label("Choose a password").fill(PASSWORD)
    joiner.get_by_label("Repeat the password").fill(PASSWORD)
    joiner.get_by_role("button", name="Join the workspace").click()
    expect(joiner.get_by_text(f"{email} (Developer)")).to_be_visible()

    # The admin sees the new member and changes the role, by keyboard-reachable controls.
    page.reload()
    row = page.get_by_role("row").filter(has_text=email)
    row.get_by_label(re.compile("Role of")).select_option("operator")
    row.get_by_role("button", name="Change role").click()
    expect(page.locator(".messages")).to_contain_text(f"{email} is now Operator.")
