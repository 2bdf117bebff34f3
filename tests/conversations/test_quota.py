"""The plan's messages per month: counted for the whole organisation, refused with
``quota_exceeded`` once used up (the socket stays usable), and rebuilt from the usage rows when
the counter is gone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.db.models import Sum
from django.utils import timezone
from django_tenants.utils import schema_context

from apps.conversations.models import Message, UsageDay
from apps.conversations.quota import plans_forget
from apps.tenants.models import Plan, Tenant
from tests.conversations.test_openai_api import ask, error_body, member_sdk
from tests.conversations.test_websocket import receive, send_message, signed_in, until

pytestmark = pytest.mark.usefixtures("committed")


def _month_key() -> str:
    return f"quota:messages:{timezone.localdate().replace(day=1):%Y-%m}"


def _used_this_month(schema: str) -> int:
    with schema_context(schema):
        first = timezone.localdate().replace(day=1)
        total = UsageDay.objects.filter(day__gte=first).aggregate(total=Sum("messages"))["total"]
        return int(total or 0)


@pytest.fixture
def tight_plan(acme: Any, django_db_blocker: Any) -> Iterator[Plan]:
    """acme on a plan with two messages left this month; its counter rebuilt from the rows."""
    with django_db_blocker.unblock():
        tenant = Tenant.objects.get(pk=acme.tenant.pk)
        previous = tenant.plan_id
        plan = Plan.objects.create(
            code="tight", name="Tight", monthly_message_quota=_used_this_month(acme.schema) + 2
        )
        Tenant.objects.filter(pk=tenant.pk).update(plan=plan)
        plans_forget()
        with schema_context(acme.schema):
            cache.delete(_month_key())
    yield plan
    with django_db_blocker.unblock():
        Tenant.objects.filter(pk=tenant.pk).update(plan_id=previous)
        plans_forget()
        plan.delete()
        with schema_context(acme.schema):
            cache.delete(_month_key())


async def test_past_the_monthly_quota_a_message_is_refused_and_the_socket_stays(
    acme, active_deployment, tight_plan, settings
):
    socket = await signed_in(acme, active_deployment.pk)
    try:
        # Messages refused on the way (here by the rate limit) do not use up the quota.
        settings.RATE_LIMIT_USER_PER_MINUTE = 0
        for index in range(3):
            await send_message(socket, "Anyone there?", f"limited-{index}")
            assert (await receive(socket))["code"] == "rate_limited"
        settings.RATE_LIMIT_USER_PER_MINUTE = settings.RATE_LIMIT_DEPLOYMENT_PER_MINUTE = 10_000
        for index in range(2):
            await send_message(socket, "How do I reset my password?", f"quota-{index}")
            assert (await until(socket, "done"))[-1]["status"] == "complete"
        await send_message(socket, "And one more?", "quota-2")
        refused = await receive(socket)
        await socket.send_json_to({"type": "ping", "id": 7})
        pong = await receive(socket)
    finally:
        await socket.disconnect()

    assert (refused["type"], refused["code"], refused["client_msg_id"]) == (
        "error",
        "quota_exceeded",
        "quota-2",
    )
    assert refused["details"]["limit"] == tight_plan.monthly_message_quota
    assert refused["details"]["plan"] == "tight"
    assert pong == {"type": "pong", "id": 7}

    def stored() -> bool:
        with schema_context(acme.schema):
            return Message.objects.filter(client_msg_id="quota-2").exists()

    assert not await database_sync_to_async(stored)()


def test_the_openai_compatible_api_counts_against_the_same_quota(
    acme, active_deployment, tight_plan, settings
):
    settings.RATE_LIMIT_USER_PER_MINUTE = settings.RATE_LIMIT_DEPLOYMENT_PER_MINUTE = 10_000
    sdk = member_sdk(acme, acme.admin_email)
    for _ in range(2):
        ask(sdk, active_deployment.slug)

    with pytest.raises(openai.RateLimitError) as spent:
        ask(sdk, active_deployment.slug)

    # As OpenAI reports a spent quota (its SDK does not retry it like a rate limit).
    assert spent.value.code == "insufficient_quota"
    assert error_body(spent.value)["type"] == "insufficient_quota"
