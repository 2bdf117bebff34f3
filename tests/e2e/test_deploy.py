"""A developer deploys a shipped blueprint from the marketplace in a real browser, by keyboard,
fixes an invalid setting, and asks the agent a question through the API."""

import re

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from apps.deployments.models import Deployment
from tests.e2e.test_members import _off_the_browser_loop, _sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("committed")]


def _remove_deployments(org) -> None:
    def work():
        with schema_context(org.schema):
            Deployment.objects.all().delete()

    _off_the_browser_loop(work)


def test_deploy_it_helpdesk_in_three_steps(page, product_server, acme):
    base = f"http://{acme.host}:{product_server.port}"
    _sign_in(page, base, acme.admin_email)
    try:
        page.goto(f"{base}/marketplace/?q=helpdesk")
        page.get_by_role("link", name=re.compile("IT Helpdesk")).first.click()
        deploy = page.get_by_role("link", name="Deploy", exact=True)
        deploy.focus()
        page.keyboard.press("Enter")  # step 1: from the blueprint to the form

        expect(page.get_by_role("heading", name="Deploy IT Helpdesk")).to_be_visible()
        expect(page.get_by_role("note")).to_contain_text("runs offline")
        name = page.get_by_label(re.compile(r"^Name"))
        expect(name).to_have_value("IT Helpdesk")
        name.fill("")
        page.get_by_role("button", name="Deploy", exact=True).press("Enter")  # step 2: errors
        expect(page.get_by_role("alert").first).to_contain_text(
            "Please correct the fields marked below"
        )
        expect(page.get_by_label(re.compile(r"^Name"))).to_be_focused()
        page.get_by_label(re.compile(r"^Name")).fill("Helpdesk")
        page.get_by_label(re.compile(r"^Organisation name")).fill("Acme Corp")
        page.get_by_label(re.compile(r"^Helpdesk email")).fill("help@acme.example")
        page.get_by_label("VPN client").select_option("WireGuard")
        page.get_by_role("button", name="Deploy", exact=True).press("Enter")  # step 3

        expect(page.get_by_role("heading", name=re.compile("Helpdesk"))).to_be_visible()
        expect(page.locator(".badge-status-active").first).to_be_visible()
        expect(page.get_by_text("runs offline on the built-in local provider")).to_be_visible()
        page.get_by_role("link", name="All deployments").click()
        expect(page.get_by_role("table")).to_contain_text("Helpdesk")
    finally:
        _remove_deployments(acme)
