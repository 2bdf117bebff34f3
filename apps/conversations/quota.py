"""The plan's messages per month, for the whole organisation: every deployment, user and
channel (websocket, REST, SSE, the OpenAI-compatible API, a deployment's "ask").

A counter in Redis per schema and month (the cache's key function adds the schema), seeded from
the usage rows when it is missing (a new month, Redis restarted). A message is counted last,
just before it is stored, and given back if storing it fails: a message refused on the way
(rate limit, duplicate) never uses up the quota. Plans are read at most once a minute per
process and schema, so an upgrade reaches open sockets within a minute.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.conversations.models import UsageDay
from apps.core import adb
from apps.core.cache import tenant_cache_key
from apps.core.exceptions import Forbidden
from apps.core.sqlfast import table
from apps.runtime.ratelimit import (
    seeded_counter_hit,
    seeded_counter_hit_async,
    seeded_counter_undo,
    seeded_counter_undo_async,
)
from apps.tenants.channels import run_in_tenant
from apps.tenants.db import connection
from apps.tenants.models import Tenant

EXPIRY_SECONDS = 40 * 24 * 3600
PLAN_CACHE_SECONDS = 60.0
_plans: dict[str, tuple[float, int | None, str]] = {}


def _plan_quota(schema: str) -> tuple[int | None, str]:
    """The schema's plan: its monthly message quota (None: unlimited) and code."""
    cached = _plans.get(schema)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1], cached[2]
    found = (
        Tenant.objects.filter(schema_name=schema)
        .values_list("plan__monthly_message_quota", "plan__code")
        .first()
    )
    quota, code = found if found is not None else (None, "")
    _plans[schema] = (time.monotonic() + PLAN_CACHE_SECONDS, quota, code or "")
    return quota, code or ""


def plans_forget() -> None:
    """Read plans again at the next message (tests; the cache lasts a minute otherwise)."""
    _plans.clear()


def _month() -> date:
    return timezone.localdate().replace(day=1)


def _key(first: date) -> str:
    return f"quota:messages:{first:%Y-%m}"


_SINCE_SQL = f"SELECT coalesce(sum(messages), 0) FROM {table(UsageDay)} WHERE day >= %s"  # noqa: S608


def _messages_since(first: date) -> int:
    total = UsageDay.objects.filter(day__gte=first).aggregate(total=Sum("messages"))["total"]
    return int(total or 0)


def message_quota_hit(*, count: bool = True) -> None:
    """Count one message (or, with ``count=False``, only check there is one left), or refuse it:
    403 ``quota_exceeded``, nothing counted. Unlimited plans count nothing."""
    quota, plan = _plan_quota(connection.schema_name)
    if quota is None:
        return
    first = _month()
    used = seeded_counter_hit(
        key=_key(first),
        limit=quota,
        expiry=EXPIRY_SECONDS,
        seed=lambda: _messages_since(first),
        count=count,
    )
    if used is not None:
        _refuse(quota, used, plan, first)


async def message_quota_hit_async(redis: Any, tenant: Tenant) -> bool:
    """``message_quota_hit`` from the event loop, with the loop's Redis client: True when a
    message was counted (the plan has a quota), to give back with ``message_quota_undo_async``
    if it is not stored."""
    schema = tenant.schema_name
    cached = _plans.get(schema)
    if cached is not None and cached[0] > time.monotonic():
        quota, plan = cached[1], cached[2]
    else:
        quota, plan = await run_in_tenant(tenant, _plan_quota, schema)
    if quota is None:
        return False
    first = _month()

    async def seed() -> int:
        found = await adb.fetch(schema, _SINCE_SQL, [first])
        return int(found[0][0])

    used = await seeded_counter_hit_async(
        redis,
        full_key=tenant_cache_key(schema, _key(first)),
        limit=quota,
        expiry=EXPIRY_SECONDS,
        seed=seed,
    )
    if used is not None:
        _refuse(quota, used, plan, first)
    return True


async def message_quota_undo_async(redis: Any, tenant: Tenant) -> None:
    await seeded_counter_undo_async(
        redis, full_key=tenant_cache_key(tenant.schema_name, _key(_month()))
    )


def _refuse(quota: int, used: int, plan: str, first: date) -> None:
    raise Forbidden(
        _(
            "Your organisation has used its %(limit)d messages for this month. Ask your "
            "tenant admin to upgrade the plan; the count starts again on the 1st."
        )
        % {"limit": quota},
        code="quota_exceeded",
        details={"limit": quota, "used": used, "plan": plan, "period": f"{first:%Y-%m}"},
    )


def message_quota_undo() -> None:
    """Give back a message counted by ``message_quota_hit`` that was not stored after all."""
    quota, _plan = _plan_quota(connection.schema_name)
    if quota is not None:
        seeded_counter_undo(key=_key(_month()))
