"""Publish blueprint files from the command line (an operator's action, audited as the system)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_tenants.utils import schema_context

from apps.core.exceptions import ServiceError
from apps.marketplace.blueprint_file import BlueprintFileInvalid, load_blueprint_file
from apps.marketplace.models import BlueprintVersion
from apps.marketplace.services import blueprint_publish, version_transition

State = BlueprintVersion.State
RELEASE_PATHS = {
    State.DRAFT: [],
    State.EXPERIMENTAL: [State.EXPERIMENTAL],
    State.CERTIFIED: [State.EXPERIMENTAL, State.CERTIFIED],
}


class Command(BaseCommand):
    help = (
        "Validate and publish blueprint files (a file or a folder of *.yaml). Problems are "
        "printed as PATH:LINE:COLUMN: message; nothing is published from an invalid file."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
        parser.add_argument(
            "--dry-run", action="store_true", help="Check everything, publish nothing."
        )
        parser.add_argument(
            "--release",
            choices=[str(s) for s in RELEASE_PATHS],
            default=State.DRAFT,
            help="Take the new version to this state (default: leave it a draft).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        files: list[Path] = []
        for path in options["paths"]:
            if path.is_dir():
                files.extend(sorted(path.glob("*.yaml")))
            elif path.is_file():
                files.append(path)
            else:
                raise CommandError(f"{path}: no such file or folder")
        if not files:
            raise CommandError("No blueprint files found.")
        failed = 0
        with schema_context(settings.PUBLIC_SCHEMA_NAME):
            for path in files:
                failed += not self._publish(path, options["dry_run"], options["release"])
        if failed:
            raise CommandError(f"{failed} of {len(files)} file(s) could not be published.")

    def _publish(self, path: Path, dry_run: bool, release: str) -> bool:
        try:
            spec = load_blueprint_file(path.read_bytes())
            with transaction.atomic():
                result = blueprint_publish(spec=spec, actor=None, dry_run=dry_run)
                version = result.version
                if not dry_run:
                    for state in RELEASE_PATHS[State(release)]:
                        version = version_transition(version=version, to=state, actor=None)
        except BlueprintFileInvalid as exc:
            for error in exc.errors:
                where = f"{path}:{error.line}:{error.column}" if error.line else str(path)
                field = f" {error.path}:" if error.path else ""
                self.stderr.write(f"{where}:{field} {error.message}")
            return False
        except ServiceError as exc:
            self.stderr.write(f"{path}: {exc.message}")
            return False
        verb = "would publish" if dry_run else "published"
        self.stdout.write(f"{path}: {verb} {spec.slug} {version.version} ({version.state})")
        return True
