"""Every write to conversations. The user's message is committed before any provider is called;
the reply is a row that moves pending → streaming → complete, failed or cancelled; usage is added
up per deployment, user and day. Websocket, REST, SSE and the OpenAI-compatible API all use
these, so they behave the same."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.accounts.permissions import has_permission
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.conversations.models import Conversation, Message, UsageDay
from apps.conversations.quota import message_quota_hit, message_quota_undo
from apps.core.exceptions import Conflict, Forbidden, InvalidInput, NotFound
from apps.core.sqlfast import insert_from, rows, table, update_statement
from apps.deployments.models import Deployment
from apps.deployments.runtime import (
    agent_spec,
    agent_spec_current,
    provider_failure_record,
    runtime_call,
    runtime_call_record,
    serving_check,
)
from apps.runtime.engine import AgentSpec, InputRefused, redacted_input
from apps.runtime.ratelimit import rate_limit_hit
from apps.runtime.types import ChatMessage, ProviderError, Usage

TITLE_CHARS = 60
HISTORY_MESSAGES = 50
CONTENT_MAX_CHARS = 100_000
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
Status = Message.Status


def require_chat(user: Any) -> None:
    if not has_permission(user, "chat:use"):
        raise Forbidden(_("Your role does not allow chatting with agents."))


def title_from(text: str) -> str:
    words = " ".join(text.split())
    if len(words) <= TITLE_CHARS:
        return words or _("New conversation")
    return words[:TITLE_CHARS].rsplit(" ", 1)[0] + "…"


@dataclass(frozen=True)
class Accepted:
    conversation: Conversation
    message: Message
    reply: Message
    duplicate: bool = False
    spec: AgentSpec | None = None  # None when no provider is to be called (duplicate, refused)
    history: tuple[ChatMessage, ...] = ()
    retried: bool = False  # a failed or cancelled reply run again


# The reads and writes of every message are written by hand (apps/core/sqlfast.py): compiling
# the ORM's queries cost several times what PostgreSQL spends running them.


def _history(conversation: Conversation, before_id: int) -> tuple[ChatMessage, ...]:
    found = rows(
        f"SELECT role, content FROM {table(Message)} WHERE conversation_id = %s AND id < %s "  # noqa: S608
        "AND status = %s AND content <> '' ORDER BY id DESC LIMIT %s",
        [conversation.pk, before_id, Status.COMPLETE, HISTORY_MESSAGES],
    )
    return tuple(
        ChatMessage("user" if role == Message.Role.USER else "assistant", content)
        for role, content in reversed(found)
    )


def existing_message(user: Any, deployment: Deployment, client_msg_id: str) -> Accepted | None:
    """What a message sent before with ``client_msg_id`` created, as a duplicate."""
    found = rows(
        f"SELECT m.id FROM {table(Message)} m JOIN {table(Conversation)} c "  # noqa: S608
        "ON c.id = m.conversation_id WHERE m.role = %s AND m.client_msg_id = %s "
        "AND c.user_id = %s AND c.deployment_id = %s LIMIT 1",
        [Message.Role.USER, client_msg_id, user.pk, deployment.pk],
    )
    if not found:
        return None
    message = Message.objects.select_related("conversation").get(pk=found[0][0])
    reply = message.replies.order_by("-id").first()
    assert reply is not None  # created in the same transaction
    return Accepted(message.conversation, message, reply, duplicate=True)


def _own_conversation(user: Any, deployment: Deployment, conversation_id: int) -> Conversation:
    found = rows(
        f"SELECT id, title, created_at, updated_at, archived_at FROM {table(Conversation)} "  # noqa: S608
        "WHERE id = %s AND user_id = %s AND deployment_id = %s",
        [conversation_id, user.pk, deployment.pk],
    )
    if not found:
        raise NotFound(_("No such conversation."))
    return conversation_from(found[0], user_id=user.pk, deployment_id=deployment.pk)


def conversation_from(row: Sequence[Any], *, user_id: int, deployment_id: int) -> Conversation:
    """The stored conversation of a row (id, title, created_at, updated_at, archived_at)."""
    pk, title, created_at, updated_at, archived_at = row
    conversation = Conversation(
        id=pk,
        user_id=user_id,
        deployment_id=deployment_id,
        title=title,
        created_at=created_at,
        updated_at=updated_at,
        archived_at=archived_at,
    )
    conversation._state.adding = False
    return conversation


def check_message(client_msg_id: Any, content: Any | None = None) -> None:
    """The client's id (and, unless None, the text) of a message, or ``InvalidInput``. The text
    is checked after the id has been looked up: a re-sent message is answered whatever it says."""
    if content is None:
        if not isinstance(client_msg_id, str) or not _CLIENT_ID.match(client_msg_id):
            raise InvalidInput(
                _("Each message needs a client_msg_id of 1 to 64 letters, digits or -_.:"),
                details={"client_msg_id": [_("Invalid client message id.")]},
            )
        return
    if not isinstance(content, str) or not content.strip():
        raise InvalidInput(_("The message is empty."), details={"content": [_("Write a message.")]})
    if len(content) > CONTENT_MAX_CHARS:
        raise InvalidInput(
            _("The message is too long."),
            code="too_long",
            details={"content": [_("At most %(n)d characters.") % {"n": CONTENT_MAX_CHARS}]},
        )


def screened(spec: AgentSpec, content: str) -> tuple[InputRefused | None, str]:
    """The input guardrails' verdict: why the message is refused (its reply is the refusal; None
    when it is not) and the text to store. A message over the length limit is bad input."""
    checked = redacted_input(spec, content)
    if isinstance(checked, str):
        return None, checked
    if checked.code == "too_long":
        raise InvalidInput(checked.message, code="too_long", details={"content": [checked.message]})
    return checked, checked.text


def usage_statement(
    deployment_id: int,
    user_id: int,
    *,
    messages: int = 0,
    tokens_in: int = 0,
    tokens_out: int = 0,
    source: str = "",
) -> tuple[str, list[Any]]:
    """Add to the day's usage row of a user, creating it if needed: one upsert on its unique key.
    With ``source`` (a CTE of the same statement), only when that has a row."""
    usage = table(UsageDay)
    values = "VALUES (%s, %s, %s, %s, %s, %s)"
    if source:
        values = f"SELECT %s, %s, %s, %s, %s, %s FROM {source}"  # noqa: S608 - a CTE's name
    return (
        f"INSERT INTO {usage} (deployment_id, user_id, day, messages, tokens_in, tokens_out) "
        f"{values} ON CONFLICT (deployment_id, user_id, day) DO UPDATE "
        f"SET messages = {usage}.messages + EXCLUDED.messages, "
        f"tokens_in = {usage}.tokens_in + EXCLUDED.tokens_in, "
        f"tokens_out = {usage}.tokens_out + EXCLUDED.tokens_out RETURNING id",
        [deployment_id, user_id, timezone.localdate(), messages, tokens_in, tokens_out],
    )


@dataclass(frozen=True)
class Store:
    """Storing an accepted message: the statement, and what its row (conversation id, title,
    created_at, message id, reply id; none when the conversation is gone) becomes."""

    sql: str
    params: list[Any]
    message: Message
    reply: Message
    conversation: Conversation | None

    def accepted(
        self,
        row: Sequence[Any],
        *,
        user_id: int,
        deployment_id: int,
        spec: AgentSpec | None,
        history: tuple[ChatMessage, ...] = (),
    ) -> Accepted:
        conversation_id, title, created_at, message_id, reply_id = row
        now = self.message.created_at
        conversation = self.conversation or Conversation(
            deployment_id=deployment_id, user_id=user_id, created_at=created_at, updated_at=now
        )
        conversation.id, conversation.title, conversation.updated_at = conversation_id, title, now
        conversation.created_at = created_at
        conversation._state.adding = False
        for obj, pk in ((self.message, message_id), (self.reply, reply_id)):
            obj.id, obj.conversation = pk, conversation
            obj._state.adding = False
        self.reply.reply_to = self.message
        return Accepted(conversation, self.message, self.reply, spec=spec, history=history)


def store_statement(
    *,
    user_id: int,
    deployment_id: int,
    conversation: Conversation | None,
    text: str,
    client_msg_id: str,
    refused: InputRefused | None,
    gate: str = "",
) -> Store:
    """One statement that stores the message and its (empty, or refusal) reply, starts the
    conversation or marks it updated, and counts the message in the day's usage (not a refused
    one): all or nothing, in one round trip; nothing at all when the conversation is gone.

    ``gate``: an SQL condition (``EXISTS (SELECT 1 FROM ok)``) without which nothing is stored
    either, for a statement whose earlier CTEs check first (``apps/conversations/hotpath.py``);
    its ``WITH`` is the caller's, the parts here follow it after a comma."""
    now = timezone.now()
    parts: list[str] = []
    params: list[Any] = []
    if conversation is None:
        start = Conversation(
            deployment_id=deployment_id,
            user_id=user_id,
            title=title_from(text),
            created_at=now,
            updated_at=now,
        )
        sql, values = insert_from(start, {})
        where = f" WHERE {gate}" if gate else ""
        parts.append(f"conv AS ({sql}{where} RETURNING id, title, created_at)")
        params += values
    else:
        parts.append(
            f"conv AS (UPDATE {table(Conversation)} SET updated_at = %s WHERE id = %s "  # noqa: S608
            f"{f'AND {gate} ' if gate else ''}RETURNING id, title, created_at)"
        )
        params += [now, conversation.pk]
    message = Message(
        role=Message.Role.USER,
        content=text,
        client_msg_id=client_msg_id,
        created_at=now,
        updated_at=now,
    )
    sql, values = insert_from(message, {"conversation": "conv.id"})
    parts.append(f"msg AS ({sql} FROM conv RETURNING id)")
    params += values
    reply = Message(
        role=Message.Role.ASSISTANT,
        status=Status.COMPLETE if refused else Status.PENDING,
        content=refused.message if refused else "",
        error_code=refused.code if refused else "",
        provider="guardrails" if refused else "",
        created_at=now,
        updated_at=now,
    )
    sql, values = insert_from(reply, {"conversation": "conv.id", "reply_to": "msg.id"})
    parts.append(f"rep AS ({sql} FROM conv, msg RETURNING id)")
    params += values
    if refused is None:
        sql, values = usage_statement(deployment_id, user_id, messages=1, source="conv")
        parts.append(f"usage AS ({sql})")
        params += values
    if gate:
        return Store(", ".join(parts), params, message, reply, conversation)
    sql = (
        f"WITH {', '.join(parts)} "  # noqa: S608 - statements built here, values as parameters
        "SELECT conv.id, conv.title, conv.created_at, msg.id, rep.id FROM conv, msg, rep"
    )
    return Store(sql, params, message, reply, conversation)


def message_accept(
    *,
    user: Any,
    deployment: Deployment,
    content: str,
    client_msg_id: str,
    conversation_id: int | None = None,
) -> Accepted:
    """Store the user's message and an empty reply, in one statement, before any provider is
    called. The same ``client_msg_id`` again returns what the first one created. (The websocket
    does the same from the event loop: ``apps/conversations/hotpath.py``.)"""
    require_chat(user)
    check_message(client_msg_id)
    existing = existing_message(user, deployment, client_msg_id)
    if existing is not None:
        return existing
    check_message(client_msg_id, content)
    serving_check(deployment)
    conversation = None
    if conversation_id is not None:
        conversation = _own_conversation(user, deployment, conversation_id)
    spec = agent_spec_current(deployment)
    refused, text = screened(spec, content)
    rate_limit_hit(user_id=user.pk, deployment_id=deployment.pk)
    if refused is None:
        # Last before storing: a message refused on the way never uses up the month's quota.
        message_quota_hit()
    store = store_statement(
        user_id=user.pk,
        deployment_id=deployment.pk,
        conversation=conversation,
        text=text,
        client_msg_id=client_msg_id,
        refused=refused,
    )
    try:
        with transaction.atomic():
            found = rows(store.sql, store.params)
    except IntegrityError:  # the same client_msg_id sent twice at the same moment
        if refused is None:
            message_quota_undo()
        again = existing_message(user, deployment, client_msg_id)
        if again is None:
            raise
        return again
    except BaseException:
        if refused is None:
            message_quota_undo()
        raise
    if not found:  # the conversation was deleted meanwhile
        if refused is None:
            message_quota_undo()
        raise NotFound(_("No such conversation."))
    if refused is not None:
        return store.accepted(found[0], user_id=user.pk, deployment_id=deployment.pk, spec=None)
    history = () if conversation is None else _history(conversation, found[0][3])
    return store.accepted(
        found[0], user_id=user.pk, deployment_id=deployment.pk, spec=spec, history=history
    )


def reply_retry(*, user: Any, reply_id: int) -> Accepted:
    """Try a failed or cancelled reply again (the user's message was kept)."""
    require_chat(user)
    with transaction.atomic():
        reply = (
            # Only the reply's row: PostgreSQL cannot lock the nullable side of reply_to's join.
            Message.objects.select_for_update(of=("self",))
            .select_related("conversation", "conversation__deployment", "reply_to")
            .filter(pk=reply_id, role=Message.Role.ASSISTANT, conversation__user=user)
            .first()
        )
        if reply is None or reply.reply_to is None:
            raise NotFound(_("No such reply."))
        if reply.status not in (Status.FAILED, Status.CANCELLED):
            raise Conflict(_("Only a failed or cancelled reply can be retried."), code="not_failed")
        deployment = reply.conversation.deployment
        serving_check(deployment)
        rate_limit_hit(user_id=user.pk, deployment_id=deployment.pk)
        # A retry answers a message already counted: it needs the month not to be used up.
        message_quota_hit(count=False)
        reply.status, reply.content, reply.error_code, reply.error_message = (
            Status.PENDING,
            "",
            "",
            "",
        )
        reply.updated_at = timezone.now()
        reply.save(update_fields=["status", "content", "error_code", "error_message", "updated_at"])
    spec = agent_spec(deployment)
    message = reply.reply_to
    return Accepted(
        reply.conversation,
        message,
        reply,
        spec=spec,
        history=_history(reply.conversation, message.pk),
        retried=True,
    )


def reply_progress(*, reply_id: int, content: str) -> None:
    """The reply so far (called in batches while it streams, not per token)."""
    Message.objects.filter(pk=reply_id, status__in=[Status.PENDING, Status.STREAMING]).update(
        content=content, status=Status.STREAMING, updated_at=timezone.now()
    )


def finish_statement(
    *,
    reply_id: int,
    deployment_id: int,
    content: str,
    usage: Usage | None,
    tools: list[dict[str, Any]],
    user_id: int | None,
) -> tuple[str, list[Any]]:
    """One statement that stores the finished reply (its text, tools and usage), records the
    runtime call and adds the tokens to the day's usage (with a user): all or nothing."""
    fields: dict[str, Any] = {
        "content": content,
        "status": Status.COMPLETE,
        "tools": tools,
        "updated_at": timezone.now(),
    }
    if usage is not None:
        fields |= {
            "tokens_in": usage.input_tokens,
            "tokens_out": usage.output_tokens,
            "latency_ms": usage.latency_ms,
            "provider": usage.provider,
            "model": usage.model,
        }
    parts: list[str] = []
    sql, params = update_statement(Message, reply_id, fields)
    parts.append(f"rep AS ({sql} RETURNING id)")
    call = runtime_call(deployment_id=deployment_id, user_id=user_id, usage=usage)
    sql, values = insert_from(call, {})
    parts.append(f"call AS ({sql} RETURNING id)")
    params += values
    if usage is not None and user_id is not None:
        sql, values = usage_statement(
            deployment_id, user_id, tokens_in=usage.input_tokens, tokens_out=usage.output_tokens
        )
        parts.append(f"usage AS ({sql})")
        params += values
    # Statements built here, values as parameters.
    return f"WITH {', '.join(parts)} SELECT count(*) FROM rep", params  # noqa: S608


def reply_finish(
    *,
    deployment_id: int,
    usage: Usage | None,
    user_id: int | None,
    failures: list[Any],
    **reply: Any,
) -> None:
    """The reply streamed to its end: its text, usage and the runtime call, in one transaction
    (``finish_statement``'s arguments, and the provider failures on the way)."""
    with transaction.atomic():
        rows(*finish_statement(deployment_id=deployment_id, usage=usage, user_id=user_id, **reply))
        if usage is not None and user_id is None:
            _usage_add(
                Deployment(pk=deployment_id),
                None,
                tokens_in=usage.input_tokens,
                tokens_out=usage.output_tokens,
            )
        _record_failures(Deployment(pk=deployment_id), failures)


def reply_fail(
    *,
    reply_id: int,
    content: str,
    error: ProviderError | None,
    code: str,
    message: str,
    user_id: int | None,
    failures: list[Any],
) -> Message:
    """The reply failed: what streamed so far is kept, with the reason; the user may retry."""
    with transaction.atomic():
        reply = Message.objects.select_related("conversation__deployment").get(pk=reply_id)
        reply.content, reply.status = content, Status.FAILED
        reply.error_code, reply.error_message = code[:32], message[:500]
        reply.updated_at = timezone.now()
        reply.save()
        deployment = reply.conversation.deployment
        _record_failures(deployment, failures)
        runtime_call_record(
            deployment=deployment,
            user_id=user_id,
            usage=None,
            error=error,
            provider=error.provider if error else "",
        )
    return reply


def reply_cancel(*, reply_id: int, content: str) -> Message:
    with transaction.atomic():
        reply = Message.objects.get(pk=reply_id)
        reply.content, reply.status, reply.updated_at = content, Status.CANCELLED, timezone.now()
        reply.save(update_fields=["content", "status", "updated_at"])
    return reply


def _record_failures(deployment: Deployment, failures: list[Any]) -> None:
    for failed, attempt, provider in failures:
        provider_failure_record(
            deployment=deployment, error=failed, attempt=attempt, provider=provider
        )


def _usage_add(
    deployment: Deployment,
    user_id: int | None,
    *,
    messages: int = 0,
    tokens_in: int = 0,
    tokens_out: int = 0,
) -> None:
    """Add to the day's row, creating it if needed: one statement (an upsert on the row's unique
    key; rows without a user cannot use it, NULLs never conflict)."""
    if user_id is None:
        row, _created = UsageDay.objects.get_or_create(
            deployment=deployment, user_id=None, day=timezone.localdate()
        )
        UsageDay.objects.filter(pk=row.pk).update(
            messages=F("messages") + messages,
            tokens_in=F("tokens_in") + tokens_in,
            tokens_out=F("tokens_out") + tokens_out,
        )
        return
    rows(
        *usage_statement(
            deployment.pk, user_id, messages=messages, tokens_in=tokens_in, tokens_out=tokens_out
        )
    )


def usage_record(
    *,
    deployment: Deployment,
    user_id: int | None,
    messages: int = 0,
    tokens_in: int = 0,
    tokens_out: int = 0,
) -> None:
    """Usage of a turn that keeps no conversation (the OpenAI-compatible API is stateless), in
    the same daily rows as conversations, so quotas and billing count it alike."""
    with transaction.atomic():
        _usage_add(
            deployment, user_id, messages=messages, tokens_in=tokens_in, tokens_out=tokens_out
        )


def conversation_archive(*, conversation: Conversation, user: Any, archived: bool = True) -> None:
    Conversation.objects.filter(pk=conversation.pk, user=user).update(
        archived_at=timezone.now() if archived else None
    )


def conversation_delete(*, conversation: Conversation, user: Any) -> None:
    with transaction.atomic():
        audit_record(
            action="conversation.deleted",
            actor=user,
            target_type="conversations.conversation",
            target_id=conversation.pk,
            metadata={
                "deployment": conversation.deployment_id,
                "messages": conversation.messages.count(),
            },
        )
        conversation.delete()


def conversation_exported(*, conversation: Conversation, user: Any, format: str) -> None:
    audit_record(
        action="conversation.exported",
        actor=user,
        target_type="conversations.conversation",
        target_id=conversation.pk,
        metadata={"format": format, "messages": conversation.messages.count()},
    )


def connection_refused(*, actor: Any, reason: str, deployment_id: Any, channel: str) -> None:
    """Every refused chat connection is audited with its reason."""
    audit_record(
        action="chat.connection_refused",
        actor=actor,
        outcome=AuditEvent.Outcome.DENIED,
        metadata={"reason": reason, "deployment": str(deployment_id)[:32], "channel": channel},
    )
