"""Message rate limits, shared through the cache (Redis in CI)."""

from __future__ import annotations

import pytest

from apps.core.exceptions import TooManyRequests
from apps.runtime.ratelimit import rate_limit_hit


def test_a_user_gets_the_configured_messages_a_minute_then_429(settings):
    settings.RATE_LIMIT_USER_PER_MINUTE = 3
    settings.RATE_LIMIT_DEPLOYMENT_PER_MINUTE = 100
    now = 1_000_040.0  # 20 s into the window that starts at 1_000_020

    for _ in range(3):
        rate_limit_hit(user_id="u-limit-1", deployment_id="d-limit-1", now=now)
    with pytest.raises(TooManyRequests) as caught:
        rate_limit_hit(user_id="u-limit-1", deployment_id="d-limit-1", now=now)

    assert caught.value.status == 429
    assert caught.value.retry_after == 40
    assert caught.value.details["scope"] == "user"
    # The next window starts afresh.
    rate_limit_hit(user_id="u-limit-1", deployment_id="d-limit-1", now=now + 60)


def test_the_deployment_limit_counts_every_user(settings):
    settings.RATE_LIMIT_DEPLOYMENT_PER_MINUTE = 2
    settings.RATE_LIMIT_USER_PER_MINUTE = 5
    now = 2_000_000.0

    rate_limit_hit(user_id="a", deployment_id="d-shared", now=now)
    rate_limit_hit(user_id="b", deployment_id="d-shared", now=now)
    with pytest.raises(TooManyRequests) as caught:
        rate_limit_hit(user_id="c", deployment_id="d-shared", now=now)

    assert caught.value.details["scope"] == "deployment"
    # The refused message did not use up user c's own allowance.
    settings.RATE_LIMIT_DEPLOYMENT_PER_MINUTE = 100
    for _ in range(settings.RATE_LIMIT_USER_PER_MINUTE):
        rate_limit_hit(user_id="c", deployment_id="d-other", now=now)
