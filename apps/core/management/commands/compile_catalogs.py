"""Compile gettext catalogs (.po -> .mo) with the pure-Python polib, so that no GNU gettext tools
are needed. With --check, write nothing and fail if a committed .mo is missing or out of date."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


def catalog_paths() -> list[Path]:
    """Every locale/<lang>/LC_MESSAGES/*.po of the project, LOCALE_PATHS and apps/*/locale."""
    base = Path(settings.BASE_DIR)
    roots = {base / "locale", *map(Path, settings.LOCALE_PATHS), *base.glob("apps/*/locale")}
    return sorted({po.resolve() for root in roots for po in root.glob("*/LC_MESSAGES/*.po")})


def _messages(catalog: Any) -> dict[tuple[str | None, str], Any]:
    """What a catalog translates, comparable between a parsed .po and a parsed .mo."""
    messages: dict[tuple[str | None, str], Any] = {
        (entry.msgctxt, entry.msgid): entry.msgstr or sorted(entry.msgstr_plural.items())
        for entry in catalog.translated_entries()
    }
    messages[(None, "")] = catalog.metadata.get("Plural-Forms")
    return messages


def _up_to_date(polib: Any, po: Any, mo_path: Path) -> bool:
    if not mo_path.exists():
        return False
    try:
        compiled = polib.mofile(str(mo_path))
    except (OSError, ValueError, struct.error):
        return False  # unreadable counts as out of date
    return bool(_messages(compiled) == _messages(po))


class Command(BaseCommand):
    help = "Compile the .po translation catalogs to .mo files with polib (no GNU gettext needed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="Write nothing; fail if any .mo file is missing or out of date with its .po file.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            import polib
        except ImportError as exc:
            raise CommandError(
                "polib is needed to compile catalogs: pip install polib, or run make install-dev."
            ) from exc

        base = Path(settings.BASE_DIR).resolve()
        stale: list[str] = []
        for po_path in catalog_paths():
            mo_path = po_path.with_suffix(".mo")
            label = str(po_path.relative_to(base) if po_path.is_relative_to(base) else po_path)
            try:
                po = polib.pofile(str(po_path))
            except (OSError, ValueError) as exc:
                raise CommandError(f"{label}: cannot parse: {exc}") from exc

            if options["check"]:
                if not _up_to_date(polib, po, mo_path):
                    stale.append(label)
                continue

            data = po.to_binary()
            if mo_path.exists() and mo_path.read_bytes() == data:
                self.stdout.write(f"{label}: up to date")
            else:
                mo_path.write_bytes(data)
                count = len(po.translated_entries())
                self.stdout.write(self.style.SUCCESS(f"{label}: compiled {count} messages"))

        if stale:
            raise CommandError(
                "Compiled catalogs are missing or out of date (run manage.py compile_catalogs): "
                + ", ".join(stale)
            )
        if options["check"]:
            self.stdout.write("All compiled catalogs are up to date.")
