"""Anthropic's Messages API, streamed.

The Messages API differs from Chat Completions in ways the conversion below absorbs: the system
prompt is a parameter, not a message; a tool's answer is a ``tool_result`` block in a *user*
message; the model's tool calls are ``tool_use`` blocks in its own message; roles must alternate,
so consecutive messages of one role are merged (tool results first, as the API requires).

Input tokens are reported as the sum of fresh, cache-written and cache-read tokens (all of them
are input the model read); output tokens come from the last ``message_delta``.
"""

from __future__ import annotations

import functools
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
from anthropic import AsyncAnthropic, AsyncStream, omit
from anthropic.types import (
    MessageParam,
    RawMessageStreamEvent,
    TextBlockParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)

from apps.runtime.resilience import (
    await_within,
    deadline_after,
    error_for_status,
    iterate_within,
    redact,
    retry_after_seconds,
)
from apps.runtime.types import (
    BadRequest,
    ChatMessage,
    ContentRefused,
    Event,
    ProviderError,
    ProviderRequest,
    ProviderTimeout,
    TextDelta,
    ToolCall,
    ToolCallRequested,
    ToolSpec,
    Unavailable,
    Usage,
)

DEFAULT_MAX_TOKENS = 4096  # the API requires a limit; a deployment without one gets this

# Error types of the API, by the status they come with; an error *event* inside a 200 stream
# carries only its type.
_STATUS_BY_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "timeout_error": 408,
    "api_error": 500,
    "overloaded_error": 529,
}

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
}


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Building the CA store costs ~50 ms of CPU; a provider is built per turn, so share it.
    return httpx2.create_ssl_context()


class AnthropicProvider:
    """``stream`` a `ProviderRequest` through the official SDK; failures are ``ProviderError``.

    The SDK's own retries are off: `apps.runtime.resilience` decides. ``temperature`` and
    ``top_p`` are sent only when the request sets them (recent models accept one, not both).
    """

    name = "anthropic"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url or "https://api.anthropic.com"
        self.default_max_tokens = default_max_tokens
        # An explicit base_url and key keep the SDK from reading the platform's environment or
        # credential profiles.
        self._client = AsyncAnthropic(
            api_key=api_key or "unset",
            base_url=self.base_url,
            max_retries=0,
            http_client=anthropic.DefaultAsyncHttpxClient(verify=_tls_context()),
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(self, request: ProviderRequest) -> AsyncIterator[Event]:
        started = time.monotonic()
        deadline = deadline_after(request.timeout)
        system, messages = to_anthropic_messages(request.messages)
        sampling: dict[str, Any] = {}
        if request.temperature is not None:
            sampling["temperature"] = request.temperature
        if request.top_p is not None:
            sampling["top_p"] = request.top_p
        try:
            events: AsyncStream[RawMessageStreamEvent] = await await_within(
                self._client.messages.create(
                    model=request.model,
                    max_tokens=request.max_output_tokens or self.default_max_tokens,
                    system=system or omit,
                    messages=messages,
                    tools=[to_anthropic_tool(tool) for tool in request.tools]
                    if request.tools
                    else omit,
                    stream=True,
                    # This SDK version no longer types the sampling parameters; the API takes them.
                    extra_body=sampling or None,
                    timeout=request.timeout,
                ),
                deadline=deadline,
                provider=self.name,
            )
        except ProviderError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc

        reply = _Reply()
        try:
            async for event in iterate_within(events, deadline=deadline, provider=self.name):
                for ours in reply.feed(event, provider=self.name):
                    yield ours
        except ProviderError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc

        if not reply.stopped:
            raise Unavailable("the stream ended before the reply was complete", provider=self.name)
        yield Usage(
            provider=self.name,
            model=request.model,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            latency_ms=round((time.monotonic() - started) * 1000),
            finish_reason=reply.finish_reason,
        )

    def _error(self, exc: Exception) -> ProviderError:
        """Our typed error for whatever the SDK or the transport raised."""
        provider = self.name
        if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
            return ProviderTimeout("the request timed out", provider=provider)
        if isinstance(exc, anthropic.APIConnectionError | httpx2.HTTPError | OSError):
            return Unavailable("the provider cannot be reached", provider=provider)
        if isinstance(exc, anthropic.APIStatusError):
            message = redact(exc.api_message or exc.message, self._api_key)
            status = exc.status_code
            if status < 400:  # an error event inside a 200 stream
                status = _STATUS_BY_ERROR_TYPE.get(exc.type or "", 500)
            error = error_for_status(
                status,
                message,
                provider=provider,
                retry_after=retry_after_seconds(exc.response.headers),
            )
            if exc.status_code < 400:
                error.status = None
            return error
        if isinstance(exc, json.JSONDecodeError):
            return Unavailable("the provider sent a malformed stream", provider=provider)
        if isinstance(exc, anthropic.AnthropicError):
            return BadRequest(redact(str(exc), self._api_key), provider=provider)
        raise exc


# Conversions


def to_anthropic_messages(
    messages: tuple[ChatMessage, ...],
) -> tuple[str, list[MessageParam]]:
    """The ``system`` parameter and the alternating ``messages`` for ``messages``."""
    system: list[str] = []
    turns: list[tuple[str, list[Any]]] = []

    def add(role: str, blocks: list[Any]) -> None:
        if not blocks:
            return  # the API refuses empty messages and empty text blocks
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))

    for message in messages:
        if message.role == "system":
            if message.content:
                system.append(message.content)
        elif message.role == "user":
            add("user", _text(message.content))
        elif message.role == "assistant":
            calls: list[ToolUseBlockParam] = [
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                for call in message.tool_calls
            ]
            add("assistant", [*_text(message.content), *calls])
        else:
            result: ToolResultBlockParam = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
            add("user", [result])

    converted: list[MessageParam] = []
    for role, blocks in turns:
        if role == "user":
            # Tool results must open the user turn that answers the tool calls.
            blocks.sort(key=lambda block: block.get("type") != "tool_result")
            converted.append({"role": "user", "content": blocks})
        else:
            converted.append({"role": "assistant", "content": blocks})
    return "\n\n".join(system), converted


def _text(content: str) -> list[TextBlockParam]:
    return [{"type": "text", "text": content}] if content.strip() else []


def to_anthropic_tool(tool: ToolSpec) -> ToolParam:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


@dataclass
class _PendingCall:
    id: str
    name: str
    initial: dict[str, Any]
    fragments: list[str] = field(default_factory=list)


@dataclass
class _Reply:
    """What the stream said so far."""

    calls: dict[int, _PendingCall] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str = "stop"
    stopped: bool = False

    def feed(self, event: RawMessageStreamEvent, *, provider: str) -> list[Event]:
        if event.type == "message_start":
            usage = event.message.usage
            self.input_tokens = (
                (usage.input_tokens or 0)
                + (usage.cache_creation_input_tokens or 0)
                + (usage.cache_read_input_tokens or 0)
            )
            self.output_tokens = usage.output_tokens or 0
        elif event.type == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                initial = block.input if isinstance(block.input, dict) else {}
                self.calls[event.index] = _PendingCall(block.id, block.name, initial)
        elif event.type == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta" and delta.text:
                return [TextDelta(delta.text)]
            if delta.type == "input_json_delta" and event.index in self.calls:
                self.calls[event.index].fragments.append(delta.partial_json)
        elif event.type == "content_block_stop":
            pending = self.calls.pop(event.index, None)
            if pending is not None:
                return [ToolCallRequested(_complete(pending, provider))]
        elif event.type == "message_delta":
            if event.usage.output_tokens is not None:
                self.output_tokens = event.usage.output_tokens
            if event.usage.input_tokens is not None:
                # Server tools can read more input mid-message; the delta then has the total.
                self.input_tokens = (
                    event.usage.input_tokens
                    + (event.usage.cache_creation_input_tokens or 0)
                    + (event.usage.cache_read_input_tokens or 0)
                )
            reason = event.delta.stop_reason
            if reason == "refusal":
                raise ContentRefused("the model refused to answer", provider=provider)
            if reason is not None:
                self.finish_reason = _FINISH_REASONS.get(reason, "stop")
        elif event.type == "message_stop":
            self.stopped = True
        return []


def _complete(pending: _PendingCall, provider: str) -> ToolCall:
    raw = "".join(pending.fragments).strip()
    if not raw:
        return ToolCall(id=pending.id, name=pending.name, arguments=pending.initial)
    try:
        arguments = json.loads(raw)
    except json.JSONDecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        raise BadRequest(
            f"the model sent arguments for tool {pending.name!r} that are not a JSON object",
            provider=provider,
        )
    return ToolCall(id=pending.id, name=pending.name, arguments=arguments)
