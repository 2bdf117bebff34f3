"""Liveness, readiness (503 naming what failed), metrics access, and booting with nothing set."""

import httpx
import pytest
from django.test import Client

from tests.servers import ServerProcess

DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_healthz_is_ok(db):
    assert Client(HTTP_HOST="127.0.0.1").get("/healthz").json() == {"status": "ok"}


def test_readyz_is_ok_when_everything_answers(db):
    response = Client(HTTP_HOST="127.0.0.1").get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "cache": "ok", "channel_layer": "ok"}


def test_readyz_is_503_naming_the_cache_when_redis_is_unreachable(db, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": DEAD_REDIS,
            "KEY_FUNCTION": "django_tenants.cache.make_key",
        }
    }
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [DEAD_REDIS]},
        }
    }
    response = Client(HTTP_HOST="127.0.0.1").get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["cache", "channel_layer"]
    assert body["checks"]["database"] == "ok"


@pytest.mark.slow
def test_readyz_is_503_naming_the_database_when_postgres_is_unreachable(tmp_path):
    server = ServerProcess(
        {
            "DATABASE_URL": "postgres://postgres@127.0.0.1:1/nowhere",
            "REDIS_URL": None,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
        },
        tmp_path / "server.log",
    )
    try:
        server.wait_ready()
        response = httpx.get(f"{server.base_url}/readyz", timeout=10)
        assert response.status_code == 503
        assert response.json()["failing"] == ["database"]
        # The process stays alive and answers probes while its database is away.
        assert httpx.get(f"{server.base_url}/healthz").status_code == 200
        # Tenant pages say the service is unavailable (503), in the API's format on API paths.
        api = httpx.get(
            f"{server.base_url}/api/v1/tenant/", headers={"Host": "acme.localhost"}, timeout=20
        )
        assert api.status_code == 503
        assert api.json()["error"]["code"] == "unavailable"
        assert api.headers["Retry-After"] == "30"
    finally:
        server.stop()


@pytest.mark.slow
def test_boots_with_no_database_url_on_an_embedded_postgres(tmp_path):
    server = ServerProcess(
        {
            "DATABASE_URL": None,
            "REDIS_URL": None,
            "DATA_DIR": str(tmp_path / "data"),
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
        },
        tmp_path / "server.log",
    )
    try:
        server.wait_ready(timeout=120)
        assert httpx.get(f"{server.base_url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{server.base_url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()
    finally:
        server.stop()


def test_metrics_are_served_to_allowed_networks(db):
    response = Client(HTTP_HOST="127.0.0.1").get("/metrics")
    assert response.status_code == 200
    assert "django_http_requests_total" in response.content.decode()


def test_metrics_are_refused_to_other_networks(db):
    response = Client(HTTP_HOST="127.0.0.1", REMOTE_ADDR="203.0.113.9").get("/metrics")
    assert response.status_code == 403


def test_metrics_accept_the_bearer_token_from_anywhere(db, settings):
    settings.METRICS_TOKEN = "scrape-token-123"
    client = Client(HTTP_HOST="127.0.0.1", REMOTE_ADDR="203.0.113.9")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-123").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="scrape-token-123").status_code == 403
