"""The Redis cache: one client per process whatever the context (each request, thread call and
``sync_to_async`` call gets a cache object of its own), and tenant keys the event loop can make."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache, caches
from django_tenants.utils import schema_context

from apps.core.cache import tenant_cache_key

needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis cache needs REDIS_URL")


def _client() -> object:
    backend: Any = caches["default"]
    return backend._cache


@needs_redis
async def test_every_context_shares_one_redis_client():
    here = await sync_to_async(_client, thread_sensitive=False)()
    again = await sync_to_async(_client, thread_sensitive=False)()
    found: list[object] = []
    thread = threading.Thread(target=lambda: found.append(_client()))
    thread.start()
    thread.join()
    assert here is again is found[0]
    assert caches["default"] is not None


@pytest.mark.usefixtures("committed")
def test_a_tenant_key_is_the_key_the_cache_makes_in_that_schema(acme, globex):
    with schema_context(acme.schema):
        made = cache.make_and_validate_key("quota:messages:2026-11")
    assert tenant_cache_key(acme.schema, "quota:messages:2026-11") == made
    assert tenant_cache_key(globex.schema, "quota:messages:2026-11") != made
