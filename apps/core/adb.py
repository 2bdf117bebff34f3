"""PostgreSQL from the event loop, for the few statements every chat message runs.

Django's ORM is synchronous: from async code it runs on a thread (``apps/core/dbthreads.py``), and
a message's statements each crossed to a thread and back, contending for the GIL with the loop
that serves hundreds of sockets. The hand-written statements of the websocket's hot path
(``apps/conversations/hotpath.py``) run here instead, on psycopg's async connections, in the
loop itself.

Each event loop has a few connections of its own (``ASYNC_DATABASE_CONNECTIONS``, default 4),
opened on first use with Django's connection parameters (the same database, user, options and
type adapters), in autocommit: each statement is its own transaction, so a write that must be
atomic is one statement (data-modifying CTEs). Statements are prepared on the server at their
first run and run on their generic plan: the hot path's are lookups by key, and planning them
cost more than running them (prepared statements need PgBouncer, where there is one, in session
mode). A connection keeps the schema it was last used for and sets the search path (the
tenant's schema, then ``public``, as django-tenants does) only when the schema changes; the
server plans a prepared statement again when the search path changed. A kept connection the
server dropped fails its statement before running it: the statement is tried once more on a new
connection. When the loop closes, its connections close.
"""

from __future__ import annotations

import asyncio
import logging
import types
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.db import connections
from psycopg import AsyncConnection

logger = logging.getLogger(__name__)
T = TypeVar("T")

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()


class _Pool:
    def __init__(self, size: int) -> None:
        self.idle: list[AsyncConnection[Any]] = []
        self.slots = asyncio.Semaphore(size)

    def close(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            # Synchronous: the loop is closing. Ends the session on the server at once.
            conn.pgconn.finish()


def _pool() -> _Pool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = _Pool(max(1, int(settings.ASYNC_DATABASE_CONNECTIONS)))
        _close_with(loop, pool)
    return pool


def _close_with(loop: asyncio.AbstractEventLoop, pool: _Pool) -> None:
    original = loop.close

    def close(self: asyncio.AbstractEventLoop) -> None:
        pool.close()
        self.close = original  # type: ignore[method-assign]
        original()

    loop.close = types.MethodType(close, loop)  # type: ignore[method-assign]


def _params() -> dict[str, Any]:
    params = dict(connections["default"].get_connection_params())
    params.pop("cursor_factory", None)  # Django's is a sync cursor
    params["autocommit"] = True
    # Statements repeat with every message: prepared on the server at their first run, and
    # planned once (a generic plan) instead of at every run.
    params["prepare_threshold"] = 0
    options = params.get("options") or ""
    params["options"] = f"{options} -c plan_cache_mode=force_generic_plan".strip()
    return params


async def _connect() -> AsyncConnection[Any]:
    return await AsyncConnection.connect(**_params())


def _search_path(schema: str) -> str:
    # Schema names are validated identifiers (django-tenants); quoted all the same.
    names = [schema, settings.PUBLIC_SCHEMA_NAME, *getattr(settings, "PG_EXTRA_SEARCH_PATHS", [])]
    seen = dict.fromkeys(names)
    return ", ".join('"' + name.replace('"', '""') + '"' for name in seen)


@asynccontextmanager
async def _connection() -> AsyncIterator[tuple[AsyncConnection[Any], bool]]:
    """A connection of this loop's, and whether it was kept from an earlier use."""
    pool = _pool()
    async with pool.slots:
        kept = bool(pool.idle)
        conn = pool.idle.pop() if kept else await _connect()
        try:
            yield conn, kept
        finally:
            # A statement's error (a unique violation, say) leaves the connection usable.
            if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                await _discard(conn)
            else:
                pool.idle.append(conn)


async def _discard(conn: AsyncConnection[Any]) -> None:
    try:
        await conn.close()
    except Exception:
        logger.debug("closing a database connection failed", exc_info=True)


async def _use_schema(conn: AsyncConnection[Any], schema: str) -> None:
    if getattr(conn, "_schema", None) != schema:
        # The path as a parameter: one prepared statement for every schema, not one each.
        await conn.execute("SELECT set_config('search_path', %s, false)", [_search_path(schema)])
        conn._schema = schema  # type: ignore[attr-defined]


async def _rows(
    conn: AsyncConnection[Any], query: str, params: Sequence[Any] | dict[str, Any]
) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(query, params)
    # The result's status, not ``description``: that builds an object per column.
    result = cursor.pgresult
    if result is None or result.status != psycopg.pq.ExecStatus.TUPLES_OK:
        return []
    return await cursor.fetchall()


async def fetch(
    schema: str, query: str, params: Sequence[Any] | dict[str, Any] = ()
) -> list[tuple[Any, ...]]:
    """Run one statement in ``schema`` and return its rows (none for a statement without). A kept
    connection the server dropped (restart, idle timeout) fails it before it runs: it is tried
    once more, on a new connection."""
    return await run(lambda conn: _rows(conn, query, params), schema, retry=True)


async def run(
    func: Callable[[AsyncConnection[Any]], Awaitable[T]],
    schema: str | None = None,
    *,
    retry: bool = False,
) -> T:
    """``func(connection)`` with a connection of this loop's, for work that keeps state on the
    connection (a temporary table); ``func`` runs its statements itself. In ``schema``; without
    one, in whichever schema the connection was last used for (for statements that read no
    tenant's tables: switching costs a statement, twice). ``retry``: ``func`` may run again on a
    new connection when the kept one turns out to have been dropped by the server (only for a
    ``func`` that can start over: it may have done part of its work)."""

    async def attempt(conn: AsyncConnection[Any]) -> T:
        if schema is not None:
            await _use_schema(conn, schema)
        return await func(conn)

    kept = False
    try:
        async with _connection() as (conn, kept):
            return await attempt(conn)
    except psycopg.OperationalError:
        if not (kept and retry):
            raise
        logger.info("a kept database connection was dropped; reconnecting")
    async with _connection() as (conn, _kept):
        return await attempt(conn)


async def close() -> None:
    """Close this loop's connections (tests; a closing loop closes them itself)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        idle, pool.idle = pool.idle, []
        for conn in idle:
            await _discard(conn)
