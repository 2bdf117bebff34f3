"""Who and where the current unit of work is for: a request, a websocket call, a task.

Context variables follow the work across ``sync_to_async`` hops and into log records.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
tenant_var: ContextVar[str] = ContextVar("tenant", default="-")
user_var: ContextVar[str] = ContextVar("user", default="-")
# Where the current request came from, for the audit trail.
client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)
user_agent_var: ContextVar[str] = ContextVar("user_agent", default="")


@contextmanager
def bound(
    *, request_id: str | None = None, tenant: str | None = None, user: str | None = None
) -> Iterator[None]:
    """Bind the given values for the duration of a block (tasks, consumers, commands)."""
    tokens = []
    for var, value in ((request_id_var, request_id), (tenant_var, tenant), (user_var, user)):
        if value is not None:
            tokens.append((var, var.set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
