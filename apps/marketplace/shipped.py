"""The blueprints that ship with the product (``blueprints/*.yaml``), published and certified by
``manage.py bootstrap`` so that every installation starts with a useful catalog."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction

from apps.marketplace.blueprint_file import load_blueprint_file
from apps.marketplace.models import Blueprint, BlueprintVersion
from apps.marketplace.services import blueprint_publish, publisher_ensure, version_transition

SHIPPED_DIR = Path(settings.BASE_DIR) / "blueprints"
SHIPPED_PUBLISHER = ("agent-factory", "Agent Factory")
State = BlueprintVersion.State


def shipped_catalog_seed(directory: Path = SHIPPED_DIR) -> list[str]:
    """Publish and certify every shipped blueprint version not yet in the catalog; returns the
    ``slug version`` of each one added. Safe to run again: existing versions are left alone."""
    slug, name = SHIPPED_PUBLISHER
    publisher_ensure(slug=slug, name=name, verified=True)
    added = []
    for path in sorted(directory.glob("*.yaml")):
        spec = load_blueprint_file(path.read_bytes())
        existing = Blueprint.objects.filter(slug=spec.slug).first()
        if existing and existing.versions.filter(version=spec.version["version"]).exists():
            continue
        with transaction.atomic():
            result = blueprint_publish(spec=spec, actor=None)
            version = version_transition(version=result.version, to=State.EXPERIMENTAL, actor=None)
            version_transition(version=version, to=State.CERTIFIED, actor=None, note="shipped")
        added.append(f"{spec.slug} {spec.version['version']}")
    return added
