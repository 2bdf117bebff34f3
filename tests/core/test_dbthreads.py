"""Database threads keep their connection between calls, replace one the server dropped, carry
the caller's context variables, and `serve` refuses several processes without Redis."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from apps.core import dbthreads
from apps.core.context import request_id_var

pytestmark = pytest.mark.usefixtures("committed")


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


async def test_a_thread_keeps_its_connection_between_calls(settings):
    settings.DATABASE_THREADS = 1
    dbthreads.shutdown()  # threads of the size asked for
    try:
        first = await dbthreads.run(_backend_pid)
        second = await dbthreads.run(_backend_pid)
    finally:
        dbthreads.shutdown()
    assert first == second


async def test_a_connection_the_server_dropped_is_replaced_without_failing_the_call(settings):
    settings.DATABASE_THREADS = 1
    dbthreads.shutdown()
    try:
        dropped = await dbthreads.run(_backend_pid)

        def terminate() -> None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [dropped])

        await sync_to_async(terminate)()  # from another thread, as a server restart would
        replaced = await dbthreads.run(_backend_pid)
    finally:
        dbthreads.shutdown()
    assert replaced != dropped


async def test_the_callers_context_follows_the_call():
    token = request_id_var.set("request-42")
    try:
        seen = await dbthreads.run(request_id_var.get)
    finally:
        request_id_var.reset(token)
    assert seen == "request-42"


def test_serve_refuses_several_processes_without_redis(settings):
    settings.REDIS_URL = ""
    with pytest.raises(CommandError, match="REDIS_URL"):
        call_command("serve", "--processes", "2", "--no-worker")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("serve", "--processes", "0", "--no-worker")
