"""What the per-message path of the chat shortens must not change what it decides: the checks
read as stored now (one query), agent specs cached while nothing they depend on changes, usage
added up in one row per day, and replies that another process cancels."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis.asyncio
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone
from django_tenants.utils import schema_context

from apps.accounts.api_keys import api_key_create
from apps.accounts.models import ApiKey, Role, User
from apps.conversations import cancels, hotpath
from apps.conversations.models import Message, UsageDay
from apps.conversations.selectors import admission_from, admission_sql
from apps.conversations.services import Accepted
from apps.core import adb
from apps.core.exceptions import Conflict, Forbidden, NotFound, TooManyRequests
from apps.deployments.models import Deployment, DeploymentDocument, RuntimeCall, ToolPolicy
from apps.deployments.runtime import agent_spec_current, spec_stamp
from apps.deployments.selectors import deployment_get
from apps.runtime.types import ChatMessage, Usage
from apps.tenants.models import Tenant

pytestmark = pytest.mark.usefixtures("committed")


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings: Any) -> None:
    settings.RATE_LIMIT_USER_PER_MINUTE = 10_000
    settings.RATE_LIMIT_DEPLOYMENT_PER_MINUTE = 10_000


def _member(org: Any) -> User:
    return User.objects.get(email=org.admin_email)


def _accept(org: Any, **fields: Any) -> Accepted:
    """A message as the websocket accepts it, from an event loop."""
    tenant = Tenant.objects.get(schema_name=org.schema)
    return async_to_sync(hotpath.accept)(tenant=tenant, **fields)


def test_admission_reads_user_key_and_deployment_in_one_query(acme, active_deployment):
    with schema_context(acme.schema):
        user = _member(acme)
        key = api_key_create(user=user, name="hot path", scopes=["chat:use"]).api_key
        params = {"user": user.pk, "key": key.pk, "deployment": active_deployment.pk}
        try:
            found = async_to_sync(adb.fetch)(acme.schema, admission_sql(), params)
            admission = admission_from(found[0])
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
            acme,
            deployment_id=active_deployment.pk,
            client_msg_id="hot-1",
            conversation_id=None,
            **fields,
        )
        assert accepted.message.content == "Hello"

        ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
        with pytest.raises(Forbidden):
            _accept(
                acme,
                deployment_id=active_deployment.pk,
                client_msg_id="hot-2",
                conversation_id=None,
                **fields,
            )
        key.delete()
        # Another tenant's deployment id, or none at all, is missing here.
        with pytest.raises(NotFound):
            _accept(
                acme,
                user_id=user.pk,
                api_key_id=None,
                content="Hello",
                deployment_id=active_deployment.pk + 10_000,
                client_msg_id="hot-3",
                conversation_id=None,
            )


def test_a_socket_decides_on_what_it_was_admitted_on_until_the_database_says_otherwise(
    acme, active_deployment, settings
):
    """The statement that stores a message checks first that the user, key and deployment are
    as the socket last read them: a change refuses the very next message, and a message that is
    not stored (refused, re-sent, its conversation gone) uses up nothing."""
    settings.RATE_LIMIT_USER_PER_MINUTE = 3
    if time.time() % 60 > 50:  # the counts start again each minute: not in the middle of this
        time.sleep(60.5 - time.time() % 60)
    tenant = Tenant.objects.get(schema_name=acme.schema)
    with schema_context(acme.schema):
        user = User.objects.create_user(
            f"socket-{uuid.uuid4().hex[:8]}@acme.example", role="member"
        )
        key = api_key_create(user=user, name="socket", scopes=["chat:use"]).api_key
        ids: dict[str, Any] = {
            "user_id": user.pk,
            "api_key_id": key.pk,
            "deployment_id": active_deployment.pk,
        }
        admitted = async_to_sync(hotpath.admitted)(tenant=tenant, **ids)
        before = admitted.fingerprint, admitted.admission

        def send(client_msg_id: str, conversation_id: int | None = None) -> Accepted:
            return _accept(
                acme,
                content="Where is the VPN?",
                client_msg_id=client_msg_id,
                conversation_id=conversation_id,
                admitted=admitted,
                **ids,
            )

        try:
            first = send("socket-1")
            # Nothing changed: nothing was read again.
            assert (admitted.fingerprint, admitted.admission) == before
            again = send("socket-1")  # re-sent after a reconnect
            with pytest.raises(NotFound):
                send("socket-2", conversation_id=first.conversation.pk + 10_000)

            Deployment.objects.filter(pk=active_deployment.pk).update(
                status=Deployment.Status.PAUSED
            )
            with pytest.raises(Conflict):
                send("socket-3")
            Deployment.objects.filter(pk=active_deployment.pk).update(
                status=Deployment.Status.ACTIVE
            )
            ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
            with pytest.raises(Forbidden):
                send("socket-4")
            ApiKey.objects.filter(pk=key.pk).update(revoked_at=None)

            second = send("socket-5", conversation_id=first.conversation.pk)
            third = send("socket-6")
            # Three stored of three a minute: the refused and re-sent ones counted for nothing.
            with pytest.raises(TooManyRequests):
                send("socket-7")
            stored = list(
                Message.objects.filter(
                    conversation__user=user, role="user", client_msg_id__startswith="socket-"
                ).values_list("client_msg_id", flat=True)
            )
        finally:
            Deployment.objects.filter(pk=active_deployment.pk).update(
                status=Deployment.Status.ACTIVE
            )
            user.delete()  # and their key, conversations and messages

    assert (again.duplicate, again.message.pk, again.reply.pk) == (
        True,
        first.message.pk,
        first.reply.pk,
    )
    # Read again when the deployment and the key changed (and back: the same fingerprint).
    assert admitted.admission is not before[1]
    assert admitted.fingerprint == before[0]
    assert second.conversation.pk == first.conversation.pk
    assert second.history == (ChatMessage("user", "Where is the VPN?"),)
    assert second.conversation.created_at == first.conversation.created_at
    assert third.conversation.pk != first.conversation.pk
    assert sorted(stored) == ["socket-1", "socket-5", "socket-6"]


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
                acme,
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


def test_a_continued_conversation_carries_its_history_and_a_finished_reply_its_usage(
    acme, active_deployment
):
    with schema_context(acme.schema):
        user = _member(acme)
        tenant = Tenant.objects.get(schema_name=acme.schema)
        fields: dict[str, Any] = {
            "user_id": user.pk,
            "api_key_id": None,
            "deployment_id": active_deployment.pk,
        }
        first = _accept(
            acme,
            content="Where is the VPN?",
            client_msg_id="hist-1",
            conversation_id=None,
            **fields,
        )
        before = UsageDay.objects.get(deployment=active_deployment, user_id=user.pk)
        tools = [{"name": "search_knowledge", "arguments": {"query": "vpn"}, "error": None}]
        async_to_sync(hotpath.finish)(
            tenant=tenant,
            reply_id=first.reply.pk,
            deployment_id=active_deployment.pk,
            content="At vpn.acme.example.",
            usage=Usage("local", "local-1", 12, 34, 5, "stop"),
            tools=tools,
            user_id=user.pk,
            failures=[],
        )
        second = _accept(
            acme,
            content="And the password?",
            client_msg_id="hist-2",
            conversation_id=first.conversation.pk,
            **fields,
        )
        reply = Message.objects.get(pk=first.reply.pk)
        call = RuntimeCall.objects.filter(deployment=active_deployment).latest("id")
        after = UsageDay.objects.get(deployment=active_deployment, user_id=user.pk)
        # Someone else's conversation is missing, as a deleted one is.
        other = User.objects.filter(role=Role.MEMBER).exclude(pk=user.pk).first()
        with pytest.raises(NotFound):
            _accept(
                acme,
                user_id=other.pk,
                api_key_id=None,
                deployment_id=active_deployment.pk,
                content="Let me in",
                client_msg_id="hist-3",
                conversation_id=first.conversation.pk,
            )

    assert second.conversation.pk == first.conversation.pk
    assert second.conversation.title == "Where is the VPN?"
    assert second.history == (
        ChatMessage("user", "Where is the VPN?"),
        ChatMessage("assistant", "At vpn.acme.example."),
    )
    assert second.reply.reply_to_id == second.message.pk
    assert (reply.status, reply.content, reply.tools) == ("complete", "At vpn.acme.example.", tools)
    assert (reply.tokens_in, reply.tokens_out, reply.provider) == (12, 34, "local")
    assert (call.user_id, call.input_tokens, call.output_tokens) == (user.pk, 12, 34)
    assert after.messages == before.messages + 1
    assert (after.tokens_in, after.tokens_out) == (before.tokens_in + 12, before.tokens_out + 34)


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
