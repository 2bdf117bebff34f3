"""Development on a laptop: `make run`."""

import warnings

from config.env import env
from config.settings.base import *  # noqa: F403

# Static files are served from the source folders in development; nothing is collected.
warnings.filterwarnings("ignore", message="No directory at: ")

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = SECRET_KEY or "insecure-development-key-never-use-in-production"  # noqa: F405
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
