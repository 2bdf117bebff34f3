"""The default connection, typed as what it is: django-tenants' schema-switching wrapper."""

from typing import cast

from django.db import connection as _connection
from django_tenants.postgresql_backend.base import DatabaseWrapper

connection = cast(DatabaseWrapper, _connection)
