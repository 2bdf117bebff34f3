"""Say once, at start-up, which backends this process uses."""

from __future__ import annotations

import logging
import os

from django.conf import settings

logger = logging.getLogger("apps.startup")
_logged = False


def describe_backends() -> dict[str, str]:
    database = settings.DATABASES["default"]
    where = database["HOST"] or "local socket"
    return {
        "database": (
            f"embedded PostgreSQL under {settings.DATA_DIR / 'postgres'}"
            if settings.DATABASE_IS_EMBEDDED
            else f"PostgreSQL at {where}:{database['PORT'] or 5432}/{database['NAME']}"
        ),
        "cache": str(settings.CACHES["default"]["BACKEND"]).rsplit(".", 1)[-1],
        "channel_layer": str(settings.CHANNEL_LAYERS["default"]["BACKEND"]).rsplit(".", 1)[-1],
        "celery": "eager (in-process)"
        if settings.CELERY_TASK_ALWAYS_EAGER
        else f"broker {_redact(settings.CELERY_BROKER_URL)}",
    }


def _redact(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def log_backends() -> None:
    global _logged
    if _logged or os.environ.get("AGENT_FACTORY_QUIET_STARTUP"):
        return
    _logged = True
    logger.info("backends in use", extra={"backends": describe_backends()})
