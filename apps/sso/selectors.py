"""Reads of the current schema's SSO connections."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.sso.models import Connection
from apps.tenants.db import connection as db_connection


def _in_tenant() -> bool:
    from django.conf import settings

    return bool(db_connection.schema_name) and db_connection.schema_name != (
        settings.PUBLIC_SCHEMA_NAME
    )


def connection_list() -> QuerySet[Connection]:
    return Connection.objects.all()


def connection_get(*, pk: int) -> Connection | None:
    return Connection.objects.filter(pk=pk).first()


def connections_enabled() -> list[Connection]:
    """Enabled connections of the current organisation (none on the public site, which has no
    connection table)."""
    if not _in_tenant():
        return []
    return list(Connection.objects.filter(enabled=True))


def connection_enabled_by_slug(*, slug: str) -> Connection | None:
    if not _in_tenant():
        return None
    return Connection.objects.filter(slug=slug, enabled=True).first()
