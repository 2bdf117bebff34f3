"""Cache, channel layer and Celery: Redis when REDIS_URL is set, in-process otherwise."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from config.env import env

REDIS_URL = env.str("REDIS_URL", default="")
# Separates deployments (or test runs) sharing one Redis.
CACHE_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", default="")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "apps.core.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
            "KEY_FUNCTION": "django_tenants.cache.make_key",
            "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
        }
    }
    # pubsub (the default): a message to a group is one PUBLISH, and each process reads every
    # group and socket of its own through one subscription; nothing queues in Redis. Members in
    # the sending process get it at once, not back from Redis (apps/core/layers.py). core: lists
    # and sorted sets in Redis (about eight commands per message sent and received), with a
    # per-channel capacity beyond which channels-redis drops messages (docs/architecture.md,
    # Channel layer).
    CHANNEL_LAYER_KIND = env.str("CHANNEL_LAYER_KIND", default="pubsub")
    if CHANNEL_LAYER_KIND == "pubsub":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "apps.core.layers.LocalFirstPubSubLayer",
                "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{CACHE_KEY_PREFIX}asgi"},
            }
        }
    elif CHANNEL_LAYER_KIND == "core":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [REDIS_URL],
                    # A long streamed reply must not be truncated by the default capacity of 100.
                    "capacity": env.int("CHANNEL_LAYER_CAPACITY", default=1500),
                    "expiry": 60,
                    "prefix": f"{CACHE_KEY_PREFIX}asgi",
                },
            }
        }
    else:
        raise ImproperlyConfigured(
            f"CHANNEL_LAYER_KIND must be pubsub or core, not {CHANNEL_LAYER_KIND!r}"
        )
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
    CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "agent-factory",
            "KEY_FUNCTION": "django_tenants.cache.make_key",
            "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
        }
    }
    # One process: the layer lives in it. Its default capacity (100 messages per channel) would
    # drop the tail of a long reply to a socket that stalls for a moment.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": env.int("CHANNEL_LAYER_CAPACITY", default=1500)},
        }
    }
    CELERY_BROKER_URL = "memory://"
    CELERY_RESULT_BACKEND = "cache+memory://"
    CELERY_TASK_ALWAYS_EAGER = True

CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # Deprecated versions stop serving on their sunset date.
    "retire-sunset-versions": {
        "task": "marketplace.retire_sunset_versions",
        "schedule": 3600.0,
    },
    # Replies a crashed process left streaming become failed, with a retry (15 minutes silent).
    "fail-stale-replies": {
        "task": "conversations.fail_stale_replies",
        "schedule": 300.0,
    },
}
