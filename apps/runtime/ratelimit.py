"""Message rate limits per user and per deployment, shared by every process through the cache
(Redis when ``REDIS_URL`` is set; the in-process cache otherwise, which limits per process).

Fixed one-minute windows: a counter per (scope, id, window). With Redis one script checks and
bumps both counters atomically, in one round trip; otherwise ``add`` and ``incr`` on the cache,
undone for a refused message. A refused message does not count.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.utils.translation import gettext as _

from apps.core.cache import tenant_cache_key
from apps.core.exceptions import TooManyRequests

WINDOW = 60


@dataclass(frozen=True)
class Limit:
    scope: str
    key: str
    per_minute: int


def _window(now: float) -> tuple[int, int]:
    start = int(now // WINDOW) * WINDOW
    return start, start + WINDOW


def _limits(user_id: int | str, deployment_id: int | str) -> list[Limit]:
    return [
        Limit("user", str(user_id), settings.RATE_LIMIT_USER_PER_MINUTE),
        Limit("deployment", str(deployment_id), settings.RATE_LIMIT_DEPLOYMENT_PER_MINUTE),
    ]


def _keys(limits: list[Limit], start: int) -> list[str]:
    return [f"ratelimit:{limit.scope}:{limit.key}:{start}" for limit in limits]


async def rate_limit_hit_async(
    redis: Any, *, schema: str, user_id: int | str, deployment_id: int | str
) -> list[str]:
    """``rate_limit_hit`` from the event loop, in ``schema``, with the loop's Redis client. The
    counters that counted it, for ``rate_limit_undo_async`` should the message not be stored."""
    now = time.time()
    start, end = _window(now)
    limits = _limits(user_id, deployment_id)
    full = [tenant_cache_key(schema, key) for key in _keys(limits, start)]
    args = [lim.per_minute for lim in limits]
    refused = int(await redis.eval(_CHECK_AND_COUNT, len(full), *full, *args, WINDOW + 5))
    if refused:
        _refuse(limits[refused - 1], end - now)
    return full


async def rate_limit_undo_async(redis: Any, counted: list[str]) -> None:
    """Give back a message counted by ``rate_limit_hit_async`` (never below zero)."""
    await redis.eval(_UNDO, len(counted), *counted)


def rate_limit_hit(
    *, user_id: int | str, deployment_id: int | str, now: float | None = None
) -> None:
    """Count one message, or raise ``TooManyRequests`` (nothing counted) when a limit is full."""
    now = time.time() if now is None else now
    start, end = _window(now)
    limits = _limits(user_id, deployment_id)
    keys = _keys(limits, start)
    client = _redis_client()
    if client is not None:
        full = [cache.make_and_validate_key(key) for key in keys]
        refused = int(
            client.eval(
                _CHECK_AND_COUNT, len(full), *full, *[lim.per_minute for lim in limits], WINDOW + 5
            )
        )
        if refused:
            _refuse(limits[refused - 1], end - now)
        return
    counted: list[str] = []
    for limit in limits:
        key = f"ratelimit:{limit.scope}:{limit.key}:{start}"
        cache.add(key, 0, timeout=WINDOW + 5)
        try:
            value = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=WINDOW + 5)
            value = 1
        counted.append(key)
        if value > limit.per_minute:
            for done in counted:  # a refused message does not use up the other limit either
                with contextlib.suppress(ValueError):
                    cache.decr(done)
            _refuse(limit, end - now)


def _refuse(limit: Limit, seconds_left: float) -> None:
    retry_after = max(1, int(seconds_left))
    raise TooManyRequests(
        _("Too many messages: at most %(n)d a minute per %(scope)s. Try again in %(s)d s.")
        % {"n": limit.per_minute, "scope": _(limit.scope), "s": retry_after},
        retry_after=retry_after,
        details={"scope": limit.scope, "limit": limit.per_minute},
    )


# KEYS: the counters; ARGV: their limits, then the expiry. Returns 0 when counted, else the
# 1-based index of the first full counter (then nothing is counted).
_CHECK_AND_COUNT = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i]) then return i end
end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, ARGV[#KEYS + 1]) end
end
return 0
"""


def _redis_client() -> Any:
    """The cache's own Redis client (the counters stay readable through the cache), or None."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    return backend._cache.get_client(write=True)


# A counter that must survive a Redis restart (a month's messages): seeded from the database when
# it is missing. KEYS[1]: the counter; ARGV: the limit, the expiry, the seed ('' when unknown).
# ARGV[4] is 1 to count, 0 to check only. Returns -1 when a seed is needed, -2 when there was room
# (and it was counted), else the count (at the limit: not counted).
_SEEDED_COUNT = """
local value = redis.call('GET', KEYS[1])
if not value then
  if ARGV[3] == '' then return -1 end
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[2], 'NX')
  value = redis.call('GET', KEYS[1])
end
if tonumber(value) >= tonumber(ARGV[1]) then return tonumber(value) end
if ARGV[4] == '1' then redis.call('INCR', KEYS[1]) end
return -2
"""


def seeded_counter_hit(
    *, key: str, limit: int, expiry: int, seed: Callable[[], int], count: bool = True
) -> int | None:
    """Count one against ``key`` (only check, with ``count=False``) unless it reached ``limit``:
    None when there was room, else the count (nothing counted). A missing counter (new period,
    Redis restarted) starts from ``seed()``."""
    flag = 1 if count else 0
    client = _redis_client()
    if client is not None:
        full = cache.make_and_validate_key(key)
        result = int(client.eval(_SEEDED_COUNT, 1, full, limit, expiry, "", flag))
        if result == -1:
            result = int(client.eval(_SEEDED_COUNT, 1, full, limit, expiry, seed(), flag))
        return None if result == -2 else result
    if cache.get(key) is None:
        cache.add(key, seed(), timeout=expiry)
    value = int(cache.get(key) or 0)
    if value >= limit:
        return value
    if count:
        try:
            cache.incr(key)
        except ValueError:  # expired meanwhile
            cache.add(key, seed() + 1, timeout=expiry)
    return None


async def seeded_counter_hit_async(
    redis: Any,
    *,
    full_key: str,
    limit: int,
    expiry: int,
    seed: Callable[[], Awaitable[int]],
    count: bool = True,
) -> int | None:
    """``seeded_counter_hit`` from the event loop, for the cache key ``full_key`` as stored."""
    flag = 1 if count else 0
    result = int(await redis.eval(_SEEDED_COUNT, 1, full_key, limit, expiry, "", flag))
    if result == -1:
        seeded = await seed()
        result = int(await redis.eval(_SEEDED_COUNT, 1, full_key, limit, expiry, seeded, flag))
    return None if result == -2 else result


async def seeded_counter_undo_async(redis: Any, *, full_key: str) -> None:
    await redis.eval(_UNDO, 1, full_key)


def seeded_counter_undo(*, key: str) -> None:
    """Take back one counted by ``seeded_counter_hit`` (never below zero, never creating it)."""
    client = _redis_client()
    if client is not None:
        client.eval(_UNDO, 1, cache.make_and_validate_key(key))
        return
    with contextlib.suppress(ValueError):
        if int(cache.get(key) or 0) > 0:
            cache.decr(key)


# Each of KEYS taken down by one, never below zero, never created.
_UNDO = """
for _, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if value and tonumber(value) > 0 then redis.call('DECR', key) end
end
return 0
"""
