"""Message rate limits per user and per deployment, shared by every process through the cache
(Redis when ``REDIS_URL`` is set; the in-process cache otherwise, which limits per process).

Fixed one-minute windows: a counter per (scope, id, window) created with ``add`` and bumped with
``incr``, both atomic in Redis. A refused message does not count.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext as _

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


def rate_limit_hit(
    *, user_id: int | str, deployment_id: int | str, now: float | None = None
) -> None:
    """Count one message, or raise ``TooManyRequests`` (nothing counted) when a limit is full."""
    now = time.time() if now is None else now
    start, end = _window(now)
    limits = [
        Limit("user", str(user_id), settings.RATE_LIMIT_USER_PER_MINUTE),
        Limit("deployment", str(deployment_id), settings.RATE_LIMIT_DEPLOYMENT_PER_MINUTE),
    ]
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
            retry_after = max(1, int(end - now))
            raise TooManyRequests(
                _("Too many messages: at most %(n)d a minute per %(scope)s. Try again in %(s)d s.")
                % {"n": limit.per_minute, "scope": _(limit.scope), "s": retry_after},
                retry_after=retry_after,
                details={"scope": limit.scope, "limit": limit.per_minute},
            )
