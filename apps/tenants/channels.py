"""Tenancy for websockets, which django-tenants does not cover.

The handshake's Host header chooses the tenant, exactly as for HTTP. Database work of a consumer
runs on a database thread (``apps.core.dbthreads``) whose connection knows nothing of the
socket, so every such call sets the tenant's schema inside that thread, per call.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import urlsplit

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth import get_user
from django.core.cache import cache
from django_tenants.utils import remove_www

from apps.core import dbthreads
from apps.core.context import bound, client_ip_var, user_agent_var
from apps.tenants.db import connection
from apps.tenants.models import Tenant
from apps.tenants.selectors import tenant_for_host

T = TypeVar("T")

# Close codes sent before the handshake completes (docs/architecture.md, Websockets).
CLOSE_UNKNOWN_HOST = 4404
CLOSE_TENANT_SUSPENDED = 4423
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


async def run_in_tenant(tenant: Tenant, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``func`` on a database thread with ``tenant``'s schema active for this call (the
    thread stays in it afterwards: every call sets the schema it needs)."""

    def call() -> T:
        if connection.schema_name == tenant.schema_name and connection.include_public_schema:
            # The thread's connection is already in this schema (database threads serve one
            # tenant's sockets call after call): keep the search path it set, saving a round
            # trip. Whatever resets it (close, rollback, another schema) makes it set again.
            connection.tenant = tenant
        else:
            connection.set_tenant(tenant)
        with bound(tenant=tenant.schema_name):
            return func(*args, **kwargs)

    return await dbthreads.run(call)


def _lookup_tenant(hostname: str) -> Tenant | None:
    connection.set_schema_to_public()
    return tenant_for_host(hostname)


def _header(scope: dict[str, Any], wanted: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def _host_of(scope: dict[str, Any]) -> str:
    return remove_www((_header(scope, b"host") or "").split(":")[0]).lower()


def _origin_matches_host(scope: dict[str, Any]) -> bool:
    """A page on another host (another tenant's, or any site) may not open a socket here with
    the visitor's cookies. Browsers always send Origin; clients that send none carry their own
    credentials, not a victim's."""
    origin = _header(scope, b"origin")
    if origin is None:
        return True
    parsed = urlsplit(origin)
    host = (_header(scope, b"host") or "").lower()
    return bool(parsed.netloc) and parsed.netloc.lower() == host


async def _deny(receive: Callable[..., Any], send: Callable[..., Any], code: int) -> None:
    """Accept, then close with ``code``: a refusal before accepting reaches browsers only as an
    opaque failed handshake (close code 1006), and clients need to know why."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": code})


REFUSALS = {
    CLOSE_FORBIDDEN: "bad_origin",
    CLOSE_UNKNOWN_HOST: "unknown_host",
    CLOSE_TENANT_SUSPENDED: "tenant_suspended",
}


REFUSAL_RECORD_SECONDS = 60


def _record_refusal(*, schema: str, code: int, scope: dict[str, Any]) -> None:
    """Audit a handshake refused before any consumer ran: in the tenant's trail when the host
    is one of theirs, in the platform's otherwise (``websocket.connection_refused``). Anyone can
    send such handshakes: one record per trail, reason and client address a minute, so a flood
    cannot fill the trail or hold the database threads."""
    from apps.audit.models import AuditEvent
    from apps.audit.services import audit_record

    connection.set_schema(schema)
    try:
        client = scope.get("client")
        once = f"ws-refused:{REFUSALS[code]}:{client[0] if client else '-'}"
        if not cache.add(once, True, timeout=REFUSAL_RECORD_SECONDS):  # the key has the schema
            return
        with bound(tenant=schema):
            audit_record(
                action="websocket.connection_refused",
                outcome=AuditEvent.Outcome.DENIED,
                metadata={
                    "reason": REFUSALS[code],
                    "path": str(scope.get("path", ""))[:200],
                    "host": (_header(scope, b"host") or "")[:200],
                    "origin": (_header(scope, b"origin") or "")[:200],
                },
            )
    finally:
        connection.set_schema_to_public()


class TenantWebsocketMiddleware:
    """Put the tenant of the handshake's host into the scope, or refuse the connection (audited:
    a bad origin or a suspended tenant in the tenant's trail, an unknown host in the
    platform's)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        found = await dbthreads.run(_lookup_tenant, _host_of(scope))
        tenant = found if found is not None and not found.is_public else None
        code = None
        if not _origin_matches_host(scope):
            code = CLOSE_FORBIDDEN
        elif tenant is None:
            code = CLOSE_UNKNOWN_HOST
        elif not tenant.is_active:
            code = CLOSE_TENANT_SUSPENDED
        if code is not None:
            client = scope.get("client")
            client_ip_var.set(client[0] if client else None)
            user_agent_var.set((_header(scope, b"user-agent") or "")[:512])
            schema = tenant.schema_name if tenant is not None else settings.PUBLIC_SCHEMA_NAME
            await dbthreads.run(_record_refusal, schema=schema, code=code, scope=scope)
            return await _deny(receive, send, code)
        return await self.inner(dict(scope, tenant=tenant), receive, send)


class TenantAuthMiddleware:
    """Like Channels' AuthMiddleware, but loads the session and user in the tenant's schema."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        user = await run_in_tenant(
            scope["tenant"], get_user, SimpleNamespace(session=scope["session"])
        )
        return await self.inner(dict(scope, user=user), receive, send)


def TenantWebsocketStack(inner: Any) -> Any:
    return TenantWebsocketMiddleware(
        CookieMiddleware(SessionMiddleware(TenantAuthMiddleware(inner)))
    )


class TenantJsonConsumer(AsyncJsonWebsocketConsumer):
    """Base for the product's consumers: knows its tenant and runs database work in its schema."""

    @property
    def tenant(self) -> Tenant:
        tenant: Tenant = self.scope["tenant"]
        return tenant

    async def db(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_tenant(self.tenant, func, *args, **kwargs)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' own dispatch first closes the event loop thread's stale database
        connections, through a hop to a worker thread, for every frame and every group message.
        These consumers use no connection of that thread (their database work runs on database
        threads that manage their own, ``apps.core.dbthreads``): the hop is skipped."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def refuse(self, code: int) -> None:
        """Close with a documented code that the client can read (see ``_deny``)."""
        await self.accept()
        await self.close(code=code)
