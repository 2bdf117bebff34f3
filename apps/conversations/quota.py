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

from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.conversations.models import UsageDay
from apps.core.exceptions import Forbidden
from apps.runtime.ratelimit import seeded_counter_hit, seeded_counter_undo
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
