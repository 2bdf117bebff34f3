"""PostgreSQL: the server in DATABASE_URL, or an embedded one started for this process."""

from __future__ import annotations

from config.embedded import embedded_database_url
from config.env import BASE_DIR, env, parse_database_url

_url = env.str("DATABASE_URL", default="")
DATABASE_IS_EMBEDDED = not _url
if DATABASE_IS_EMBEDDED:
    _url = embedded_database_url(env.path("DATA_DIR", default=BASE_DIR / ".data"))

DATABASES = {
    "default": parse_database_url(_url).as_django("django_tenants.postgresql_backend")
    | {
        "CONN_MAX_AGE": env.int("DATABASE_CONN_MAX_AGE", default=0),
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": env.str("DATABASE_TEST_NAME", default=None)},
    }
}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
