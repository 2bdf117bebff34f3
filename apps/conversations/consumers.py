"""``/ws/deployments/<id>/chat/``: chatting with a deployment over a websocket.

The protocol (version ``PROTOCOL``) is documented for clients in ``docs/api/websocket.md``.

Every socket of one user on one deployment joins the group ``chat_group(...)``, whatever process
serves it, so a reply reaches every open tab. The socket that accepted a message runs the reply
as a task of its own: the reply outlives that socket (it is stored, and the other tabs still
show it), and a ``cancel`` from any tab on any process reaches it: at once in the same process,
through a flag in Redis that the process's watcher reads every ``cancels.POLL_SECONDS`` otherwise
(``apps/conversations/cancels.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from functools import partial
from typing import Any

from channels.layers import get_channel_layer
from django.contrib.auth.models import AnonymousUser
from django.utils.translation import gettext as _

from apps.accounts.api_keys import api_key_resolve
from apps.accounts.models import ApiKey, User
from apps.accounts.permissions import has_permission
from apps.conversations import cancels, hotpath, services
from apps.conversations.models import Conversation, Message
from apps.conversations.selectors import (
    conversation_get,
    conversation_messages,
)
from apps.conversations.services import Accepted
from apps.conversations.turns import ack_event, message_event, stream_reply
from apps.core.context import client_ip_var, request_id_var, user_agent_var, user_var
from apps.core.exceptions import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceError,
    TooManyRequests,
)
from apps.deployments.models import Deployment
from apps.deployments.runtime import serving_check
from apps.deployments.selectors import deployment_get
from apps.runtime.selection import choose_provider
from apps.tenants.channels import (
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHENTICATED,
    CLOSE_UNKNOWN_HOST,
    TenantJsonConsumer,
    run_in_tenant,
)
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

PROTOCOL = 1
# Far above any message a person types (the guardrails allow a few thousand characters), far
# below the server's own limit, which closes the whole connection (1009) instead of answering.
MAX_FRAME_BYTES = 32 * 1024
HISTORY_PAGE = 50
RESUME_PAGE = 200
CLOSE_NOT_FOUND = CLOSE_UNKNOWN_HOST
CLOSE_NOT_SERVING = 4409
_MAX_ID = 2**63 - 1
_OPEN = (Message.Status.PENDING, Message.Status.STREAMING)
# Conflicts raised by ``serving_check``: the deployment cannot answer now.
_NOT_SERVING_CODES = frozenset({"version_retired"})

# Replies streaming in this process. The loop keeps only weak references to tasks, and a reply
# must not be collected because the socket that started it has gone.
_replies: set[asyncio.Task[str]] = set()


def chat_group(schema: str, user_id: int, deployment_id: int) -> str:
    """Every socket of one user on one deployment (the layer is shared by all tenants)."""
    return f"chat.{schema}.{user_id}.{deployment_id}"


async def replies_running() -> None:
    """Wait for the replies streaming in this process (tests, graceful shutdown)."""
    while _replies:
        await asyncio.wait(set(_replies))


class _Refused(Exception):
    def __init__(self, reason: str, close_code: int, message: str = "", code: str = "") -> None:
        super().__init__(reason)
        self.reason, self.close_code, self.message, self.code = reason, close_code, message, code


def _not_serving(error: Conflict) -> bool:
    return error.code in _NOT_SERVING_CODES or error.code.startswith("deployment_")


# Database work, run in the tenant's schema on a worker thread (``TenantJsonConsumer.db``).


def _record_refusal(*, actor: Any, reason: str, deployment_id: int) -> None:
    services.connection_refused(
        actor=actor, reason=reason, deployment_id=deployment_id, channel="websocket"
    )


def _record_forbidden(*, user_id: int, deployment_id: int) -> None:
    _record_refusal(
        actor=User.objects.filter(pk=user_id).first(),
        reason="forbidden",
        deployment_id=deployment_id,
    )


def _admit(*, user: Any, api_key: ApiKey | None, deployment_id: int) -> dict[str, Any]:
    """What the ``hello`` says about the deployment, or ``_Refused`` (recorded) with the reason."""
    try:
        if not has_permission(user, "chat:use", api_key=api_key):
            raise _Refused("forbidden", CLOSE_FORBIDDEN)
        deployment = _deployment(deployment_id)
        try:
            serving_check(deployment)
        except Conflict as error:
            raise _Refused("not_serving", CLOSE_NOT_SERVING, error.message, error.code) from None
    except _Refused as refused:
        _record_refusal(actor=user, reason=refused.reason, deployment_id=deployment_id)
        raise
    stored = {name: "set" for name in deployment.secrets.values_list("name", flat=True)}
    choice = choose_provider(
        provider=deployment.version.provider,
        model=deployment.version.model,
        secrets=stored,
        settings=deployment.settings,
    )
    return {"id": deployment.pk, "name": deployment.name, "offline": choice.offline}


def _deployment(deployment_id: int) -> Deployment:
    if deployment_id > _MAX_ID:  # the route takes any digits; the database would not
        raise _Refused("not_found", CLOSE_NOT_FOUND)
    try:
        return deployment_get(pk=deployment_id)
    except NotFound:
        raise _Refused("not_found", CLOSE_NOT_FOUND) from None


def _chat_user(user_id: int, api_key_id: int | None) -> User:
    """The caller as they are now: a role change, a deactivation or a revoked key counts from
    the next message on, not from the next connection."""
    api_key = None
    if api_key_id is None:
        user = User.objects.filter(pk=user_id).first()
    else:
        api_key = (
            ApiKey.objects.select_related("user").filter(pk=api_key_id, user_id=user_id).first()
        )
        user = api_key.user if api_key is not None and api_key.is_usable else None
    if user is None or not has_permission(user, "chat:use", api_key=api_key):
        raise Forbidden(_("You may no longer chat with this agent."))
    return user


def _own_reply(user: User, deployment_id: int, reply_id: int) -> Message:
    reply = Message.objects.filter(
        pk=reply_id,
        role=Message.Role.ASSISTANT,
        conversation__user=user,
        conversation__deployment_id=deployment_id,
    ).first()
    if reply is None:
        raise NotFound(_("No such reply."))
    return reply


def _retry(*, user_id: int, api_key_id: int | None, deployment_id: int, reply_id: int) -> Accepted:
    user = _chat_user(user_id, api_key_id)
    _own_reply(user, deployment_id, reply_id)
    return services.reply_retry(user=user, reply_id=reply_id)


def _cancellable(
    *, user_id: int, api_key_id: int | None, deployment_id: int, reply_id: int
) -> None:
    reply = _own_reply(_chat_user(user_id, api_key_id), deployment_id, reply_id)
    if reply.status not in _OPEN:
        raise Conflict(_("This reply is not streaming any more."), code="not_streaming")


def _conversation(user: User, deployment_id: int, conversation_id: int) -> Conversation:
    conversation = conversation_get(user=user, pk=conversation_id)
    if conversation.deployment_id != deployment_id:
        raise NotFound(_("No such conversation."))
    return conversation


def _resume(
    *, user_id: int, api_key_id: int | None, deployment_id: int, conversation_id: int, after_id: int
) -> tuple[list[dict[str, Any]], bool]:
    conversation = _conversation(_chat_user(user_id, api_key_id), deployment_id, conversation_id)
    rows = list(conversation.messages.filter(id__gt=after_id).order_by("id")[: RESUME_PAGE + 1])
    return [message_event(row) for row in rows[:RESUME_PAGE]], len(rows) > RESUME_PAGE


def _history(
    *,
    user_id: int,
    api_key_id: int | None,
    deployment_id: int,
    conversation_id: int,
    before_id: int | None,
    limit: int,
) -> tuple[list[dict[str, Any]], bool]:
    conversation = _conversation(_chat_user(user_id, api_key_id), deployment_id, conversation_id)
    page, more = conversation_messages(conversation=conversation, before=before_id, limit=limit)
    return [message_event(row) for row in page], more


def _interrupted(*, reply_id: int, content: str, user_id: int) -> bool:
    """Fail a reply that the process stopped streaming, so that it can be retried; False when it
    had already ended."""
    if not Message.objects.filter(pk=reply_id, status__in=_OPEN).exists():
        return False
    services.reply_fail(
        reply_id=reply_id,
        content=content,
        error=None,
        code="interrupted",
        message=_("The server stopped while the reply was streaming."),
        user_id=user_id,
        failures=[],
    )
    return True


# Streaming a reply to every socket of the group


async def run_reply(accepted: Accepted, *, tenant: Tenant, group: str, user_id: int) -> str:
    """Stream the reply of ``accepted`` to ``group`` until it ends; returns its final status.

    Runs as a task of its own: it does not belong to the socket that started it."""
    layer = get_channel_layer()
    assert layer is not None
    reply_id = accepted.reply.pk
    key = (tenant.schema_name, reply_id)
    db = partial(run_in_tenant, tenant)
    if accepted.retried:
        # A retry streams the same reply again: a cancel of an earlier attempt must not stop it.
        await cancels.forget(key)
    cancelled = cancels.register(key)
    streamed: list[str] = []

    async def emit(event: dict[str, Any]) -> None:
        if event["type"] == "delta":
            streamed.append(event["text"])
        await layer.group_send(group, {"type": "chat.event", "event": event})

    try:
        return await stream_reply(
            accepted,
            emit=emit,
            db=db,
            user_id=user_id,
            cancelled=cancelled,
            finish=partial(hotpath.finish, tenant=tenant),
        )
    except asyncio.CancelledError:
        # Only the event loop's shutdown cancels a reply (a user's cancel sets ``cancelled``):
        # leave it failed and retryable rather than streaming for ever.
        with contextlib.suppress(Exception):
            if await db(
                _interrupted, reply_id=reply_id, content="".join(streamed), user_id=user_id
            ):
                await emit(
                    {
                        "type": "error",
                        "reply_id": reply_id,
                        "code": "interrupted",
                        "message": _("The server restarted while answering. Try again."),
                        "retryable": True,
                    }
                )
        raise
    finally:
        cancels.unregister(key)
        if cancelled.is_set():
            with contextlib.suppress(Exception):
                await cancels.forget(key)


def _start_reply(accepted: Accepted, *, tenant: Tenant, group: str, user_id: int) -> None:
    task = asyncio.create_task(run_reply(accepted, tenant=tenant, group=group, user_id=user_id))
    _replies.add(task)
    task.add_done_callback(_reply_ended)


def _reply_ended(task: asyncio.Task[str]) -> None:
    _replies.discard(task)
    # Nobody awaits a reply: a failure it could not report to the sockets is logged here.
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.error("a streaming reply failed", exc_info=error)


# Validating what clients send


class _BadRequest(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.details = {field: [problem]}


def _optional_id(content: dict[str, Any], field: str) -> int | None:
    value = content.get(field)
    if value is None:
        return None
    # bool is an int in Python, and never an id.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ID:
        raise _BadRequest(field, _("Send a positive whole number."))
    return value


def _id(content: dict[str, Any], field: str) -> int:
    value = _optional_id(content, field)
    if value is None:
        raise _BadRequest(field, _("This field is required."))
    return value


def _text(content: dict[str, Any], field: str) -> str:
    value = content.get(field)
    if not isinstance(value, str):
        raise _BadRequest(field, _("Send a string."))
    return value


def _header(scope: dict[str, Any], wanted: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


class ChatConsumer(TenantJsonConsumer):
    """One socket of one user (signed in, or with an API key) chatting with one deployment."""

    group = ""  # empty until admitted and joined
    user_id: int = 0
    api_key_id: int | None = None
    admitted: hotpath.Admitted

    async def connect(self) -> None:
        self.deployment_id: int = self.scope["url_route"]["kwargs"]["deployment_id"]
        client = self.scope.get("client")
        # Context variables set here follow every later handler, its database calls and the
        # replies it starts: the audit trail records where refusals came from.
        request_id_var.set(uuid.uuid4().hex)
        client_ip_var.set(client[0] if client else None)
        user_agent_var.set((_header(self.scope, b"user-agent") or "")[:512])

        user, api_key, problem = await self._authenticate()
        if user is None:
            await self.db(
                _record_refusal,
                actor=problem,
                reason="unauthenticated",
                deployment_id=self.deployment_id,
            )
            await self.refuse(CLOSE_UNAUTHENTICATED)
            return
        try:
            deployment = await self.db(
                _admit, user=user, api_key=api_key, deployment_id=self.deployment_id
            )
        except _Refused as refused:
            await self._refuse(refused)
            return

        user_var.set(str(user.pk))
        self.user_id, self.api_key_id = user.pk, api_key.pk if api_key else None
        # What this socket's messages are decided on until something in it changes.
        self.admitted = await hotpath.admitted(
            tenant=self.tenant,
            user_id=self.user_id,
            api_key_id=self.api_key_id,
            deployment_id=self.deployment_id,
        )
        self.group = chat_group(self.tenant.schema_name, user.pk, self.deployment_id)
        # Joined before the hello: once a client has it, it misses nothing sent to the group.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(
            {
                "type": "hello",
                "protocol": PROTOCOL,
                "deployment": deployment,
                "user": {"id": user.pk, "email": user.email, "role": user.role},
                "auth": "api_key" if api_key else "session",
                "limits": {"max_frame_bytes": MAX_FRAME_BYTES, "history_page": HISTORY_PAGE},
            }
        )

    async def _authenticate(self) -> tuple[Any, ApiKey | None, Any]:
        """The user and key, or ``(None, None, actor to record)``. A presented key is judged on
        its own: a wrong key is not rescued by a session cookie."""
        authorization = _header(self.scope, b"authorization")
        if authorization is None:
            user = self.scope["user"]
            return (user, None, None) if user.is_authenticated else (None, None, user)
        scheme, _sep, presented = authorization.partition(" ")
        api_key = None
        if scheme.lower() == "bearer" and presented.strip():
            api_key = await self.db(api_key_resolve, presented.strip())
        if api_key is None:
            return None, None, AnonymousUser()
        return api_key.user, api_key, None

    async def _refuse(self, refused: _Refused) -> None:
        if refused.close_code != CLOSE_NOT_SERVING:
            await self.refuse(refused.close_code)
            return
        # The reason (paused, starting, retired...) is worth more to a person than a code.
        await self.accept()
        await self.send_json(
            {
                "type": "error",
                "code": "not_serving",
                "reason": refused.code,
                "message": refused.message,
                "retryable": True,
            }
        )
        await self.close(code=CLOSE_NOT_SERVING)

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = ""

    # From the client

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if not self.group:
            return  # refused: the close is on its way
        if text_data is None:
            await self._error("bad_request", _("Send JSON in text frames."))
            return
        if len(text_data) > MAX_FRAME_BYTES or len(text_data.encode()) > MAX_FRAME_BYTES:
            await self._error(
                "too_large",
                _("The frame is larger than %(n)d bytes.") % {"n": MAX_FRAME_BYTES},
                details={"max_frame_bytes": MAX_FRAME_BYTES},
            )
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self._error("bad_request", _("The frame is not valid JSON."))
            return
        kind = content.get("type") if isinstance(content, dict) else None
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self._error(
                "bad_request",
                _("Unknown message type. Send one of: %(types)s.")
                % {"types": ", ".join(self._handlers)},
            )
            return
        try:
            await handler(self, content)
        except _BadRequest as bad:
            await self._error("bad_request", _("Invalid fields."), details=bad.details)

    async def _on_message(self, content: dict[str, Any]) -> None:
        client_msg_id = _text(content, "client_msg_id")
        text = _text(content, "content")
        conversation_id = _optional_id(content, "conversation_id")
        try:
            accepted = await hotpath.accept(
                tenant=self.tenant,
                user_id=self.user_id,
                api_key_id=self.api_key_id,
                deployment_id=self.deployment_id,
                content=text,
                client_msg_id=client_msg_id,
                conversation_id=conversation_id,
                admitted=self.admitted,
            )
        except ServiceError as error:
            await self._service_error(error, client_msg_id=client_msg_id)
            return
        await self.send_json(ack_event(accepted, client_msg_id))
        if accepted.duplicate:
            # The stored reply as it is now; if it is still streaming, its ``done`` reaches this
            # socket through the group like every other tab. Never a second provider call.
            await self.send_json(message_event(accepted.reply))
            return
        # The other tabs show the message and the reply to come (this one has the ack).
        await self.channel_layer.group_send(
            self.group,
            {
                "type": "chat.events",
                "events": [message_event(accepted.message), message_event(accepted.reply)],
                "exclude": self.channel_name,
            },
        )
        _start_reply(accepted, tenant=self.tenant, group=self.group, user_id=self.user_id)

    async def _on_retry(self, content: dict[str, Any]) -> None:
        reply_id = _id(content, "reply_id")
        try:
            accepted = await self._as_caller(
                _retry,
                reply_id=reply_id,
            )
        except ServiceError as error:
            await self._service_error(error, reply_id=reply_id)
            return
        await self.channel_layer.group_send(
            self.group, {"type": "chat.event", "event": message_event(accepted.reply)}
        )
        _start_reply(accepted, tenant=self.tenant, group=self.group, user_id=self.user_id)

    async def _on_cancel(self, content: dict[str, Any]) -> None:
        reply_id = _id(content, "reply_id")
        try:
            await self._as_caller(
                _cancellable,
                reply_id=reply_id,
            )
        except ServiceError as error:
            await self._service_error(error, reply_id=reply_id)
            return
        # The reply answers with ``done`` (status ``cancelled``) to every socket of the group.
        await cancels.request((self.tenant.schema_name, reply_id))

    async def _on_resume(self, content: dict[str, Any]) -> None:
        conversation_id = _id(content, "conversation_id")
        after_id = _id(content, "after_id")
        try:
            events, more = await self._as_caller(
                _resume,
                conversation_id=conversation_id,
                after_id=after_id,
            )
        except ServiceError as error:
            await self._service_error(error)
            return
        for event in events:
            await self.send_json(event)
        await self.send_json(
            {
                "type": "resumed",
                "conversation_id": conversation_id,
                "last_id": events[-1]["id"] if events else after_id,
                "more": more,
            }
        )

    async def _on_history(self, content: dict[str, Any]) -> None:
        conversation_id = _id(content, "conversation_id")
        before_id = _optional_id(content, "before_id")
        limit = _optional_id(content, "limit") or HISTORY_PAGE
        if limit > HISTORY_PAGE:
            raise _BadRequest("limit", _("At most %(n)d.") % {"n": HISTORY_PAGE})
        try:
            messages, more = await self._as_caller(
                _history,
                conversation_id=conversation_id,
                before_id=before_id,
                limit=limit,
            )
        except ServiceError as error:
            await self._service_error(error)
            return
        await self.send_json(
            {
                "type": "history",
                "conversation_id": conversation_id,
                "messages": messages,
                "has_more": more,
            }
        )

    async def _on_ping(self, content: dict[str, Any]) -> None:
        await self.send_json({"type": "pong", "id": content.get("id")})

    async def _as_caller(self, func: Any, **fields: Any) -> Any:
        """``func`` on a database thread for this socket's user, key and deployment."""
        return await self.db(
            func,
            user_id=self.user_id,
            api_key_id=self.api_key_id,
            deployment_id=self.deployment_id,
            **fields,
        )

    _handlers = {
        "message": _on_message,
        "cancel": _on_cancel,
        "retry": _on_retry,
        "resume": _on_resume,
        "history": _on_history,
        "ping": _on_ping,
    }

    # From the group

    async def chat_event(self, message: dict[str, Any]) -> None:
        if message.get("exclude") != self.channel_name:
            await self.send_json(message["event"])

    async def chat_events(self, message: dict[str, Any]) -> None:
        if message.get("exclude") != self.channel_name:
            for event in message["events"]:
                await self.send_json(event)

    # Errors

    async def _error(
        self, code: str, message: str, *, retryable: bool = False, **fields: Any
    ) -> None:
        await self.send_json(
            {"type": "error", "code": code, "message": message, "retryable": retryable, **fields}
        )

    async def _service_error(self, error: ServiceError, **ids: Any) -> None:
        fields = {key: value for key, value in ids.items() if value is not None}
        if isinstance(error, TooManyRequests):
            await self._error(
                "rate_limited",
                error.message,
                retryable=True,
                retry_after=error.retry_after,
                **fields,
            )
        elif isinstance(error, InvalidInput):
            await self._error(
                "bad_request", error.message, reason=error.code, details=error.details, **fields
            )
        elif isinstance(error, Forbidden) and error.code == "quota_exceeded":
            await self._error(error.code, error.message, details=error.details, **fields)
        elif isinstance(error, Forbidden):
            # The role or the key no longer allows chatting: the socket goes, as a new one would
            # be refused.
            await self._error("forbidden", error.message, **fields)
            await self.db(_record_forbidden, user_id=self.user_id, deployment_id=self.deployment_id)
            await self.disconnect(CLOSE_FORBIDDEN)  # nothing more for this socket, sent or received
            await self.close(code=CLOSE_FORBIDDEN)
        elif isinstance(error, NotFound):
            await self._error("not_found", error.message, **fields)
        elif isinstance(error, Conflict) and _not_serving(error):
            await self._error(
                "not_serving", error.message, retryable=True, reason=error.code, **fields
            )
        else:
            await self._error(error.code, error.message, **fields)
