"""Cancel requests for streaming replies, seen by every process.

A ``cancel`` may reach any process (another tab's socket), while the reply streams on the process
that accepted its message, perhaps after that socket has gone. The cancel sets a flag for the
reply in Redis (with ``REDIS_URL``); one watcher task per process reads the flags of all the
replies streaming there with a single ``MGET`` every ``POLL_SECONDS``, however many there are,
and sets their events. A flag outlives any reply (``KEEP_SECONDS``), so a cancel cannot be lost
the way a channel-layer message can. A cancel arriving in the process that streams the reply
acts at once, without waiting for the watcher.

Without Redis there is one process, and the flags live in its memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.25
KEEP_SECONDS = 3600

Key = tuple[str, int]  # (tenant schema, reply id)


def _redis_key(key: Key) -> str:
    schema, reply_id = key
    return f"{settings.CACHE_KEY_PREFIX}chat-cancel:{schema}:{reply_id}"


@dataclass
class _Watch:
    """The replies streaming on one event loop, and what watches their flags."""

    events: dict[Key, asyncio.Event] = field(default_factory=dict)
    flags: set[Key] = field(default_factory=set)  # without Redis
    redis: Any = None
    task: asyncio.Task[None] | None = None


_watches: dict[asyncio.AbstractEventLoop, _Watch] = {}


def _watch() -> _Watch:
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None:
        for old in [other for other in _watches if other.is_closed()]:
            del _watches[old]
        watch = _watches[loop] = _Watch()
        if settings.REDIS_URL:
            from redis import asyncio as aioredis

            watch.redis = aioredis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2
            )
    return watch


def register(key: Key) -> asyncio.Event:
    """The event that a cancel of this reply sets, while it streams in this process."""
    watch = _watch()
    event = watch.events[key] = asyncio.Event()
    if watch.task is None or watch.task.done():
        watch.task = asyncio.create_task(_poll(watch))
    return event


def unregister(key: Key) -> None:
    _watch().events.pop(key, None)


def local(key: Key) -> asyncio.Event | None:
    """The reply's event if it streams in this process."""
    return _watch().events.get(key)


async def request(key: Key) -> None:
    """Ask the reply to stop, wherever it streams (set at once if it streams here)."""
    watch = _watch()
    if watch.redis is not None:
        await watch.redis.set(_redis_key(key), b"1", ex=KEEP_SECONDS)
    else:
        watch.flags.add(key)
    event = watch.events.get(key)
    if event is not None:
        event.set()


async def forget(key: Key) -> None:
    """Clear an earlier cancel (a retry streams the same reply again)."""
    watch = _watch()
    if watch.redis is not None:
        await watch.redis.delete(_redis_key(key))
    else:
        watch.flags.discard(key)


async def _poll(watch: _Watch) -> None:
    """Until no reply streams here: read every streaming reply's flag, at once, each period."""
    while watch.events:
        await asyncio.sleep(POLL_SECONDS)
        keys = [key for key, event in watch.events.items() if not event.is_set()]
        if not keys:
            continue
        if watch.redis is None:
            found = [key in watch.flags for key in keys]
        else:
            try:
                values = await watch.redis.mget([_redis_key(key) for key in keys])
            except Exception:  # Redis away for a moment: the next period tries again
                logger.warning("could not read reply cancel flags", exc_info=True)
                continue
            found = [value is not None for value in values]
        for key, cancelled in zip(keys, found, strict=True):
            if cancelled and (event := watch.events.get(key)) is not None:
                event.set()


async def close() -> None:
    """Release this loop's Redis connection (tests, shutdown)."""
    watch = _watches.pop(asyncio.get_running_loop(), None)
    if watch is None:
        return
    if watch.task is not None:
        watch.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch.task
    if watch.redis is not None:
        await watch.redis.aclose()
