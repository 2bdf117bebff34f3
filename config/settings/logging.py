"""Structured logs: one JSON object a line, carrying request id, tenant and user."""

from config.env import env

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "apps.core.logging.RequestContextFilter"}},
    "formatters": {
        "json": {
            "()": "apps.core.logging.JsonFormatter",
        },
        "console": {
            "format": "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s %(tenant)s %(user)s] "
            "%(message)s",
        },
    },
    "handlers": {
        "default": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["default"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
        "uvicorn.access": {"level": "WARNING"},
    },
}
