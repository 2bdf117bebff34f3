"""A person creates a workspace on the public site and signs in to it, in a real browser."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("committed")]
PASSWORD = "a-long-and-private-passphrase"


def test_sign_up_then_sign_in_to_the_new_workspace(page, product_server):
    port = product_server.port
    page.goto(f"http://localhost:{port}/")
    page.get_by_role("link", name="Create a workspace").first.click()
    expect(page.get_by_role("heading", name="Create a workspace")).to_be_visible()

    page.get_by_label("Organisation name").fill("Umbrella Research")
    page.get_by_label("Workspace address").fill("Umbrella!")
    page.get_by_label("Your work email").fill("alice@umbrella.example")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create the workspace").click()

    # A bad address is explained next to the field, and nothing typed is lost.
    expect(page.get_by_role("alert")).to_contain_text("Please correct the fields marked below")
    expect(page.locator(".field-invalid")).to_contain_text("lowercase letters")
    expect(page.get_by_label("Organisation name")).to_have_value("Umbrella Research")

    page.get_by_label("Workspace address").fill("umbrella")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create the workspace").click()

    expect(page.get_by_role("heading", name="Your workspace is ready")).to_be_visible()
    expect(page.get_by_role("link", name=f"http://umbrella.localhost:{port}/")).to_be_visible()
    page.get_by_role("link", name="Sign in to your workspace").click()

    expect(page).to_have_url(re.compile(rf"http://umbrella\.localhost:{port}/accounts/login/"))
    expect(page.get_by_role("heading", name="Sign in to Umbrella Research")).to_be_visible()
    page.get_by_label("Email").fill("alice@umbrella.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")

    expect(page.get_by_role("heading", name="Welcome to Umbrella Research")).to_be_visible()
    expect(page.get_by_text("alice@umbrella.example (Tenant admin)")).to_be_visible()


def test_wrong_password_is_explained_and_the_email_kept(page, product_server, acme):
    page.goto(f"http://{acme.host}:{product_server.port}/accounts/login/")
    page.get_by_label("Email").fill(acme.admin_email)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("password you specified are not correct")
    expect(page.get_by_label("Email")).to_have_value(acme.admin_email)


def test_keyboard_alone_reaches_the_content_and_the_form(page, product_server):
    page.goto(f"http://localhost:{product_server.port}/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Create a workspace").last).to_be_focused()
    page.keyboard.press("Enter")

    # The form opens with its first field focused, and Enter submits it.
    expect(page.get_by_label("Organisation name")).to_be_focused()
    page.keyboard.type("Keyboard Co")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_label("Organisation name")).to_have_value("Keyboard Co")


def test_unknown_workspace_address_shows_a_helpful_page(page, product_server):
    response = page.goto(f"http://nobody.localhost:{product_server.port}/")
    assert response.status == 404
    expect(page.get_by_role("heading", name="No workspace here")).to_be_visible()


def test_pages_follow_the_browsers_language(browser, product_server):
    context = browser.new_context(locale="de-DE")
    try:
        page = context.new_page()
        page.goto(f"http://localhost:{product_server.port}/signup/")
        expect(page.get_by_role("heading", name="Arbeitsbereich erstellen")).to_be_visible()
    finally:
        context.close()
