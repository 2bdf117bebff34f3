"""What the websocket does for every message, from the event loop: accepting it and storing the
finished reply.

The same rules as ``services.message_accept`` and ``services.reply_finish`` (their shared parts
are there: ``check_message``, ``screened``, ``store_statement``, ``finish_statement``), with the
input and output of the process's event loop instead of a database thread: three round trips
before the ``ack`` (one query for the checks, the duplicate, the conversation and its history;
one Redis script per counter; one statement that stores it all), one after the reply. The rare
cases (a re-sent message, a spec to build, a plan to read, failures to record) go to a database
thread as before.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import psycopg
from django.utils.translation import gettext as _

from apps.accounts.permissions import has_permission
from apps.conversations import quota, services
from apps.conversations.models import Conversation, Message
from apps.conversations.selectors import ADMISSION_WIDTH, admission_from, admission_sql
from apps.conversations.services import Accepted
from apps.core import adb, aredis
from apps.core.exceptions import Forbidden, NotFound
from apps.core.sqlfast import table
from apps.deployments.runtime import agent_spec_cached, agent_spec_current, serving_check
from apps.runtime.ratelimit import rate_limit_hit_async
from apps.runtime.types import ChatMessage
from apps.tenants.channels import run_in_tenant
from apps.tenants.models import Tenant


@functools.cache
def _accept_sql() -> str:
    message, conversation = table(Message), table(Conversation)
    # Table names from the models, values as parameters.
    return admission_sql(
        columns=f""",
        (SELECT m.id FROM {message} m JOIN {conversation} mc ON mc.id = m.conversation_id
          WHERE m.role = 'user' AND m.client_msg_id = %(client_msg_id)s
            AND mc.user_id = %(user)s AND mc.deployment_id = %(deployment)s LIMIT 1),
        c.id, c.title, c.created_at, c.updated_at, c.archived_at,
        (SELECT json_agg(json_build_array(h.role, h.content) ORDER BY h.id)
           FROM (SELECT id, role, content FROM {message}
                  WHERE conversation_id = c.id AND status = 'complete' AND content <> ''
                  ORDER BY id DESC LIMIT %(history)s) h)""",  # noqa: S608
        joins=f"""LEFT JOIN {conversation} c
          ON c.id = %(conversation)s AND c.user_id = u.id AND c.deployment_id = d.id""",
    )


def _history(found: Any) -> tuple[ChatMessage, ...]:
    pairs = json.loads(found) if isinstance(found, str | bytes) else found or []
    return tuple(
        ChatMessage("user" if role == Message.Role.USER else "assistant", content)
        for role, content in pairs
    )


async def accept(
    *,
    tenant: Tenant,
    user_id: int,
    api_key_id: int | None,
    deployment_id: int,
    content: str,
    client_msg_id: str,
    conversation_id: int | None,
) -> Accepted:
    """The websocket's ``services.message_accept``: the caller as they are now (role, key,
    deployment), then the message and its empty reply stored, counted against the rate limits
    and the month's quota."""
    schema = tenant.schema_name
    services.check_message(client_msg_id)
    row = (
        await adb.fetch(
            schema,
            _accept_sql(),
            {
                "user": user_id,
                "key": api_key_id,
                "deployment": deployment_id,
                "client_msg_id": client_msg_id,
                "conversation": conversation_id,
                "history": services.HISTORY_MESSAGES,
            },
        )
    )[0]
    admission = admission_from(row)
    duplicate_id, found, history = row[ADMISSION_WIDTH], row[ADMISSION_WIDTH + 1 : -1], row[-1]
    user, api_key, deployment = admission.user, admission.api_key, admission.deployment
    if api_key_id is not None and (api_key is None or not api_key.is_usable):
        user = None
    if user is None or not has_permission(user, "chat:use", api_key=api_key, schema=schema):
        raise Forbidden(_("You may no longer chat with this agent."))
    if deployment is None:
        raise NotFound(_("No such deployment."))
    if duplicate_id is not None:
        # Re-sent after a reconnect: what the first one created (rare; from a database thread).
        return await run_in_tenant(tenant, _duplicate, user, deployment, client_msg_id)
    services.check_message(client_msg_id, content)
    serving_check(deployment)
    conversation = None
    if conversation_id is not None:
        if found[0] is None:
            raise NotFound(_("No such conversation."))
        conversation = services.conversation_from(
            found, user_id=user_id, deployment_id=deployment_id
        )
    spec = agent_spec_cached(schema, deployment.pk, deployment.spec_stamp)  # type: ignore[attr-defined]
    if spec is None:
        spec = await run_in_tenant(tenant, agent_spec_current, deployment)
    refused, text = services.screened(spec, content)
    redis = aredis.client()
    counted = False
    if redis is None:  # the in-process cache: its counters are not shared anyway
        await run_in_tenant(tenant, _count, user_id, deployment_id, refused is None)
        counted = refused is None
    else:
        await rate_limit_hit_async(
            redis, schema=schema, user_id=user_id, deployment_id=deployment_id
        )
        if refused is None:
            # Last before storing: a message refused on the way never uses up the quota.
            counted = await quota.message_quota_hit_async(redis, tenant)
    store = services.store_statement(
        user_id=user_id,
        deployment_id=deployment_id,
        conversation=conversation,
        text=text,
        client_msg_id=client_msg_id,
        refused=refused,
    )
    try:
        stored = await adb.fetch(schema, store.sql, store.params)
    except psycopg.errors.UniqueViolation:  # the same client_msg_id twice at the same moment
        await _uncount(tenant, counted)
        return await run_in_tenant(tenant, _duplicate, user, deployment, client_msg_id)
    except BaseException:
        await _uncount(tenant, counted)
        raise
    if not stored:  # the conversation was deleted meanwhile
        await _uncount(tenant, counted)
        raise NotFound(_("No such conversation."))
    return store.accepted(
        stored[0],
        user_id=user_id,
        deployment_id=deployment_id,
        spec=None if refused else spec,
        history=_history(history) if refused is None else (),
    )


def _duplicate(user: Any, deployment: Any, client_msg_id: str) -> Accepted:
    existing = services.existing_message(user, deployment, client_msg_id)
    if existing is None:
        raise NotFound(_("No such message."))  # a unique violation without a row: not ours
    return existing


def _count(user_id: int, deployment_id: int, quota_too: bool) -> None:
    from apps.runtime.ratelimit import rate_limit_hit

    rate_limit_hit(user_id=user_id, deployment_id=deployment_id)
    if quota_too:
        quota.message_quota_hit()


async def _uncount(tenant: Tenant, counted: bool) -> None:
    if not counted:
        return
    redis = aredis.client()
    if redis is None:
        await run_in_tenant(tenant, quota.message_quota_undo)
    else:
        await quota.message_quota_undo_async(redis, tenant)


async def finish(*, tenant: Tenant, user_id: int | None, failures: list[Any], **reply: Any) -> None:
    """``services.reply_finish`` (same arguments) in one statement from the loop; with provider
    failures to record, or without a user, from a database thread."""
    if failures or user_id is None:
        await run_in_tenant(
            tenant, services.reply_finish, user_id=user_id, failures=failures, **reply
        )
        return
    await adb.fetch(tenant.schema_name, *services.finish_statement(user_id=user_id, **reply))
