"""Tenant-aware Celery tasks.

The schema active when a task is dispatched travels in the message headers and is activated in the
worker before the task body runs, then the worker's connection returns to what it was. Tasks take
ids, not model instances, and must be idempotent (conventions.md).
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import transaction

from apps.core.context import bound, request_id_var
from apps.tenants.db import connection

SCHEMA_HEADER = "tenant_schema"
REQUEST_ID_HEADER = "request_id"


class TenantTask(Task):
    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:  # type: ignore[override]
        headers = dict(options.pop("headers", None) or {})
        headers.setdefault(SCHEMA_HEADER, connection.schema_name)
        headers.setdefault(REQUEST_ID_HEADER, request_id_var.get())
        return super().apply_async(args, kwargs, headers=headers, **options)

    def _header(self, name: str) -> Any:
        value = self.request.get(name)
        if value is None:
            value = (self.request.get("headers") or {}).get(name)
        return value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from apps.tenants.models import Tenant

        previous = connection.tenant
        schema = self._header(SCHEMA_HEADER)
        if schema is None and self.request.is_eager:
            schema = connection.schema_name  # .apply() in-process: the caller's schema
        schema = schema or settings.PUBLIC_SCHEMA_NAME
        try:
            connection.set_schema_to_public()
            if schema != settings.PUBLIC_SCHEMA_NAME:
                tenant = Tenant.objects.filter(schema_name=schema).first()
                if tenant is None:  # deleted since dispatch: nothing left to act on
                    return None
                connection.set_tenant(tenant)
            with bound(tenant=schema, request_id=self._header(REQUEST_ID_HEADER) or "-"):
                return super().__call__(*args, **kwargs)
        finally:
            connection.set_tenant(previous)

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> None:
        """Dispatch after the current transaction commits, in the schema active *now* (when the
        callback runs, an outer ``schema_context`` may already have been left)."""
        headers = {SCHEMA_HEADER: connection.schema_name, REQUEST_ID_HEADER: request_id_var.get()}
        transaction.on_commit(lambda: self.apply_async(args, kwargs, headers=headers))


@shared_task(name="core.tenant_snapshot")
def tenant_snapshot() -> dict[str, Any]:
    """Diagnostic: which schema the worker ran in and how many users it sees there."""
    from apps.accounts.models import User

    return {"schema": connection.schema_name, "users": User.objects.count()}
