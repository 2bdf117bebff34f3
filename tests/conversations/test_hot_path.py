"""What the per-message path of the chat shortens must not change what it decides: the checks
read as stored now (one query), agent specs cached while nothing they depend on changes, usage
added up in one row per day, and replies that another process cancels."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio
from django.conf import settings
from django.utils import timezone
from django_tenants.utils import schema_context

from apps.accounts.api_keys import api_key_create
from apps.accounts.models import ApiKey, User
from apps.conversations import cancels
from apps.conversations.consumers import _accept
from apps.conversations.models import UsageDay
from apps.conversations.selectors import chat_admission
from apps.core.exceptions import Forbidden, NotFound
from apps.deployments.models import DeploymentDocument, ToolPolicy
from apps.deployments.runtime import agent_spec_current, spec_stamp
from apps.deployments.selectors import deployment_get

pytestmark = pytest.mark.usefixtures("committed")


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings: Any) -> None:
    settings.RATE_LIMIT_USER_PER_MINUTE = 10_000
    settings.RATE_LIMIT_DEPLOYMENT_PER_MINUTE = 10_000


def _member(org: Any) -> User:
    return User.objects.get(email=org.admin_email)


def test_admission_reads_user_key_and_deployment_in_one_query(
    acme, active_deployment, django_assert_num_queries
):
    with schema_context(acme.schema):
        user = _member(acme)
        key = api_key_create(user=user, name="hot path", scopes=["chat:use"]).api_key
        try:
            with django_assert_num_queries(1):
                admission = chat_admission(
                    user_id=user.pk, api_key_id=key.pk, deployment_id=active_deployment.pk
                )
        finally:
            key.delete()
        stamp = spec_stamp(active_deployment.pk)

    assert (admission.user.pk, admission.user.role) == (user.pk, user.role)
    assert admission.api_key.user_id == user.pk
    # The scopes as a list, never as JSON text ("chat:use" would be found in "chat:user").
    assert admission.api_key.scopes == ["chat:use"]
    assert admission.deployment.pk == active_deployment.pk
    assert admission.deployment.version.version == active_deployment.version.version
    assert admission.deployment.spec_stamp == stamp


def test_a_key_revoked_or_a_deployment_deleted_counts_from_the_next_message(
    acme, active_deployment
):
    with schema_context(acme.schema):
        user = _member(acme)
        key = api_key_create(user=user, name="revoked soon", scopes=["chat:use"]).api_key
        fields: dict[str, Any] = {"user_id": user.pk, "api_key_id": key.pk, "content": "Hello"}
        accepted = _accept(
            deployment_id=active_deployment.pk,
            client_msg_id="hot-1",
            conversation_id=None,
            **fields,
        )
        assert accepted.message.content == "Hello"

        ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
        with pytest.raises(Forbidden):
            _accept(
                deployment_id=active_deployment.pk,
                client_msg_id="hot-2",
                conversation_id=None,
                **fields,
            )
        key.delete()
        # Another tenant's deployment id, or none at all, is missing here.
        with pytest.raises(NotFound):
            _accept(
                user_id=user.pk,
                api_key_id=None,
                content="Hello",
                deployment_id=active_deployment.pk + 10_000,
                client_msg_id="hot-3",
                conversation_id=None,
            )


def test_a_cached_spec_is_rebuilt_when_a_document_or_the_tool_policy_changes(
    acme, active_deployment
):
    with schema_context(acme.schema):
        first = agent_spec_current(deployment_get(pk=active_deployment.pk))
        assert agent_spec_current(deployment_get(pk=active_deployment.pk)) is first

        DeploymentDocument.objects.create(
            deployment=active_deployment, title="Parking", content="Level -2 is for visitors."
        )
        with_document = agent_spec_current(deployment_get(pk=active_deployment.pk))
        policy = ToolPolicy.objects.create(allowed_hosts=["intranet.acme.example"])
        with_policy = agent_spec_current(deployment_get(pk=active_deployment.pk))
        # An edit that leaves updated_at alone (as a form saving two fields would) counts too.
        ToolPolicy.objects.filter(pk=policy.pk).update(allowed_hosts=["wiki.acme.example"])
        narrowed = agent_spec_current(deployment_get(pk=active_deployment.pk))
        policy.delete()

    assert with_document is not first
    assert "Parking" in [doc.title for doc in with_document.documents]
    assert "Parking" not in [doc.title for doc in first.documents]
    assert with_policy.allowed_hosts == frozenset({"intranet.acme.example"})
    assert narrowed.allowed_hosts == frozenset({"wiki.acme.example"})


def test_usage_is_one_row_per_deployment_user_and_day(acme, active_deployment):
    with schema_context(acme.schema):
        user = _member(acme)
        before = UsageDay.objects.filter(deployment=active_deployment, user_id=user.pk).first()
        for index in range(3):
            _accept(
                user_id=user.pk,
                api_key_id=None,
                deployment_id=active_deployment.pk,
                content=f"Question {index}",
                client_msg_id=f"usage-{index}",
                conversation_id=None,
            )
        rows = list(UsageDay.objects.filter(deployment=active_deployment, user_id=user.pk))

    assert len(rows) == 1
    assert rows[0].messages == (before.messages if before else 0) + 3


async def test_a_cancel_flag_set_by_another_process_reaches_the_reply_within_the_poll(acme):
    key = (acme.schema, 987_654)
    event = cancels.register(key)
    try:
        # What another process's cancel leaves: the flag only, not this process's event.
        if settings.REDIS_URL:
            client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
            await client.set(cancels._redis_key(key), b"1", ex=60)
            await client.aclose()
        else:
            cancels._watch().flags.add(key)
        assert not event.is_set()
        await asyncio.wait_for(event.wait(), cancels.POLL_SECONDS * 4)
    finally:
        cancels.unregister(key)
        await cancels.forget(key)
