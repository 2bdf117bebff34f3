"""Create a tenant schema by copying the template schema's structure, not by running migrations.

The template schema (``TENANT_TEMPLATE_SCHEMA``) is migrated like any tenant. From its catalog we
derive, once per migration state, a DDL script that recreates every table, column, constraint,
index and trigger under their original names (so later migrations find what they expect), and
copies the rows Django keeps about itself (applied migrations, content types, permissions).
Running that script costs one round trip, whatever the number of existing tenants.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from psycopg import sql

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_lock = threading.Lock()
_cache: dict[tuple[int, int], CloneScript] = {}


@dataclass
class _Table:
    name: str
    columns: list[str] = field(default_factory=list)
    identity_columns: list[str] = field(default_factory=list)
    has_rows: bool = False


@dataclass(frozen=True)
class CloneScript:
    tables: tuple[_Table, ...]
    constraints: tuple[str, ...]
    foreign_keys: tuple[str, ...]
    indexes: tuple[str, ...]
    triggers: tuple[str, ...]

    def render(self, *, template: str, target: str) -> str:
        """The SQL that builds ``target``; names inside resolve through the search path."""
        q_target = _quote(target)
        q_template = _quote(template)
        parts = [
            f"CREATE SCHEMA {q_target}",
            f"SET LOCAL search_path TO {q_target}, public",
        ]
        for table in self.tables:
            parts.append(
                f"CREATE TABLE {_quote(table.name)} (\n  " + ",\n  ".join(table.columns) + "\n)"
            )
        for table in self.tables:
            if not table.has_rows:
                continue
            parts.append(
                # Identifiers only, each quoted; names come from the catalog, never from users.
                f"INSERT INTO {_quote(table.name)} SELECT * FROM {q_template}.{_quote(table.name)}"  # noqa: S608
            )
            for column in table.identity_columns:
                parts.append(
                    f"SELECT setval(pg_get_serial_sequence('{q_target}.{_quote(table.name)}', "  # noqa: S608
                    f"'{column}'), coalesce(max({_quote(column)}), 0) + 1, false) "
                    f"FROM {_quote(table.name)}"
                )
        parts.extend(self.constraints)
        parts.extend(self.foreign_keys)
        parts.extend(self.indexes)
        parts.extend(self.triggers)
        return ";\n".join(parts) + ";"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def validate_schema_name(name: str) -> None:
    if not _SCHEMA_NAME.match(name) or name.startswith("pg_"):
        raise ValueError(f"{name!r} is not a valid tenant schema name")


def _fingerprint(template: str) -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT count(*), coalesce(max(id), 0) FROM {}.django_migrations").format(
                sql.Identifier(template)
            )
        )
        count, last = cursor.fetchone()
    return int(count), int(last)


def _read_catalog(template: str) -> CloneScript:
    """Read the template's structure with only the template on the search path, so every name
    inside it comes back unqualified while names elsewhere (public) stay qualified."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('search_path')")
        saved_path = cursor.fetchone()[0]
        cursor.execute("SELECT set_config('search_path', %s, true)", [_quote(template)])
        script = _build_script(cursor, template)
        # Only on success: a failure aborts the transaction, and its rollback restores the path.
        cursor.execute("SELECT set_config('search_path', %s, true)", [saved_path])
        return script


def _build_script(cursor: object, template: str) -> CloneScript:
    cursor.execute("SELECT quote_ident(%s)", [template])  # type: ignore[attr-defined]
    # pg_get_indexdef (and, on some versions, pg_get_triggerdef) always qualify the table.
    qualified_on = f" ON {cursor.fetchone()[0]}."  # type: ignore[attr-defined]

    def unqualify(definition: str) -> str:
        return definition.replace(qualified_on, " ON ", 1)

    cursor.execute(  # type: ignore[attr-defined]
        """
        SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.oid
        """,
        [template],
    )
    relations = cursor.fetchall()  # type: ignore[attr-defined]
    tables: list[_Table] = []
    constraints: list[str] = []
    foreign_keys: list[str] = []
    indexes: list[str] = []
    triggers: list[str] = []
    for oid, name in relations:
        table = _Table(name=name)
        cursor.execute(  # type: ignore[attr-defined]
            """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
                   a.attgenerated, pg_get_expr(d.adbin, d.adrelid),
                   CASE WHEN a.attcollation <> t.typcollation THEN co.collname END
            FROM pg_attribute a
            JOIN pg_type t ON t.oid = a.atttypid
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            LEFT JOIN pg_collation co ON co.oid = a.attcollation
            WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """,
            [oid],
        )
        for (
            column,
            type_sql,
            not_null,
            identity,
            generated,
            default,
            collation,
        ) in cursor.fetchall():  # type: ignore[attr-defined]
            definition = f"{_quote(column)} {type_sql}"
            if collation:
                definition += f" COLLATE {_quote(collation)}"
            if identity:
                kind = "ALWAYS" if identity == "a" else "BY DEFAULT"
                definition += f" GENERATED {kind} AS IDENTITY"
                table.identity_columns.append(column)
            elif generated == "s":
                definition += f" GENERATED ALWAYS AS ({default}) STORED"
            elif default is not None:
                definition += f" DEFAULT {default}"
            if not_null:
                definition += " NOT NULL"
            table.columns.append(definition)

        cursor.execute(  # type: ignore[attr-defined]
            """
            SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint
            WHERE conrelid = %s AND contype IN ('p', 'u', 'c', 'x', 'f')
            ORDER BY contype = 'f', oid
            """,
            [oid],
        )
        for constraint, kind, definition in cursor.fetchall():  # type: ignore[attr-defined]
            statement = (
                f"ALTER TABLE {_quote(name)} ADD CONSTRAINT {_quote(constraint)} {definition}"
            )
            (foreign_keys if kind == "f" else constraints).append(statement)

        cursor.execute(  # type: ignore[attr-defined]
            """
            SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
            WHERE i.indrelid = %s AND NOT EXISTS (
                SELECT 1 FROM pg_constraint c
                WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid
                  AND c.contype IN ('p', 'u', 'x'))
            ORDER BY i.indexrelid
            """,
            [oid],
        )
        indexes.extend(unqualify(row[0]) for row in cursor.fetchall())  # type: ignore[attr-defined]

        cursor.execute(  # type: ignore[attr-defined]
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal "
            "ORDER BY oid",
            [oid],
        )
        triggers.extend(unqualify(row[0]) for row in cursor.fetchall())  # type: ignore[attr-defined]

        # Only listed tables (Django's bookkeeping by default): users, sessions or audit events
        # that might end up in the template must never reach a new tenant.
        table.has_rows = name in settings.TENANT_TEMPLATE_COPY_TABLES
        tables.append(table)

    if not tables:
        raise RuntimeError(
            f"The template schema {template!r} has no tables; run `manage.py bootstrap` first."
        )
    return CloneScript(
        tables=tuple(tables),
        constraints=tuple(constraints),
        foreign_keys=tuple(foreign_keys),
        indexes=tuple(indexes),
        triggers=tuple(triggers),
    )


def clone_template_schema(target: str) -> None:
    """Create schema ``target`` as a copy of the template, in the caller's transaction."""
    validate_schema_name(target)
    with transaction.atomic():
        _clone(settings.TENANT_TEMPLATE_SCHEMA, target)


def _clone(template: str, target: str) -> None:
    key = _fingerprint(template)
    with _lock:
        script = _cache.get(key)
    if script is None:
        script = _read_catalog(template)
        with _lock:
            _cache.clear()
            _cache[key] = script
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('search_path')")
        saved_path = cursor.fetchone()[0]
        cursor.execute(script.render(template=template, target=target))
        cursor.execute("SELECT set_config('search_path', %s, true)", [saved_path])
