"""Conversations over REST and Server-Sent Events.

REST: a person's conversations (list, detail, archive, delete, messages, export), sending a
message and getting the whole reply in one answer, and retrying a failed reply. SSE: the same
send, with the reply streamed as the chat protocol's events, for clients that cannot use
websockets. Every path goes through the services the websocket uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import async_to_sync, sync_to_async
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, pagination, renderers, status
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.models import ApiKey
from apps.conversations import services
from apps.conversations.api.serializers import (
    ConversationFilterInput,
    ConversationOutput,
    ExchangeOutput,
    ExportInput,
    MessageInput,
    MessageOutput,
    MessagesPageInput,
    MessagesPageOutput,
)
from apps.conversations.models import Conversation, Message
from apps.conversations.selectors import (
    conversation_messages,
    conversation_transcript,
    conversations_of,
    reply_get,
)
from apps.conversations.services import Accepted
from apps.conversations.turns import ack_event, stream_reply
from apps.core.api.authentication import ApiKeyAuthentication, SessionAuthentication
from apps.core.api.base import RolePermission, ScopedViewSet
from apps.core.api.errors import exception_handler
from apps.core.context import bound
from apps.core.exceptions import ServiceError
from apps.deployments.models import Deployment
from apps.deployments.runtime import ProviderUnavailable
from apps.deployments.selectors import deployment_get, deployments_live
from apps.tenants.db import connection
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)
T = TypeVar("T")

HEARTBEAT_SECONDS = 15.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# Plumbing shared by the views that are not DRF views (SSE here, the OpenAI-compatible API)


@dataclass(frozen=True)
class Caller:
    request: Request  # the DRF request wrapping the Django one: parsed body, user, key
    user: Any
    api_key: ApiKey | None


def authenticate(request: HttpRequest, *, allow_session: bool) -> Caller:
    """The same authentication as the DRF API: a Bearer API key of this organisation, or (when
    allowed) the session, whose POSTs must then pass the CSRF check. Raises DRF's
    ``AuthenticationFailed``, ``NotAuthenticated`` or ``PermissionDenied`` (CSRF)."""
    authenticators: list[Any] = [ApiKeyAuthentication()]
    if allow_session:
        authenticators.append(SessionAuthentication())
    wrapped = Request(request, parsers=[JSONParser()], authenticators=authenticators)
    user = wrapped.user
    if not user.is_authenticated:
        raise exceptions.NotAuthenticated()
    api_key = wrapped.auth if isinstance(wrapped.auth, ApiKey) else None
    return Caller(wrapped, user, api_key)


class _Requires:
    """What RolePermission asks a view: the permission needed (so denials are audited alike)."""

    def __init__(self, permission: str) -> None:
        self.permission = permission

    def required_permission(self) -> str:
        return self.permission


def require(caller: Caller, permission: str) -> None:
    if not RolePermission().has_permission(caller.request, _Requires(permission)):
        raise exceptions.PermissionDenied()


def error_response(exc: Exception) -> HttpResponse | None:
    """The API's JSON error for ``exc`` (a service or DRF error), or None for anything else."""
    answer = exception_handler(exc, {})
    if answer is None:
        return None
    response = HttpResponse(
        json.dumps(answer.data, cls=DjangoJSONEncoder),
        status=answer.status_code,
        content_type="application/json; charset=utf-8",
    )
    if "Retry-After" in answer:
        response["Retry-After"] = answer["Retry-After"]
    if answer.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = ApiKeyAuthentication().authenticate_header(None)  # type: ignore[arg-type]
    return response


def _in_request_schema(tenant: Tenant, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    # The router set this schema for the request's thread, but a streamed body is produced after
    # the middleware has returned; not relying on what is left on the connection keeps a reply
    # in its own tenant's schema.
    if connection.schema_name != tenant.schema_name:
        connection.set_tenant(tenant)
    return func(*args, **kwargs)


async def request_db(tenant: Tenant, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run sync ORM work on the request's own thread (its connection, its transaction in
    tests), in ``tenant``'s schema."""
    return await sync_to_async(_in_request_schema, thread_sensitive=True)(
        tenant, func, *args, **kwargs
    )


def _isolated(tenant: Tenant, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    close_old_connections()
    connection.set_tenant(tenant)
    try:
        with bound(tenant=tenant.schema_name):
            return func(*args, **kwargs)
    finally:
        connection.set_schema_to_public()
        close_old_connections()


async def detached_db(tenant: Tenant, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run sync ORM work once the request is over: the request's thread is gone with it, so
    the call takes a worker thread, sets the schema itself and closes its connection."""
    return await sync_to_async(_isolated, thread_sensitive=False)(tenant, func, *args, **kwargs)


# Replies outliving their request are referenced here, or the event loop could collect them.
_background: set[asyncio.Task[Any]] = set()


def spawn(coroutine: Any) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


def sse_frame(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, cls=DjangoJSONEncoder, ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


HEARTBEAT = b": heartbeat\n\n"
END = object()


async def queue_with_heartbeats(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    """Items of ``queue`` until the end marker, with ``HEARTBEAT`` whenever nothing came for
    ``HEARTBEAT_SECONDS`` (proxies close idle connections; a long tool call is silent)."""
    while True:
        try:
            item = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
        except TimeoutError:
            yield HEARTBEAT
            continue
        if item is END:
            return
        yield item


def _reply_interrupted(*, reply_id: int, content: str, user_id: int | None) -> None:
    if Message.objects.filter(
        pk=reply_id, status__in=[Message.Status.PENDING, Message.Status.STREAMING]
    ).exists():
        services.reply_fail(
            reply_id=reply_id,
            content=content,
            error=None,
            code="interrupted",
            message=_("The server stopped while the reply was streaming."),
            user_id=user_id,
            failures=[],
        )


class StreamedReply:
    """One reply driven by ``stream_reply`` in its own task, its events queued for one client.

    If the client goes away, the reply still runs to its end and is stored (the person finds it
    in the conversation, and the provider's tokens are not wasted): the events are then dropped
    and the database work moves off the finished request's thread."""

    def __init__(self, accepted: Accepted, *, tenant: Tenant, user_id: int | None) -> None:
        self.accepted = accepted
        self.tenant = tenant
        self.user_id = user_id
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.streamed: list[str] = []
        self.detached = False

    async def db(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.detached:
            return await detached_db(self.tenant, func, *args, **kwargs)
        return await request_db(self.tenant, func, *args, **kwargs)

    async def emit(self, event: dict[str, Any]) -> None:
        if event["type"] == "delta":
            self.streamed.append(event["text"])
        if not self.detached:
            self.queue.put_nowait(event)

    async def run(self) -> None:
        try:
            await stream_reply(self.accepted, emit=self.emit, db=self.db, user_id=self.user_id)
        except asyncio.CancelledError:
            # Only the server's shutdown cancels a reply (a client going away does not): store it
            # failed and retryable rather than streaming for ever.
            with contextlib.suppress(Exception):
                await detached_db(
                    self.tenant,
                    _reply_interrupted,
                    reply_id=self.accepted.reply.pk,
                    content="".join(self.streamed),
                    user_id=self.user_id,
                )
            raise
        except Exception:
            # stream_reply stores failures itself; this is its own storing having failed.
            logger.exception("streaming reply %s failed", self.accepted.reply.pk)
            await self.emit(
                {
                    "type": "error",
                    "reply_id": self.accepted.reply.pk,
                    "code": "internal",
                    "message": _("Something went wrong on our side. Try again."),
                    "retryable": True,
                }
            )
        finally:
            self.queue.put_nowait(END)

    async def frames(self, first: dict[str, Any]) -> AsyncIterator[bytes]:
        yield sse_frame(first)
        task = spawn(self.run())
        try:
            async for event in queue_with_heartbeats(self.queue):
                yield event if event is HEARTBEAT else sse_frame(event)
            await task
        finally:
            if not task.done():
                self.detached = True


def _stream_accept(request: HttpRequest, pk: str) -> tuple[Accepted, int | None, str]:
    caller = authenticate(request, allow_session=True)
    require(caller, "chat:use")
    if request.method != "POST":
        # After the credentials, as DRF does: who may not chat learns nothing more.
        raise exceptions.MethodNotAllowed(str(request.method))
    data = MessageInput(data=caller.request.data)
    data.is_valid(raise_exception=True)
    accepted = services.message_accept(
        user=caller.user,
        deployment=deployment_get(pk=pk),
        content=data.validated_data["content"],
        client_msg_id=data.validated_data["client_msg_id"],
        conversation_id=data.validated_data.get("conversation_id"),
    )
    return accepted, caller.user.pk, data.validated_data["client_msg_id"]


@csrf_exempt  # a Bearer key needs no CSRF token; a session's POST is checked in authenticate()
async def message_stream(request: HttpRequest, pk: str) -> HttpResponseBase:
    """``POST /api/v1/deployments/<id>/messages/stream/``: send a message and receive the reply
    as Server-Sent Events (``ack``, then ``delta``/``tool``/``revised``, then ``done`` or
    ``error``). Errors before the stream starts are the API's JSON errors."""
    tenant: Tenant = request.tenant  # type: ignore[attr-defined]
    try:
        accepted, user_id, client_msg_id = await request_db(tenant, _stream_accept, request, pk)
    except (ServiceError, exceptions.APIException) as exc:
        answer = error_response(exc)
        assert answer is not None
        if isinstance(exc, exceptions.MethodNotAllowed):
            answer["Allow"] = "POST"
        return answer
    reply = StreamedReply(accepted, tenant=tenant, user_id=user_id)
    response = StreamingHttpResponse(
        reply.frames(ack_event(accepted, client_msg_id)), content_type="text/event-stream"
    )
    for name, value in SSE_HEADERS.items():
        response[name] = value
    return response


message_stream.required_permission = "chat:use"  # type: ignore[attr-defined]


# REST


def run_reply(accepted: Accepted, *, user_id: int | None) -> dict[str, Any]:
    """Drive the reply of ``accepted`` to its end from a sync view; returns the last event
    (``done`` or ``error``). Database work runs back on the request's thread."""
    events: list[dict[str, Any]] = []

    async def emit(event: dict[str, Any]) -> None:
        events.append(event)

    async def db(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await sync_to_async(func, thread_sensitive=True)(*args, **kwargs)

    async_to_sync(stream_reply)(accepted, emit=emit, db=db, user_id=user_id)
    return events[-1]


def _exchange(accepted: Accepted, code: int) -> Response:
    reply = Message.objects.get(pk=accepted.reply.pk)
    body = {
        "conversation_id": accepted.conversation.pk,
        "message": MessageOutput(accepted.message).data,
        "reply": MessageOutput(reply).data,
    }
    return Response(body, status=code)


def _answer(accepted: Accepted, *, user_id: int | None, code: int) -> Response:
    """Run the reply and answer with the pair, or 503 when it failed (the message is kept)."""
    last = run_reply(accepted, user_id=user_id)
    if last["type"] == "error":
        raise ProviderUnavailable(
            last["message"],
            details={
                "reply_id": accepted.reply.pk,
                "message_id": accepted.message.pk,
                "conversation_id": accepted.conversation.pk,
                "kind": last["code"],
                "retryable": last["retryable"],
            },
        )
    return _exchange(accepted, code)


class DeploymentMessageViewSet(ScopedViewSet):
    """Sending a message to a deployed agent and receiving its whole reply."""

    schema_model = Deployment
    serializer_class = ExchangeOutput
    permission_map = {"create": "chat:use"}

    def scoped_queryset(self) -> QuerySet[Any]:
        return deployments_live()

    @extend_schema(
        summary="Send a message and wait for the whole reply",
        description=(
            "Starts a conversation, or continues `conversation_id`. Sending the same "
            "`client_msg_id` again returns the stored message and reply (200) without asking "
            "the agent again. When the agent's provider fails, the answer is 503 with "
            "`reply_id` and `retryable` in the details; the message is kept and the reply can "
            "be retried."
        ),
        request=MessageInput,
        responses={200: ExchangeOutput, 201: ExchangeOutput},
    )
    def create(self, request: Request, pk: str) -> Response:
        data = MessageInput(data=request.data)
        data.is_valid(raise_exception=True)
        accepted = services.message_accept(
            user=request.user,
            deployment=deployment_get(pk=pk),
            content=data.validated_data["content"],
            client_msg_id=data.validated_data["client_msg_id"],
            conversation_id=data.validated_data.get("conversation_id"),
        )
        if accepted.duplicate:
            return _exchange(accepted, status.HTTP_200_OK)
        return _answer(accepted, user_id=request.user.pk, code=status.HTTP_201_CREATED)


class ConversationPagination(pagination.CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 100
    # The most recently active first, as a chat's sidebar shows them.
    ordering = ("-updated_at", "-id")


class MarkdownRenderer(renderers.BaseRenderer):
    media_type = "text/markdown"
    format = "markdown"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        return data.encode() if isinstance(data, str) else json.dumps(data).encode()


def _markdown(conversation: Conversation, messages: list[Message]) -> str:
    lines = [
        f"# {conversation.title}",
        "",
        _("Conversation with %(agent)s, started %(started)s, exported %(exported)s.")
        % {
            "agent": conversation.deployment.name,
            "started": conversation.created_at.isoformat(timespec="seconds"),
            "exported": timezone.now().isoformat(timespec="seconds"),
        },
        "",
    ]
    names: dict[str, str] = {
        Message.Role.USER: _("You"),
        Message.Role.ASSISTANT: conversation.deployment.name,
    }
    for message in messages:
        heading = f"## {names.get(message.role, message.role)}"
        heading += f" · {message.created_at.isoformat(timespec='seconds')}"
        if message.status != Message.Status.COMPLETE:
            heading += f" ({message.get_status_display()})"
        lines += [heading, "", message.content or "_" + _("(no text)") + "_", ""]
    return "\n".join(lines)


LIST_PARAMETERS = [
    OpenApiParameter("deployment", int, description="Only conversations with this deployment."),
    OpenApiParameter("q", str, description="Words in the title or in any message."),
    OpenApiParameter("archived", bool, description="true: only archived; false: only active."),
]


@extend_schema_view(
    list=extend_schema(
        summary="Your conversations, most recently active first", parameters=LIST_PARAMETERS
    ),
    retrieve=extend_schema(summary="One of your conversations"),
    destroy=extend_schema(summary="Delete a conversation and its messages (audited)"),
)
class ConversationViewSet(ScopedViewSet):
    """A person's own conversations: nobody else's are visible, whatever their role."""

    serializer_class = ConversationOutput
    schema_model = Conversation
    pagination_class = ConversationPagination
    permission_map = {
        "list": "chat:use",
        "retrieve": "chat:use",
        "destroy": "chat:use",
        "archive": "chat:use",
        "unarchive": "chat:use",
        "messages": "chat:use",
        "export": "chat:use",
        "retry": "chat:use",
    }

    def scoped_queryset(self) -> QuerySet[Any]:
        return conversations_of(user=self.request.user)

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # ?format= picks the export's format; DRF would otherwise treat it as a renderer
        # name and answer 404 for "markdown".
        if self.action == "export":
            wanted = request.query_params.get("format", "json")
            chosen = MarkdownRenderer() if wanted == "markdown" else renderers.JSONRenderer()
            return chosen, chosen.media_type
        return super().perform_content_negotiation(request, force)

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        # Errors are JSON, whatever format an export asked for.
        self.request.accepted_renderer = renderers.JSONRenderer()
        self.request.accepted_media_type = renderers.JSONRenderer.media_type
        return response

    def _render(self, conversation: Conversation) -> Response:
        fresh = self.scoped_queryset().get(pk=conversation.pk)
        return Response(ConversationOutput(fresh).data)

    def list(self, request: Request) -> Response:
        filters = ConversationFilterInput(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        rows = conversations_of(
            user=request.user,
            deployment_id=filters.validated_data.get("deployment"),
            q=filters.validated_data["q"],
            archived=filters.validated_data["archived"],
        )
        page = self.paginate_queryset(rows)
        assert page is not None
        return self.get_paginated_response(ConversationOutput(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(ConversationOutput(self.get_object()).data)

    def destroy(self, request: Request, pk: str) -> Response:
        services.conversation_delete(conversation=self.get_object(), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="Archive", request=None, responses=ConversationOutput)
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str) -> Response:
        conversation = self.get_object()
        services.conversation_archive(conversation=conversation, user=request.user)
        return self._render(conversation)

    @extend_schema(summary="Unarchive", request=None, responses=ConversationOutput)
    @action(detail=True, methods=["post"])
    def unarchive(self, request: Request, pk: str) -> Response:
        conversation = self.get_object()
        services.conversation_archive(conversation=conversation, user=request.user, archived=False)
        return self._render(conversation)

    @extend_schema(
        summary="Messages, a page at a time from the newest",
        parameters=[
            OpenApiParameter("before", int, description="Only messages older than this id."),
            OpenApiParameter("limit", int, description="At most this many (1 to 100, 50)."),
        ],
        responses=MessagesPageOutput,
    )
    @action(detail=True, methods=["get"])
    def messages(self, request: Request, pk: str) -> Response:
        conversation = self.get_object()
        page = MessagesPageInput(data=request.query_params.dict())
        page.is_valid(raise_exception=True)
        limit = page.validated_data["limit"]
        rows, more = conversation_messages(
            conversation=conversation, before=page.validated_data["before"], limit=limit
        )
        older = None
        if more and rows:
            older = request.build_absolute_uri(f"{request.path}?before={rows[0].pk}&limit={limit}")
        return Response(
            {"results": MessageOutput(rows, many=True).data, "has_more": more, "next": older}
        )

    @extend_schema(
        summary="Export as JSON or Markdown (audited)",
        parameters=[OpenApiParameter("format", str, enum=["json", "markdown"])],
        responses={(200, "application/json"): OpenApiTypes.OBJECT, (200, "text/markdown"): str},
    )
    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk: str) -> Response:
        conversation = self.get_object()
        wanted = ExportInput(data=request.query_params.dict())
        wanted.is_valid(raise_exception=True)
        export_format = wanted.validated_data["format"]
        messages = list(conversation_transcript(conversation=conversation))
        services.conversation_exported(
            conversation=conversation, user=request.user, format=export_format
        )
        if export_format == "markdown":
            response = Response(_markdown(conversation, messages))
            extension = "md"
        else:
            response = Response(
                {
                    "conversation": ConversationOutput(conversation).data,
                    "messages": MessageOutput(messages, many=True).data,
                    "exported_at": timezone.now(),
                }
            )
            extension = "json"
        response["Content-Disposition"] = (
            f'attachment; filename="conversation-{conversation.pk}.{extension}"'
        )
        return response

    @extend_schema(
        summary="Retry a failed or cancelled reply and wait for it",
        request=None,
        responses=ExchangeOutput,
    )
    @action(detail=True, methods=["post"], url_path=r"replies/(?P<reply_id>\d+)/retry")
    def retry(self, request: Request, pk: str, reply_id: str) -> Response:
        conversation = self.get_object()
        reply = reply_get(conversation=conversation, reply_id=reply_id)
        accepted = services.reply_retry(user=request.user, reply_id=reply.pk)
        return _answer(accepted, user_id=request.user.pk, code=status.HTTP_200_OK)
