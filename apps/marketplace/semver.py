"""Semantic Versioning 2.0.0 (semver.org), as much of it as versions of blueprints need."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The regular expression semver.org recommends.
_SEMVER = re.compile(
    r"^(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


@dataclass(frozen=True)
class SemVer:
    major: int
    minor: int
    patch: int
    prerelease: str = ""

    @property
    def is_release(self) -> bool:
        return not self.prerelease


def parse_semver(text: str) -> SemVer | None:
    """The version ``text`` names, or None when it is not a semantic version."""
    match = _SEMVER.match(text)
    # Build metadata has no precedence (1.0.0+a equals 1.0.0+b), so it cannot name a version.
    if match is None or len(text) > 64 or match["build"]:
        return None
    return SemVer(
        int(match["major"]), int(match["minor"]), int(match["patch"]), match["prerelease"] or ""
    )
