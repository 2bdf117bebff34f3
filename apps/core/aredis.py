"""Redis from the event loop: one asyncio client per loop (its own connection pool), closed with
the loop. None without ``REDIS_URL``."""

from __future__ import annotations

import asyncio
import types
import weakref
from typing import Any

from django.conf import settings

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


def client() -> Any:
    """This loop's ``redis.asyncio.Redis``, or None without Redis."""
    if not settings.REDIS_URL:
        return None
    loop = asyncio.get_running_loop()
    redis = _clients.get(loop)
    if redis is None:
        from redis import asyncio as aioredis

        redis = _clients[loop] = aioredis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2
        )
        _close_with(loop, redis)
    return redis


def _close_with(loop: asyncio.AbstractEventLoop, redis: Any) -> None:
    original = loop.close

    def close(self: asyncio.AbstractEventLoop) -> None:
        if not self.is_running():
            self.run_until_complete(redis.aclose())
        self.close = original  # type: ignore[method-assign]
        original()

    loop.close = types.MethodType(close, loop)  # type: ignore[method-assign]
