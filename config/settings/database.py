"""PostgreSQL: the server in DATABASE_URL, or an embedded one started for this process."""

from __future__ import annotations

from typing import Any

from config.embedded import embedded_database_url
from config.env import BASE_DIR, env, parse_database_url

_url = env.str("DATABASE_URL", default="")
DATABASE_IS_EMBEDDED = not _url
if DATABASE_IS_EMBEDDED:
    _url = embedded_database_url(env.path("DATA_DIR", default=BASE_DIR / ".data"))

_database: dict[str, Any] = parse_database_url(_url).as_django("django_tenants.postgresql_backend")
# Under ASGI every request runs its queries on a fresh thread, so Django's persistent connections
# are never reused; a pool saves a connect per request (~7 ms here). Safe with schemas:
# django-tenants forgets the search path when a connection is returned and sets it again on every
# new cursor. Off by default: with its checkout check, psycopg_pool (3.2.8, 3.3.3) stalled until
# timeout after the server dropped its connections (a restart, a failover); without the check,
# each dead connection fails one request. PgBouncer in session mode is the production choice
# (docs/architecture.md, Connections).
_pool_size = env.int("DATABASE_POOL_MAX_SIZE", default=0)
if _pool_size > 0:
    _database["OPTIONS"] = {
        **_database["OPTIONS"],
        "pool": {"min_size": 1, "max_size": _pool_size, "timeout": 10},
    }

DATABASES = {
    "default": {
        **_database,
        "CONN_MAX_AGE": 0,  # the pool, not Django, keeps connections
        # With the pool, this also checks each connection on checkout, so one the server dropped
        # (restart, failover) is replaced instead of failing the request that drew it.
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": env.str("DATABASE_TEST_NAME", default=None)},
    }
}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
# Threads that run the database work of websocket consumers and of the replies they stream, each
# keeping its connection between calls (apps/core/dbthreads.py).
DATABASE_THREADS = env.int("DATABASE_THREADS", default=4)
# Connections per event loop for the statements of every chat message, run in the loop itself
# (apps/core/adb.py).
ASYNC_DATABASE_CONNECTIONS = env.int("ASYNC_DATABASE_CONNECTIONS", default=4)
# Set the tenant's search path once per connection and schema change, not before every query
# (django-tenants forgets it on close, rollback and every set_tenant()).
TENANT_LIMIT_SET_CALLS = True
