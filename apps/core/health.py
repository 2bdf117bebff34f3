"""Liveness, readiness and metrics endpoints, answered on every host without tenant routing."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from django_prometheus.exports import ExportToDjangoView

logger = logging.getLogger(__name__)
CHECK_TIMEOUT_SECONDS = 3.0


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving. Touches no backing service."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    # Runs on an executor thread Django never cleans up after: start from a healthy connection and
    # always close it (or hand it back to the pool), or each such thread would keep a connection
    # open, and a dead one forever.
    close_old_connections()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


def _check_cache() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("the cache did not return what was written")
    cache.delete(key)


async def _check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured")
    channel = await layer.new_channel("readyz.")
    await layer.send(channel, {"type": "readyz.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "readyz.ping":
        raise RuntimeError("the channel layer returned another message")


async def _run(name: str, check: Callable[[], Any]) -> tuple[str, str | None]:
    try:
        if asyncio.iscoroutinefunction(check):
            await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
        else:
            await asyncio.wait_for(
                sync_to_async(check, thread_sensitive=False)(), CHECK_TIMEOUT_SECONDS
            )
    except TimeoutError:
        logger.warning("readiness check %s timed out", name)
        return name, "timed out"
    except Exception as exc:  # any failure means not ready; details go to the log only
        logger.warning("readiness check %s failed: %s: %s", name, exc.__class__.__name__, exc)
        return name, "failing"
    return name, None


@never_cache
@require_safe
async def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when the database, the cache and the channel layer all answer."""
    results = await asyncio.gather(
        _run("database", _check_database),
        _run("cache", _check_cache),
        _run("channel_layer", _check_channel_layer),
    )
    checks = {name: ("ok" if error is None else error) for name, error in results}
    failing = [name for name, error in results if error is not None]
    if failing:
        return JsonResponse(
            {"status": "unavailable", "failing": failing, "checks": checks}, status=503
        )
    return JsonResponse({"status": "ok", "checks": checks})


def _remote_allowed(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(network, strict=False)
        for network in settings.METRICS_ALLOWED_NETWORKS
    )


def _token_allowed(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if not expected or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").encode(), expected.encode())


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition, for allowed networks or holders of METRICS_TOKEN only."""
    if not (_token_allowed(request) or _remote_allowed(request)):
        return HttpResponse(
            "Metrics are served only to allowed networks or with the metrics token.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    return ExportToDjangoView(request)
