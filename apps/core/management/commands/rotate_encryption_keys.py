"""Re-encrypt every encrypted field in every schema with the newest key of
``FIELD_ENCRYPTION_KEYS`` (apps/core/crypto.py): add the new key in front, run this, then remove
the old key."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django_tenants.utils import get_tenant_model, schema_context

from apps.core.crypto import PREFIX, EncryptedTextField, rotate


def _encrypted_fields() -> list[tuple[Any, list[str]]]:
    found = []
    for model in apps.get_models():
        names = [
            str(f.column) for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)
        ]
        if names:
            found.append((model, names))
    return found


def _schema_has_table(table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = %s",
            [table],
        )
        return cursor.fetchone() is not None


class Command(BaseCommand):
    help = "Re-encrypt every encrypted value, in every schema, with the newest key."

    def handle(self, *args: Any, **options: Any) -> None:
        schemas = [settings.PUBLIC_SCHEMA_NAME] + list(
            get_tenant_model()
            .objects.exclude(schema_name=settings.PUBLIC_SCHEMA_NAME)
            .values_list("schema_name", flat=True)
        )
        total = 0
        for schema in schemas:
            with schema_context(schema), transaction.atomic():
                for model, columns in _encrypted_fields():
                    table = model._meta.db_table
                    if not _schema_has_table(table):
                        continue
                    total += self._rotate_table(table, model._meta.pk.column, columns)
        self.stdout.write(f"Re-encrypted {total} value(s) in {len(schemas)} schema(s).")

    def _rotate_table(self, table: str, pk: str, columns: list[str]) -> int:
        count = 0
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            for column in columns:
                # Raw SQL: the field would decrypt on read; rotation works on the stored token.
                cursor.execute(
                    f"SELECT {quote(pk)}, {quote(column)} FROM {quote(table)} "  # noqa: S608
                    f"WHERE {quote(column)} LIKE %s FOR UPDATE",
                    [PREFIX + "%"],
                )
                for row_pk, stored in cursor.fetchall():
                    cursor.execute(
                        f"UPDATE {quote(table)} SET {quote(column)} = %s "  # noqa: S608
                        f"WHERE {quote(pk)} = %s",
                        [rotate(stored), row_pk],
                    )
                    count += 1
        return count
