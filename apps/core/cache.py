"""A cache whose keys mean the same from every schema.

The default cache prefixes keys with the schema active on the connection (django-tenants), which
is right for a tenant's own data and wrong for platform-wide values read from everywhere: the
catalog's generation, say, is bumped from the public schema and read inside every tenant.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS
from django.core.cache.backends.base import BaseCache
from django.utils.module_loading import import_string


@cache
def platform_cache(alias: str = DEFAULT_CACHE_ALIAS) -> BaseCache:
    params: dict[str, Any] = dict(settings.CACHES[alias])
    params.pop("KEY_FUNCTION", None)
    params.pop("REVERSE_KEY_FUNCTION", None)
    backend = import_string(params.pop("BACKEND"))
    platform: BaseCache = backend(params.pop("LOCATION", ""), params)
    return platform
