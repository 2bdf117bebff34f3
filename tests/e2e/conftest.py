"""Chromium (Debian's, driven by Playwright) against the real server on this run's database."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium_path() -> str | None:
    return (
        os.environ.get("CHROMIUM_PATH")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


@pytest.fixture(scope="session")
def browser(orgs):
    # Session data is loaded first: once Playwright's event loop runs in this thread, Django
    # refuses synchronous database calls here.
    path = _chromium_path()
    if path is None:
        if os.environ.get("E2E_REQUIRED"):
            pytest.fail("E2E_REQUIRED is set but no Chromium was found (apt-get install chromium).")
        pytest.skip("Chromium is not installed (apt-get install chromium); browser tests skipped.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    if os.environ.get("E2E_SCREENSHOTS"):
        page.screenshot(path=str(tmp_path / "last.png"), full_page=True)
    context.close()
