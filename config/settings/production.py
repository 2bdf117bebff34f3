"""Production: every secret comes from the environment, cookies are secure, static is collected."""

from config.env import env, require
from config.settings.base import *  # noqa: F403

SECRET_KEY = require("DJANGO_SECRET_KEY")
FIELD_ENCRYPTION_KEYS = require("FIELD_ENCRYPTION_KEYS").split(",")
DEBUG = False
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"])  # tenant routing rejects unknown hosts
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
WHITENOISE_USE_FINDERS = False
SITE_SCHEME = "https"
SITE_PORT = env.str("SITE_PORT", default="")
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
