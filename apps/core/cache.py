"""The Redis cache backend of the project, and a cache whose keys mean the same from every schema.

``RedisCache``: Django keeps one cache object per *context* (``caches`` is a context-local), and
every ``sync_to_async`` call, database-thread call and request runs in a new context, so each
built a client, a connection pool and a Redis connection of its own (a TCP connect and a
``CLIENT SETINFO``, ~2 ms) and dropped it at the end. Here every cache object of the process with
the same servers and options shares one client: one pool, whose connections stay open. redis-py's
pools are thread-safe and start afresh in a forked child.

``platform_cache``: the default cache prefixes keys with the schema active on the connection
(django-tenants), which is right for a tenant's own data and wrong for platform-wide values read
from everywhere: the catalog's generation, say, is bumped from the public schema and read inside
every tenant.
"""

from __future__ import annotations

import threading
from functools import cache, cached_property
from typing import Any, ClassVar

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.utils.module_loading import import_string


class RedisCache(DjangoRedisCache):
    """Django's Redis cache with one client per process for each servers-and-options."""

    _clients: ClassVar[dict[str, RedisCacheClient]] = {}
    _clients_lock: ClassVar[threading.Lock] = threading.Lock()

    @cached_property
    def _cache(self) -> RedisCacheClient:
        django: Any = self  # Django's class is untyped
        key = repr((django._class, django._servers, sorted(django._options.items())))
        with self._clients_lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = django._class(django._servers, **django._options)
        return client


def tenant_cache_key(schema: str, key: str, alias: str = DEFAULT_CACHE_ALIAS) -> str:
    """The key the default cache stores ``key`` under inside ``schema``
    (``django_tenants.cache.make_key``, without reading the connection's schema): for code on
    the event loop that talks to Redis itself."""
    backend = caches[alias]
    return f"{schema}:{backend.key_prefix}:{backend.version}:{key}"


@cache
def platform_cache(alias: str = DEFAULT_CACHE_ALIAS) -> BaseCache:
    params: dict[str, Any] = dict(settings.CACHES[alias])
    params.pop("KEY_FUNCTION", None)
    params.pop("REVERSE_KEY_FUNCTION", None)
    backend = import_string(params.pop("BACKEND"))
    platform: BaseCache = backend(params.pop("LOCATION", ""), params)
    return platform
