"""The one place the product reads its environment.

Every setting module imports from here, so a missing or malformed required value fails loudly at
start-up with the variable's name instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured
from environs import Env

BASE_DIR = Path(__file__).resolve().parent.parent

env = Env()
# A developer's .env is honoured, but never required; production reads real environment variables.
env.read_env(BASE_DIR / ".env", recurse=False)


def require(name: str) -> str:
    """Return a required variable or stop the process, naming what is missing."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise ImproperlyConfigured(f"The environment variable {name} is required but not set.")
    return value


@dataclass(frozen=True)
class DatabaseURL:
    host: str
    port: str
    name: str
    user: str
    password: str
    options: dict[str, str]

    def as_django(self, engine: str) -> dict[str, object]:
        return {
            "ENGINE": engine,
            "NAME": self.name,
            "USER": self.user,
            "PASSWORD": self.password,
            "HOST": self.host,
            "PORT": self.port,
            "OPTIONS": self.options,
        }


def parse_database_url(url: str) -> DatabaseURL:
    """Parse ``postgres://user:pass@host:port/name?opt=v`` (a socket dir may come as ``?host=``)."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(
            f"DATABASE_URL must be a postgres:// URL, not {parts.scheme or 'empty'}://"
        )
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    host = query.pop("host", None) or unquote(parts.hostname or "")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured("DATABASE_URL must name a database, e.g. postgres://.../app")
    return DatabaseURL(
        host=host,
        port=str(parts.port or ""),
        name=name,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        options=query,
    )
