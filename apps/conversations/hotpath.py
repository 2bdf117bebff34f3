"""What the websocket does for every message, from the event loop: accepting it and storing the
finished reply.

The same rules as ``services.message_accept`` and ``services.reply_finish`` (their shared parts
are there: ``check_message``, ``screened``, ``store_statement``, ``finish_statement``), with the
input and output of the process's event loop instead of a database thread.

Two round trips before the ``ack``: the counters in Redis, then one statement that checks and
stores. Each socket remembers what its last message was admitted on (``Admitted``: the user, key
and deployment as read, and a fingerprint of that row); the next message is decided on it, and
the statement that stores it first reads the row again and stores nothing unless its fingerprint
is the same. When it is not (a role changed, a key was revoked, the deployment was paused or
edited), the counts are given back and the message is decided again on the row the statement
returned, then stored by a second statement: a change counts from the next message on, as
before. A socket's first message, a re-sent one and a refusal take that way too. The rare cases
(a re-sent message, a spec to build, a plan to read, failures to record) go to a database
thread.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from django.utils.translation import gettext as _

from apps.accounts.permissions import has_permission
from apps.conversations import quota, services
from apps.conversations.models import Conversation, Message
from apps.conversations.selectors import ADMISSION_WIDTH, Admission, admission_from, admission_sql
from apps.conversations.services import Accepted
from apps.core import adb, aredis
from apps.core.exceptions import Forbidden, NotFound, ServiceError
from apps.core.sqlfast import table
from apps.deployments.models import Deployment
from apps.deployments.runtime import agent_spec_cached, agent_spec_current, serving_check
from apps.runtime.engine import InputRefused
from apps.runtime.ratelimit import rate_limit_hit, rate_limit_hit_async, rate_limit_undo_async
from apps.runtime.types import ChatMessage
from apps.tenants.channels import run_in_tenant
from apps.tenants.models import Tenant

# The columns after the admission's: its fingerprint, a message already sent with this
# client_msg_id, the conversation (id, title, created_at, updated_at, archived_at), its history;
# then what was stored (conversation id, title, created_at, message id, reply id).
_FINGERPRINT = ADMISSION_WIDTH
_DUPLICATE = ADMISSION_WIDTH + 1
_CONVERSATION = slice(ADMISSION_WIDTH + 2, ADMISSION_WIDTH + 7)
_HISTORY = ADMISSION_WIDTH + 7
_STORED = slice(ADMISSION_WIDTH + 8, ADMISSION_WIDTH + 13)
_NAMED = re.compile(r"%\((\w+)\)s")


@dataclass
class Admitted:
    """What a socket's last message was admitted on: the admission row and its fingerprint
    (None before the first). Belongs to one socket; never shared between users."""

    fingerprint: str | None = None
    admission: Admission | None = None


@functools.cache
def _checks() -> tuple[str, tuple[str, ...]]:
    """The CTEs that read what a message is decided on, with positional parameters (the store's
    are positional) and the names they stand for, in order."""
    message, conversation = table(Message), table(Conversation)
    columns = ", ".join(f"a{i}" for i in range(ADMISSION_WIDTH))
    sql = f"""
        a({columns}) AS ({admission_sql()}),
        f AS (SELECT md5(a::text) AS fp FROM a),
        dup AS (SELECT m.id FROM {message} m JOIN {conversation} mc ON mc.id = m.conversation_id
                 WHERE m.role = 'user' AND m.client_msg_id = %(client_msg_id)s
                   AND mc.user_id = %(user)s AND mc.deployment_id = %(deployment)s LIMIT 1),
        c AS (SELECT id, title, created_at, updated_at, archived_at FROM {conversation}
               WHERE id = %(conversation)s AND user_id = %(user)s
                 AND deployment_id = %(deployment)s),
        ok AS (SELECT 1 FROM f WHERE f.fp = %(fingerprint)s AND NOT EXISTS (SELECT 1 FROM dup)
                 AND (%(conversation)s::bigint IS NULL OR EXISTS (SELECT 1 FROM c)))
    """  # noqa: S608 - table names from the models, values as parameters
    names = tuple(_NAMED.findall(sql))
    return _NAMED.sub("%s", sql), names


@functools.cache
def _select(stored: bool) -> str:
    message = table(Message)
    store = (
        "conv.id, conv.title, conv.created_at, msg.id, rep.id" if stored else "NULL, " * 4 + "NULL"
    )
    joins = "LEFT JOIN (conv CROSS JOIN msg CROSS JOIN rep) ON true" if stored else ""
    return f"""
        SELECT a.*, f.fp, (SELECT id FROM dup), c.*,
               (SELECT json_agg(json_build_array(h.role, h.content) ORDER BY h.id)
                  FROM (SELECT id, role, content FROM {message}
                         WHERE conversation_id = c.id AND status = 'complete' AND content <> ''
                         ORDER BY id DESC LIMIT %s) h),
               {store}
          FROM a CROSS JOIN f LEFT JOIN c ON true {joins}
    """  # noqa: S608 - table names from the models, values as parameters


@functools.cache
def _check_sql() -> str:
    return f"WITH {_checks()[0]} {_select(stored=False)}"


def _params(
    user_id: int,
    api_key_id: int | None,
    deployment_id: int,
    client_msg_id: str | None,
    conversation_id: int | None,
    fingerprint: str | None,
) -> list[Any]:
    """The parameters of ``_checks`` (no fingerprint: nothing matches, nothing is stored)."""
    named = {
        "user": user_id,
        "key": api_key_id,
        "deployment": deployment_id,
        "client_msg_id": client_msg_id,
        "conversation": conversation_id,
        "fingerprint": fingerprint,
    }
    return [named[name] for name in _checks()[1]]


def _history(found: Any) -> tuple[ChatMessage, ...]:
    pairs = json.loads(found) if isinstance(found, str | bytes) else found or []
    return tuple(
        ChatMessage("user" if role == Message.Role.USER else "assistant", content)
        for role, content in pairs
    )


def _allowed(admission: Admission, *, api_key_id: int | None, schema: str) -> tuple[Any, Any]:
    """The user and deployment, or why this user may not chat with it (now)."""
    user, api_key, deployment = admission.user, admission.api_key, admission.deployment
    if api_key_id is not None and (api_key is None or not api_key.is_usable):
        user = None
    if user is None or not has_permission(user, "chat:use", api_key=api_key, schema=schema):
        raise Forbidden(_("You may no longer chat with this agent."))
    if deployment is None:
        raise NotFound(_("No such deployment."))
    return user, deployment


async def admitted(
    *, tenant: Tenant, user_id: int, api_key_id: int | None, deployment_id: int
) -> Admitted:
    """What a new socket's first message is decided on (read now)."""
    row = await _check(tenant.schema_name, user_id, api_key_id, deployment_id, None, None)
    return Admitted(row[_FINGERPRINT], admission_from(row))


async def _check(
    schema: str,
    user_id: int,
    api_key_id: int | None,
    deployment_id: int,
    client_msg_id: str | None,
    conversation_id: int | None,
) -> tuple[Any, ...]:
    params = _params(user_id, api_key_id, deployment_id, client_msg_id, conversation_id, None)
    return (await adb.fetch(schema, _check_sql(), [*params, services.HISTORY_MESSAGES]))[0]


@dataclass
class _Counted:
    """What a message used up before it was stored, to give back if it is not."""

    rate: list[str]
    quota: bool


async def accept(
    *,
    tenant: Tenant,
    user_id: int,
    api_key_id: int | None,
    deployment_id: int,
    content: str,
    client_msg_id: str,
    conversation_id: int | None,
    admitted: Admitted | None = None,
) -> Accepted:
    """The websocket's ``services.message_accept``: the caller as they are now (role, key,
    deployment), then the message and its empty reply stored, counted against the rate limits
    and the month's quota. ``admitted``: the socket's, updated here."""
    schema = tenant.schema_name
    services.check_message(client_msg_id)
    admitted = admitted if admitted is not None else Admitted()
    ids: dict[str, Any] = {"user_id": user_id, "deployment_id": deployment_id}
    redis = aredis.client()
    row: tuple[Any, ...] | None = None
    if admitted.admission is not None and redis is not None:
        done = await _accept_as_admitted(
            redis,
            tenant,
            admitted,
            api_key_id=api_key_id,
            content=content,
            client_msg_id=client_msg_id,
            conversation_id=conversation_id,
            **ids,
        )
        if isinstance(done, Accepted):
            return done
        row = done
    if row is None:
        row = await _check(
            schema, user_id, api_key_id, deployment_id, client_msg_id, conversation_id
        )
    admission = admission_from(row)
    user, deployment = _allowed(admission, api_key_id=api_key_id, schema=schema)
    admitted.fingerprint, admitted.admission = row[_FINGERPRINT], admission
    if row[_DUPLICATE] is not None:
        # Re-sent after a reconnect: what the first one created (rare; from a database thread).
        return await run_in_tenant(tenant, _duplicate, user, deployment, client_msg_id)
    services.check_message(client_msg_id, content)
    serving_check(deployment)
    conversation = None
    if conversation_id is not None:
        found = row[_CONVERSATION]
        if found[0] is None:
            raise NotFound(_("No such conversation."))
        conversation = services.conversation_from(found, **ids)
    spec = agent_spec_cached(schema, deployment.pk, deployment.spec_stamp)
    if spec is None:
        spec = await run_in_tenant(tenant, agent_spec_current, deployment)
    refused, text = services.screened(spec, content)
    counted = await _count(redis, tenant, ids, refused)
    store = services.store_statement(
        conversation=conversation,
        text=text,
        client_msg_id=client_msg_id,
        refused=refused,
        **ids,
    )
    try:
        stored = await adb.fetch(schema, store.sql, store.params)
    except psycopg.errors.UniqueViolation:  # the same client_msg_id twice at the same moment
        await _uncount(redis, tenant, counted)
        return await run_in_tenant(tenant, _duplicate, user, deployment, client_msg_id)
    except BaseException:
        await _uncount(redis, tenant, counted)
        raise
    if not stored:  # the conversation was deleted meanwhile
        await _uncount(redis, tenant, counted)
        raise NotFound(_("No such conversation."))
    return _accepted(store, stored[0], spec, refused, row[_HISTORY], ids)


async def _accept_as_admitted(
    redis: Any,
    tenant: Tenant,
    admitted: Admitted,
    *,
    api_key_id: int | None,
    content: str,
    client_msg_id: str,
    conversation_id: int | None,
    user_id: int,
    deployment_id: int,
) -> Accepted | tuple[Any, ...] | None:
    """The message decided on what the socket was admitted on, and stored by the statement
    that checks it still is: what was stored; else, with the counts given back, the row as it
    is now (None when a check failed here, or the statement hit a concurrent twin)."""
    schema = tenant.schema_name
    ids: dict[str, Any] = {"user_id": user_id, "deployment_id": deployment_id}
    assert admitted.admission is not None
    decided = _decided_before(admitted.admission, schema, api_key_id, client_msg_id, content)
    if decided is None:
        return None
    spec, refused, text = decided
    counted = await _count(redis, tenant, ids, refused)
    store = services.store_statement(
        conversation=_conversation(conversation_id, **ids),
        text=text,
        client_msg_id=client_msg_id,
        refused=refused,
        gate="EXISTS (SELECT 1 FROM ok)",
        **ids,
    )
    checks = _params(
        user_id, api_key_id, deployment_id, client_msg_id, conversation_id, admitted.fingerprint
    )
    sql = f"WITH {_checks()[0]}, {store.sql} {_select(stored=True)}"
    try:
        row = (await adb.fetch(schema, sql, [*checks, *store.params, services.HISTORY_MESSAGES]))[0]
    except psycopg.errors.UniqueViolation:  # the same client_msg_id twice at once
        row = None
    except BaseException:
        await _uncount(redis, tenant, counted)
        raise
    if row is not None and row[_STORED.start] is not None:
        return _accepted(store, row[_STORED], spec, refused, row[_HISTORY], ids)
    # Something it was decided on changed (or a duplicate, or a conversation gone).
    await _uncount(redis, tenant, counted)
    return row


def _accepted(
    store: services.Store,
    stored: Any,
    spec: Any,
    refused: InputRefused | None,
    history: Any,
    ids: dict[str, Any],
) -> Accepted:
    """What was stored; a reply the guardrails wrote runs no provider and needs no history."""
    if refused is not None:
        return store.accepted(stored, spec=None, **ids)
    return store.accepted(stored, spec=spec, history=_history(history), **ids)


def _decided_before(
    admission: Admission, schema: str, api_key_id: int | None, client_msg_id: str, content: str
) -> tuple[Any, InputRefused | None, str] | None:
    """The spec and the guardrails' verdict, decided on what the socket's last message was
    admitted on; None when a check fails or needs more (a refusal is only ever given on the row
    as it is now, and a spec to build needs a database thread)."""
    try:
        _user, deployment = _allowed(admission, api_key_id=api_key_id, schema=schema)
        services.check_message(client_msg_id, content)
        serving_check(deployment)
        spec = agent_spec_cached(schema, deployment.pk, deployment.spec_stamp)
        if spec is None:
            return None
        refused, text = services.screened(spec, content)
    except ServiceError:
        return None
    return spec, refused, text


def _conversation(conversation_id: int | None, **ids: Any) -> Conversation | None:
    """The conversation to continue, by id (the statement checks it is the user's)."""
    if conversation_id is None:
        return None
    conversation = Conversation(id=conversation_id, **ids)
    conversation._state.adding = False
    return conversation


async def _count(
    redis: Any, tenant: Tenant, ids: dict[str, Any], refused: InputRefused | None
) -> _Counted:
    """Count the message against the rate limits and (unless the guardrails refused it) the
    month's quota, or raise why it may not be sent now."""
    if redis is None:  # the in-process cache: its counters are not shared anyway
        await run_in_tenant(tenant, _count_here, refused is None, **ids)
        return _Counted([], refused is None)
    rate = await rate_limit_hit_async(redis, schema=tenant.schema_name, **ids)
    # Last before storing: a message refused on the way never uses up the quota.
    try:
        return _Counted(
            rate, refused is None and await quota.message_quota_hit_async(redis, tenant)
        )
    except BaseException:
        await rate_limit_undo_async(redis, rate)
        raise


def _count_here(quota_too: bool, *, user_id: int, deployment_id: int) -> None:
    rate_limit_hit(user_id=user_id, deployment_id=deployment_id)
    if quota_too:
        quota.message_quota_hit()


async def _uncount(redis: Any, tenant: Tenant, counted: _Counted) -> None:
    if redis is None:
        if counted.quota:
            await run_in_tenant(tenant, quota.message_quota_undo)
        return
    if counted.rate:
        await rate_limit_undo_async(redis, counted.rate)
    if counted.quota:
        await quota.message_quota_undo_async(redis, tenant)


def _duplicate(user: Any, deployment: Deployment, client_msg_id: str) -> Accepted:
    existing = services.existing_message(user, deployment, client_msg_id)
    if existing is None:
        raise NotFound(_("No such message."))  # a unique violation without a row: not ours
    return existing


async def finish(*, tenant: Tenant, user_id: int | None, failures: list[Any], **reply: Any) -> None:
    """``services.reply_finish`` (same arguments) in one statement from the loop; with provider
    failures to record, or without a user, from a database thread."""
    if failures or user_id is None:
        await run_in_tenant(
            tenant, services.reply_finish, user_id=user_id, failures=failures, **reply
        )
        return
    await adb.fetch(tenant.schema_name, *services.finish_statement(user_id=user_id, **reply))
