"""The OpenAI-compatible API on an organisation's host: ``POST /v1/chat/completions`` and
``GET /v1/models``, so that any OpenAI client (the official SDKs, tools built on them) can talk
to a deployed agent with a tenant API key. Documented in ``docs/api/openai.md``.

The API is stateless, like OpenAI's: the request's ``messages`` carry the history, nothing is
stored as a conversation. A call goes through what a chat message goes through — the ``chat:use``
permission (the key's scopes included), the deployment's serving check, the input guardrails,
the rate limits — and is recorded like one: a ``RuntimeCall``, failed provider attempts, and the
daily usage rows. Errors use OpenAI's shape, ``{"error": {"message", "type", "param",
"code"}}``, so clients raise their usual exceptions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions

from apps.accounts.permissions import has_permission
from apps.conversations import services
from apps.conversations.api.views import (
    END,
    HEARTBEAT,
    SSE_HEADERS,
    Caller,
    authenticate,
    queue_with_heartbeats,
    request_db,
    require,
    spawn,
)
from apps.conversations.quota import message_quota_hit, message_quota_undo
from apps.conversations.selectors import deployment_for_model, deployments_serving
from apps.core.exceptions import ServiceError, TooManyRequests
from apps.deployments.models import Deployment
from apps.deployments.runtime import (
    agent_spec,
    failure_hook,
    provider_failure_record,
    runtime_call_record,
    serving_check,
)
from apps.runtime.engine import AgentSpec, InputRefused, ReplyRevised, redacted_input, run_turn
from apps.runtime.guardrails import redact
from apps.runtime.ratelimit import rate_limit_hit
from apps.runtime.types import ChatMessage, ProviderError, TextDelta, Usage
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

CHANNEL = "openai"
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class OpenAIError(Exception):
    """An error as OpenAI reports it (status, type, code and the parameter at fault)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
        allow: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.code, self.param, self.retry_after = code, param, retry_after
        self.allow = allow

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> HttpResponse:
        response = HttpResponse(
            json.dumps(self.body()), status=self.status, content_type="application/json"
        )
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        if self.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="api"'
        if self.allow:
            response["Allow"] = self.allow
        return response


def _type_for(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def as_openai_error(exc: Exception) -> OpenAIError:
    """The OpenAI-shaped error for a refusal raised by authentication, permissions or a
    service."""
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, exceptions.NotAuthenticated):
        return OpenAIError(
            401,
            _("No API key was provided. Send it as 'Authorization: Bearer af_…'."),
            code="invalid_api_key",
        )
    if isinstance(exc, exceptions.AuthenticationFailed):
        return OpenAIError(401, str(exc.detail), code="invalid_api_key")
    if isinstance(exc, exceptions.PermissionDenied):
        return OpenAIError(
            403,
            _("This API key, or its owner's role, does not allow this request."),
            code="permission_denied",
        )
    if isinstance(exc, RequestDataTooBig):
        return OpenAIError(413, _("The request body is too large."), code="request_too_large")
    if isinstance(exc, TooManyRequests):
        return OpenAIError(
            429,
            exc.message,
            type="requests",
            code="rate_limit_exceeded",
            retry_after=exc.retry_after,
        )
    if isinstance(exc, ServiceError) and exc.code == "quota_exceeded":
        # As OpenAI answers a spent quota: the SDK raises RateLimitError, not retried as a rate.
        return OpenAIError(429, exc.message, type="insufficient_quota", code="insufficient_quota")
    if isinstance(exc, ServiceError):
        param = "messages" if exc.code == "too_long" else None
        return OpenAIError(
            exc.status, exc.message, type=_type_for(exc.status), code=exc.code, param=param
        )
    raise TypeError(f"not a refusal: {exc!r}")


# The request


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    history: tuple[ChatMessage, ...]
    text: str
    stream: bool
    include_usage: bool


def _text_of(content: Any, where: str) -> str | None:
    """A message's text: a string, or the text parts of a list of parts (None when absent, as
    in an assistant message that only called tools)."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "input_text"):
                raise OpenAIError(
                    400, _("Only text content is supported."), param=f"{where}.content"
                )
            if not isinstance(part.get("text"), str):
                raise OpenAIError(400, _("A text part needs a 'text' string."), param=where)
            texts.append(part["text"])
        return "\n".join(texts)
    raise OpenAIError(400, _("The content must be a string or a list of parts."), param=where)


def completion_request(body: Any) -> CompletionRequest:
    """Validate a chat completion request. The last message is the new message and must come
    from the user; the user and assistant messages before it are the history. System and
    developer messages are ignored: the deployment's instructions define the agent, and its
    output checks compare replies with those instructions only."""
    if not isinstance(body, dict):
        raise OpenAIError(400, _("The request body must be a JSON object."))
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIError(
            400, _("Name the deployment to talk to in 'model' (its slug)."), param="model"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise OpenAIError(400, _("'messages' must be a non-empty list."), param="messages")
    if body.get("tools") or body.get("functions"):
        raise OpenAIError(
            400,
            _("Client-side tools are not supported: the agent runs its own tools."),
            param="tools",
        )
    n = body.get("n")
    if n is not None and n != 1:
        raise OpenAIError(400, _("Only one choice (n=1) is supported."), param="n")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise OpenAIError(400, _("'stream' must be true or false."), param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise OpenAIError(400, _("'stream_options' must be an object."), param="stream_options")

    turns: list[tuple[str, str | None]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise OpenAIError(
                400, _("Each message needs a role: user, assistant or system."), param=where
            )
        turns.append((message["role"], _text_of(message.get("content"), where)))
    role, text = turns[-1]
    if role != "user" or not (text or "").strip():
        raise OpenAIError(
            400, _("The last message must be the user's, with some text."), param="messages"
        )
    history = tuple(
        ChatMessage("user" if role == "user" else "assistant", content)
        for role, content in turns[:-1]
        if role in ("user", "assistant") and content
    )
    return CompletionRequest(
        model=model,
        history=history,
        text=str(text),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
    )


# One completion


@dataclass
class Completion:
    """A completion accepted to run: everything checked, the message counted."""

    id: str
    created: int
    model: str
    deployment: Deployment
    user_id: int
    spec: AgentSpec
    history: tuple[ChatMessage, ...]
    text: str
    refused: InputRefused | None = None
    stream: bool = False
    include_usage: bool = False
    # Filled in while it runs
    parts: list[str] = field(default_factory=list)
    revised: ReplyRevised | None = None
    usage: Usage | None = None
    failures: list[Any] = field(default_factory=list)

    @property
    def content(self) -> str:
        return self.revised.text if self.revised else "".join(self.parts)

    @property
    def finish_reason(self) -> str:
        if self.refused is not None or self.revised is not None:
            return "content_filter"
        if self.usage is not None and self.usage.finish_reason == "length":
            return "length"
        return "stop"

    def usage_body(self) -> dict[str, int]:
        used_in = self.usage.input_tokens if self.usage else 0
        used_out = self.usage.output_tokens if self.usage else 0
        return {
            "prompt_tokens": used_in,
            "completion_tokens": used_out,
            "total_tokens": used_in + used_out,
        }

    async def deltas(self) -> AsyncIterator[str]:
        """The reply's text as it streams; raises ``ProviderError`` when no provider answered."""
        if self.refused is not None:
            self.parts.append(self.refused.message)
            yield self.refused.message
            return
        events = run_turn(
            self.spec,
            self.history,
            self.text,
            on_failure=failure_hook(self.deployment, self.failures),
        )
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    self.parts.append(event.text)
                    yield event.text
                elif isinstance(event, ReplyRevised):
                    self.revised = event
                elif isinstance(event, Usage):
                    self.usage = event
        finally:
            await events.aclose()


def completion_accept(request: HttpRequest) -> Completion:
    """Authenticate, validate and check a request as a chat message is checked, in this order:
    key, permission, body, model, serving, input guardrails, rate limits. Refusals of the key,
    the permission and the model are audited."""
    caller = authenticate(request, allow_session=False)
    require(caller, "chat:use")
    if request.method != "POST":
        raise _method_not_allowed(request, "POST")
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        raise OpenAIError(
            400, _("The request body is not valid JSON."), code="invalid_json"
        ) from None
    wanted = completion_request(body)
    deployment = _deployment(caller, wanted.model)
    serving_check(deployment)
    spec = agent_spec(deployment)
    checked = redacted_input(spec, wanted.text)
    refused = checked if isinstance(checked, InputRefused) else None
    if refused is not None and refused.code == "too_long":
        raise OpenAIError(400, refused.message, code="too_long", param="messages")
    user_id = caller.user.pk
    rate_limit_hit(user_id=user_id, deployment_id=deployment.pk)
    if refused is None:
        message_quota_hit()
        try:
            services.usage_record(deployment=deployment, user_id=user_id, messages=1)
        except BaseException:
            message_quota_undo()
            raise
    pii = spec.guardrails.pii_redaction
    return Completion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=deployment.slug,
        deployment=deployment,
        user_id=user_id,
        spec=spec,
        # The provider sees the history as redacted as stored conversations are.
        history=tuple(
            ChatMessage(message.role, redact(message.content, pii)[0]) for message in wanted.history
        ),
        text=wanted.text,
        refused=refused,
        stream=wanted.stream,
        include_usage=wanted.include_usage,
    )


def _deployment(caller: Caller, model: str) -> Deployment:
    deployment = deployment_for_model(model=model)
    if deployment is None:
        services.connection_refused(
            actor=caller.user, reason="unknown_model", deployment_id=model, channel=CHANNEL
        )
        raise OpenAIError(
            404,
            _("The model '%(model)s' does not exist or you do not have access to it.")
            % {"model": model},
            code="model_not_found",
            param="model",
        )
    return deployment


def completion_record(completion: Completion, error: ProviderError | None = None) -> None:
    """What the turn cost and how it failed, as the websocket records a reply. A guardrail's
    refusal called no provider and costs nothing."""
    if completion.refused is not None:
        return
    deployment = completion.deployment
    with transaction.atomic():
        for failed, attempt, provider in completion.failures:
            provider_failure_record(
                deployment=deployment, error=failed, attempt=attempt, provider=provider
            )
        runtime_call_record(
            deployment=deployment,
            user_id=completion.user_id,
            usage=None if error else completion.usage,
            error=error,
            provider=error.provider if error and error.provider else completion.spec.provider.name,
            model=completion.spec.provider.model,
        )
        if error is None and completion.usage is not None:
            services.usage_record(
                deployment=deployment,
                user_id=completion.user_id,
                tokens_in=completion.usage.input_tokens,
                tokens_out=completion.usage.output_tokens,
            )


def _provider_error(error: ProviderError) -> OpenAIError:
    return OpenAIError(
        503,
        _("The agent's provider failed (%(kind)s). Try again.") % {"kind": error.kind},
        type="server_error",
        code="provider_failed",
    )


def _internal_error() -> OpenAIError:
    return OpenAIError(
        500, _("Something went wrong on our side. It has been logged."), type="server_error"
    )


# Responses


def _completion_body(completion: Completion) -> dict[str, Any]:
    return {
        "id": completion.id,
        "object": "chat.completion",
        "created": completion.created,
        "model": completion.model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.content, "refusal": None},
                "logprobs": None,
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": completion.usage_body(),
    }


def _chunk(
    completion: Completion, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": completion.id,
        "object": "chat.completion.chunk",
        "created": completion.created,
        "model": completion.model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if completion.include_usage:
        chunk["usage"] = None  # as OpenAI does: only the last chunk carries it
    return chunk


def _data(payload: Any) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


async def _chunks(completion: Completion, tenant: Tenant) -> AsyncIterator[bytes]:
    """OpenAI's stream: a role chunk, content chunks, a chunk with the finish reason, the usage
    chunk when asked for, then ``[DONE]``. A provider failure after the stream started ends it
    with an error event, which the SDKs raise. If the client goes away, the turn is stopped:
    nothing is stored that anyone could come back to."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def produce() -> None:
        try:
            async for text in completion.deltas():
                queue.put_nowait(("delta", text))
            queue.put_nowait(("done", None))
        except ProviderError as error:
            queue.put_nowait(("failed", error))
        except Exception:
            logger.exception("completion %s failed", completion.id)
            queue.put_nowait(("broken", None))
        finally:
            queue.put_nowait(END)

    task = spawn(produce())
    try:
        yield _data(_chunk(completion, {"role": "assistant", "content": ""}))
        async for item in queue_with_heartbeats(queue):
            if item is HEARTBEAT:
                yield item
                continue
            kind, value = item
            if kind == "delta":
                yield _data(_chunk(completion, {"content": value}))
            elif kind == "failed":
                await request_db(tenant, completion_record, completion, value)
                yield _data(_provider_error(value).body())
                return
            elif kind == "broken":
                yield _data(_internal_error().body())
                return
            else:
                await request_db(tenant, completion_record, completion)
                yield _data(_chunk(completion, {}, completion.finish_reason))
                if completion.include_usage:
                    last = _chunk(completion, {})
                    last["choices"], last["usage"] = [], completion.usage_body()
                    yield _data(last)
                yield _data("[DONE]")
    finally:
        if not task.done():
            task.cancel()


# Views


@csrf_exempt  # Bearer keys only: no cookie ever authenticates here
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    """``POST /v1/chat/completions``: ``model`` is the deployment's slug."""
    tenant: Tenant = request.tenant  # type: ignore[attr-defined]
    try:
        completion = await request_db(tenant, completion_accept, request)
    except (OpenAIError, ServiceError, exceptions.APIException, RequestDataTooBig) as exc:
        return as_openai_error(exc).response()
    if completion.stream:
        response = StreamingHttpResponse(
            _chunks(completion, tenant), content_type="text/event-stream"
        )
        for name, value in SSE_HEADERS.items():
            response[name] = value
        return response
    try:
        async for _text in completion.deltas():
            pass
    except ProviderError as error:
        await request_db(tenant, completion_record, completion, error)
        return _provider_error(error).response()
    except Exception:
        logger.exception("completion %s failed", completion.id)
        return _internal_error().response()
    await request_db(tenant, completion_record, completion)
    return HttpResponse(json.dumps(_completion_body(completion)), content_type="application/json")


def _model_body(deployment: Deployment, tenant: Tenant) -> dict[str, Any]:
    return {
        "id": deployment.slug,
        "object": "model",
        "created": int(deployment.created_at.timestamp()),
        "owned_by": tenant.slug,
    }


def _models_caller(request: HttpRequest) -> Caller:
    caller = authenticate(request, allow_session=False)
    require(caller, "deployments:read")
    if request.method != "GET":
        raise _method_not_allowed(request, "GET")
    return caller


def _serving_for(caller: Caller) -> list[Deployment]:
    # The models a key may use: none when it may not chat, however many deployments it sees.
    if not has_permission(caller.user, "chat:use", api_key=caller.api_key):
        return []
    return list(deployments_serving())


def models(request: HttpRequest) -> HttpResponse:
    """``GET /v1/models``: the deployments that answer now, as models."""
    try:
        caller = _models_caller(request)
    except (OpenAIError, exceptions.APIException) as exc:
        return as_openai_error(exc).response()
    tenant: Tenant = request.tenant  # type: ignore[attr-defined]
    body = {"object": "list", "data": [_model_body(d, tenant) for d in _serving_for(caller)]}
    return HttpResponse(json.dumps(body), content_type="application/json")


def model(request: HttpRequest, model_id: str) -> HttpResponse:
    """``GET /v1/models/<id>``: one of them."""
    try:
        caller = _models_caller(request)
    except (OpenAIError, exceptions.APIException) as exc:
        return as_openai_error(exc).response()
    found = next((d for d in _serving_for(caller) if d.slug == model_id), None)
    if found is None:
        return OpenAIError(
            404,
            _("The model '%(model)s' does not exist or you do not have access to it.")
            % {"model": model_id},
            code="model_not_found",
            param="model",
        ).response()
    tenant: Tenant = request.tenant  # type: ignore[attr-defined]
    return HttpResponse(json.dumps(_model_body(found, tenant)), content_type="application/json")


@csrf_exempt
def unknown(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path under /v1/: OpenAI's answer to an unknown URL (after the key is checked,
    as for every route here)."""
    try:
        authenticate(request, allow_session=False)
    except exceptions.APIException as exc:
        return as_openai_error(exc).response()
    return OpenAIError(
        404,
        _("Unknown request URL: %(method)s %(path)s.")
        % {"method": request.method, "path": request.path},
        code="unknown_url",
    ).response()


def _method_not_allowed(request: HttpRequest, allowed: str) -> OpenAIError:
    return OpenAIError(
        405,
        _("The method %(method)s is not allowed here; use %(allowed)s.")
        % {"method": request.method, "allowed": allowed},
        code="method_not_allowed",
        allow=allowed,
    )
