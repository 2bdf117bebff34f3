"""The event loop's own database connections: kept between statements, in the right schema
whatever the connection ran before, replaced when the server dropped one, closed with the loop."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django_tenants.utils import schema_context

from apps.accounts.models import User
from apps.core import adb

pytestmark = pytest.mark.usefixtures("committed")


def _terminate(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


async def _pid_and_schema(schema: str) -> tuple[int, str]:
    found = await adb.fetch(schema, "SELECT pg_backend_pid(), current_schema()")
    return int(found[0][0]), str(found[0][1])


async def test_a_connection_is_kept_and_follows_the_schema_asked_for(settings, acme, globex):
    settings.ASYNC_DATABASE_CONNECTIONS = 1
    await adb.close()
    try:
        first, in_acme = await _pid_and_schema(acme.schema)
        second, in_globex = await _pid_and_schema(globex.schema)
        third, again = await _pid_and_schema(acme.schema)
    finally:
        await adb.close()
    assert first == second == third
    assert (in_acme, in_globex, again) == (acme.schema, globex.schema, acme.schema)


def _first_email(schema: str) -> str:
    with schema_context(schema):
        return str(User.objects.order_by("email").values_list("email", flat=True)[0])


async def test_a_statement_prepared_in_one_schema_reads_the_next_schema_s_rows(
    settings, acme, globex
):
    """Statements are prepared on the server after a few runs; a plan must not outlive the
    search path it was made with (another tenant's rows)."""
    settings.ASYNC_DATABASE_CONNECTIONS = 1
    await adb.close()
    query = f"SELECT min(email) FROM {User._meta.db_table}"
    expected = {org.schema: await sync_to_async(_first_email)(org.schema) for org in (acme, globex)}
    try:
        seen = [
            (schema, (await adb.fetch(schema, query))[0][0])
            for _round in range(8)
            for schema in (acme.schema, globex.schema)
        ]
    finally:
        await adb.close()
    assert all(email == expected[schema] for schema, email in seen)
    assert expected[acme.schema] != expected[globex.schema]


async def test_a_statement_is_prepared_at_its_first_run_and_runs_on_one_generic_plan(
    settings, acme
):
    """Planning the chat's statements cost more than running them (~2 ms against ~0.5 ms for
    the one that checks and stores a message): prepared at once, and every run (the first
    too) uses the generic plan instead of planning for its parameters."""
    settings.ASYNC_DATABASE_CONNECTIONS = 1
    await adb.close()
    query = f"SELECT count(*) FROM {User._meta.db_table} WHERE id > %s"
    try:
        for floor in (0, 1, 2):
            await adb.fetch(acme.schema, query, [floor])
        (plans,) = await adb.fetch(
            acme.schema,
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE %s",
            [f"%FROM {User._meta.db_table} WHERE id > $1%"],
        )
    finally:
        await adb.close()
    assert plans == (3, 0)  # three runs on the generic plan, none planned for its values


async def test_switching_schemas_prepares_one_statement_whatever_the_number_of_tenants(
    settings, acme, globex
):
    """A connection serves every tenant of its process: the schema is a parameter, so the
    statements it keeps prepared do not grow with the tenants it has served."""
    settings.ASYNC_DATABASE_CONNECTIONS = 1
    await adb.close()
    try:
        for schema in (acme.schema, globex.schema, acme.schema, globex.schema):
            await _pid_and_schema(schema)
        (switches,) = await adb.fetch(
            acme.schema,
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%set_config('search_path'%"],
        )
    finally:
        await adb.close()
    assert switches == (1,)


async def test_a_dropped_connection_is_replaced_and_the_statement_still_runs(settings, acme):
    settings.ASYNC_DATABASE_CONNECTIONS = 1
    await adb.close()
    try:
        dropped, _schema = await _pid_and_schema(acme.schema)
        await sync_to_async(_terminate)(dropped)
        replaced, schema = await _pid_and_schema(acme.schema)
    finally:
        await adb.close()
    assert replaced != dropped
    assert schema == acme.schema


async def test_an_error_leaves_the_connection_usable(settings, acme):
    settings.ASYNC_DATABASE_CONNECTIONS = 1
    await adb.close()
    try:
        before, _schema = await _pid_and_schema(acme.schema)
        with pytest.raises(psycopg.errors.DivisionByZero):
            await adb.fetch(acme.schema, "SELECT 1 / 0")
        after, _schema = await _pid_and_schema(acme.schema)
    finally:
        await adb.close()
    assert before == after


def test_closing_the_loop_closes_its_connections(acme):
    loop = asyncio.new_event_loop()
    try:
        pid, _schema = loop.run_until_complete(_pid_and_schema(acme.schema))
    finally:
        loop.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        assert cursor.fetchone()[0] == 0
