"""German is a first-class language: pages follow Accept-Language, the catalog is complete and
the committed .mo matches the .po."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import translation

GERMAN_PO = Path(settings.BASE_DIR) / "locale" / "de" / "LC_MESSAGES" / "django.po"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\{\{.*?\}\}|<[^>]+>")


@pytest.fixture(autouse=True)
def _default_language_afterwards() -> Iterator[None]:
    # Some responses activate a language on this thread; do not leak German into other tests.
    yield
    translation.deactivate()


def test_signup_page_is_german_when_the_browser_asks_for_it(db, client_for):
    response = client_for("localhost", HTTP_ACCEPT_LANGUAGE="de").get("/signup/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<html lang="de">' in html
    assert "<h1>Arbeitsbereich erstellen</h1>" in html
    assert "Name der Organisation" in html
    assert "Create a workspace" not in html


def test_signup_page_is_english_by_default(db, client_for):
    html = client_for("localhost").get("/signup/").content.decode()
    assert '<html lang="en">' in html
    assert "<h1>Create a workspace</h1>" in html
    assert "Arbeitsbereich" not in html


def test_unknown_host_page_is_german_when_the_browser_asks_for_it(db, client_for):
    response = client_for("nobody.localhost", HTTP_ACCEPT_LANGUAGE="de").get("/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "<h1>Kein Arbeitsbereich unter dieser Adresse</h1>" in html
    assert "Unter dieser Adresse gibt es keine Organisation." in html
    assert "There is no organisation" not in html


def test_committed_compiled_catalogs_are_up_to_date():
    call_command("compile_catalogs", "--check")


def test_compile_catalogs_explains_how_to_get_polib(monkeypatch):
    monkeypatch.setitem(sys.modules, "polib", None)  # makes `import polib` fail
    with pytest.raises(CommandError, match="pip install polib, or run make install-dev"):
        call_command("compile_catalogs", "--check")


def test_german_catalog_is_complete_and_not_fuzzy():
    catalog = polib.pofile(str(GERMAN_PO))
    assert catalog.metadata["Language"] == "de"
    live = [entry for entry in catalog if not entry.obsolete]
    assert live, "the German catalog is empty"
    untranslated = [entry.msgid for entry in live if not entry.translated()]
    fuzzy = [entry.msgid for entry in live if entry.fuzzy]
    assert not untranslated, f"untranslated: {untranslated}"
    assert not fuzzy, f"fuzzy: {fuzzy}"


def test_german_translations_keep_every_placeholder():
    catalog = polib.pofile(str(GERMAN_PO))
    for entry in catalog.translated_entries():
        expected = sorted(PLACEHOLDER.findall(entry.msgid))
        for translated in [entry.msgstr, *entry.msgstr_plural.values()]:
            if translated:
                assert sorted(PLACEHOLDER.findall(translated)) == expected, entry.msgid
