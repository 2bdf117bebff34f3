"""The test suite: real PostgreSQL and Redis when their URLs are set, embedded otherwise."""

import os
import uuid

# Each run gets its own cache and channel-layer keys in a shared Redis, so state left by an
# earlier run (rate-limit counters, cached values) cannot leak in. Set in the environment so that
# servers started by the tests use the same prefix.
os.environ.setdefault("CACHE_KEY_PREFIX", f"test-{uuid.uuid4().hex[:12]}:")

from config.settings.base import *  # noqa: F403

SECRET_KEY = "test-key-not-secret"  # noqa: S105
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; tests only
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
LOGGING["root"] = {"handlers": ["default"], "level": "WARNING"}  # noqa: F405
# The fake provider servers of the tests listen on loopback.
PROVIDER_ALLOW_PRIVATE_NETWORKS = True
# Many tests chat as the same seeded people within one minute; the tests of the limits set their
# own (servers started by the tests inherit these through the environment unless it says else).
if "RATE_LIMIT_USER_PER_MINUTE" not in os.environ:
    RATE_LIMIT_USER_PER_MINUTE = 10_000
if "RATE_LIMIT_DEPLOYMENT_PER_MINUTE" not in os.environ:
    RATE_LIMIT_DEPLOYMENT_PER_MINUTE = 10_000
