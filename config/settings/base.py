"""Settings shared by every environment. Integrations live in their own modules, imported last."""

from __future__ import annotations

import django_stubs_ext
from django.utils.translation import gettext_lazy as _

from config.env import BASE_DIR, env

# Lets typed generics such as ModelAdmin[Model] work at run time as well as for mypy.
django_stubs_ext.monkeypatch()

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
DATA_DIR = env.path("DATA_DIR", default=BASE_DIR / ".data")

# Hosts: tenants get <slug>.<BASE_DOMAIN> and may add custom domains; the public site answers on
# PUBLIC_HOSTS. Unknown hosts are refused by the tenant router with a 404, so the host allow-list
# can stay wide in production where custom domains are added at run time.
BASE_DOMAIN = env.str("BASE_DOMAIN", default="localhost")
PUBLIC_HOSTS = env.list("PUBLIC_HOSTS", default=["localhost", "127.0.0.1"])
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[".localhost", "localhost", "127.0.0.1"])
# How links to a tenant are printed (e-mails, CLI, sign-up confirmation).
SITE_SCHEME = env.str("SITE_SCHEME", default="http")
SITE_PORT = env.str("SITE_PORT", default="8000")

SHARED_APPS = [
    "django_tenants",
    "apps.core",
    "apps.tenants",
    "apps.accounts",
    "apps.audit",
    "apps.marketplace",
    "apps.runtime",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_prometheus",
    "channels",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.saml",
    "allauth.socialaccount.providers.openid_connect",
]
# Everything an organisation owns lives in its own schema (design.md, Tenancy).
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.admin",
    "apps.accounts",
    "apps.audit",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "apps.sso",
    "apps.deployments",
    "apps.conversations",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "apps.core.middleware.RequestContextMiddleware",
    "apps.tenants.middleware.TenantRoutingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "apps.accounts.middleware.RequireMfaMiddleware",
    "apps.core.middleware.RequestUserContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.core.middleware.ApiErrorMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls_tenants"
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.core.context_processors.site",
            ],
        },
    }
]

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("de", _("German"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from the source folders unless collectstatic has been run (production).
WHITENOISE_USE_FINDERS = env.bool("STATIC_USE_FINDERS", default=True)
WHITENOISE_AUTOREFRESH = env.bool("STATIC_AUTOREFRESH", default=False)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Secrets at rest (apps/core/crypto.py): Fernet keys, newest first. Empty: derived from SECRET_KEY.
FIELD_ENCRYPTION_KEYS: list[str] = env.list("FIELD_ENCRYPTION_KEYS", default=[])

# Provider addresses (openai_base_url) on private or loopback networks are refused unless this is
# set: a tenant must not aim the platform's requests at its internal services.
PROVIDER_ALLOW_PRIVATE_NETWORKS = env.bool("PROVIDER_ALLOW_PRIVATE_NETWORKS", default=False)
# Websockets served by `manage.py serve`: the largest frame before the socket is closed (1009),
# and permessage-deflate (offered by browsers; it costs CPU per frame, saves bytes on replies).
WEBSOCKET_MAX_BYTES = env.int("WEBSOCKET_MAX_BYTES", default=1024 * 1024)
WEBSOCKET_COMPRESSION = env.bool("WEBSOCKET_COMPRESSION", default=True)

# Message rate limits (apps/runtime/ratelimit.py), shared through Redis when REDIS_URL is set.
RATE_LIMIT_USER_PER_MINUTE = env.int("RATE_LIMIT_USER_PER_MINUTE", default=20)
RATE_LIMIT_DEPLOYMENT_PER_MINUTE = env.int("RATE_LIMIT_DEPLOYMENT_PER_MINUTE", default=120)

# Metrics: scrapers on these networks, or carrying this bearer token, may read /metrics.
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"])
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

from config.settings.api import *  # noqa: E402,F403
from config.settings.auth import *  # noqa: E402,F403
from config.settings.database import *  # noqa: E402,F403
from config.settings.logging import *  # noqa: E402,F403
from config.settings.redis import *  # noqa: E402,F403
from config.settings.tenancy import *  # noqa: E402,F403
