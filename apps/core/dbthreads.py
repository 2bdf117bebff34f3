"""Database threads for long-lived async code (websocket consumers, the replies they stream).

Django's ORM is synchronous. ``channels.db.database_sync_to_async`` runs each call on one shared
thread and closes the connection around it unless ``CONN_MAX_AGE`` keeps it, and under ASGI
``CONN_MAX_AGE`` cannot be used (each request runs on a thread of its own, whose connection would
never be closed). So without a pool every call of a consumer opened a PostgreSQL connection
(~7 ms here), and every call of every socket of the process queued behind the others on that one
thread.

``run`` sends the call to one of ``DATABASE_THREADS`` threads instead. Each keeps its connection
open between calls (with Django's pool enabled, it goes back to the pool after each call
instead), checked before use (Django's health check: ``SELECT 1`` on the first cursor
of the call), so a connection the server dropped is replaced instead of failing the call. A call
that leaves a transaction open (it cannot with ``transaction.atomic``) has it rolled back. The
caller's context variables (request id, tenant, user, client address) follow the call, as with
``sync_to_async``.

Work for HTTP requests keeps Django's own handling (``sync_to_async``), which closes its
connection at the end of the request.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=max(1, int(settings.DATABASE_THREADS)),
                thread_name_prefix="db",
            )
        return _executor


def _prepare() -> None:
    """Before a call: reuse this thread's connections, checked first."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        if conn.in_atomic_block or not conn.get_autocommit():
            # A call cannot leave one with atomic(); one that did must not pass its open
            # transaction (and its schema) on to the next call, another tenant's maybe.
            logger.error("a database thread's connection was left in a transaction; closed")
            conn.close()
            continue
        # Django checks a connection it kept (``CONN_HEALTH_CHECKS``) on the first cursor after
        # this flag is cleared: a dropped connection is replaced, not used.
        conn.health_check_done = False  # type: ignore[attr-defined]
        if conn.errors_occurred and not conn.is_usable():
            conn.close()
        conn.errors_occurred = False


def _release() -> None:
    """After a call: with Django's connection pool, give the connection back (the pool keeps it
    open; holding one per thread could starve requests of a small pool)."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and conn.settings_dict.get("OPTIONS", {}).get("pool"):
            conn.close()


def _call(func: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    _prepare()
    try:
        return func(*args, **kwargs)
    finally:
        _release()


async def run(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run the sync ``func`` on a database thread and return its result."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    call = functools.partial(context.run, _call, func, args, kwargs)
    return await loop.run_in_executor(_get_executor(), call)


def shutdown() -> None:
    """Stop the threads (their connections close with them); for tests and process exit."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True)
