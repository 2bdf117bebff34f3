"""The test suite: real PostgreSQL and Redis when their URLs are set, embedded otherwise."""

from config.settings.base import *  # noqa: F403

SECRET_KEY = "test-key-not-secret"  # noqa: S105
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; tests only
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
LOGGING["root"] = {"handlers": ["default"], "level": "WARNING"}  # noqa: F405
