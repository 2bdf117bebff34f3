"""OpenAI Chat Completions, and every server speaking it (vLLM, Ollama, Azure OpenAI's v1 API).

Streams with ``stream_options.include_usage`` so the last chunk carries the token counts. Tool
calls arrive as fragments keyed by ``index`` (id and name first, then pieces of the JSON
arguments); they are assembled and emitted once the model finishes, in index order, before the
``Usage``.

Arguments that are not a JSON object raise ``BadRequest``: the model broke the tool protocol,
and running a tool on a guess would be worse than failing the reply (it is not retried, since
the same prompt tends to produce the same output).
"""

from __future__ import annotations

import functools
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2
import openai
from openai import AsyncOpenAI, AsyncStream, omit
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
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
    AuthError,
    BadRequest,
    ChatMessage,
    ContentRefused,
    Event,
    ProviderError,
    ProviderRequest,
    ProviderTimeout,
    RateLimited,
    TextDelta,
    ToolCall,
    ToolCallRequested,
    ToolSpec,
    Unavailable,
    Usage,
)

MaxTokensField = Literal["max_completion_tokens", "max_tokens"]

# Azure's content filter and OpenAI's image policy answer 400 with these codes.
_CONTENT_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Building the CA store costs ~50 ms of CPU; a provider is built per turn, so share it.
    return httpx2.create_ssl_context()


class OpenAIProvider:
    """``stream`` a `ProviderRequest` through the official SDK; failures are ``ProviderError``.

    ``base_url`` points the SDK at any compatible server (``http://vllm:8000/v1``,
    ``http://ollama:11434/v1``, ``https://<resource>.openai.azure.com/openai/v1/``). The SDK's
    own retries are off: `apps.runtime.resilience` decides. ``max_tokens_field`` names the output
    limit: ``max_completion_tokens`` for OpenAI itself (its reasoning models refuse the other),
    ``max_tokens`` for other servers unless told otherwise (older servers know only that one).

    Settings the SDK would read from the environment (``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID``)
    are not used: a tenant's key must not travel with the platform's organisation.
    """

    name = "openai"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        organization: str | None = None,
        max_tokens_field: MaxTokensField | None = None,
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url or "https://api.openai.com/v1"
        self.max_tokens_field: MaxTokensField = max_tokens_field or (
            "max_completion_tokens" if base_url is None else "max_tokens"
        )
        self._client = AsyncOpenAI(
            # Local servers often need no key; the SDK refuses an empty one, the server decides.
            api_key=api_key or "unset",
            base_url=self.base_url,
            organization=organization,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(verify=_tls_context()),
        )
        self._client.organization = organization
        self._client.project = None

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(self, request: ProviderRequest) -> AsyncIterator[Event]:
        started = time.monotonic()
        deadline = deadline_after(request.timeout)
        limit = request.max_output_tokens if request.max_output_tokens is not None else omit
        try:
            chunks: AsyncStream[ChatCompletionChunk] = await await_within(
                self._client.chat.completions.create(
                    model=request.model,
                    messages=to_openai_messages(request.messages),
                    tools=[to_openai_tool(tool) for tool in request.tools]
                    if request.tools
                    else omit,
                    temperature=request.temperature if request.temperature is not None else omit,
                    top_p=request.top_p if request.top_p is not None else omit,
                    max_completion_tokens=limit
                    if self.max_tokens_field == "max_completion_tokens"
                    else omit,
                    max_tokens=limit if self.max_tokens_field == "max_tokens" else omit,
                    stream=True,
                    stream_options={"include_usage": True},
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
            async for chunk in iterate_within(chunks, deadline=deadline, provider=self.name):
                for event in reply.feed(chunk, provider=self.name):
                    yield event
        except ProviderError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc

        if reply.finish_reason is None:
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
        if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
            return ProviderTimeout("the request timed out", provider=provider)
        if isinstance(exc, openai.APIConnectionError | httpx2.HTTPError | OSError):
            return Unavailable("the provider cannot be reached", provider=provider)
        if isinstance(exc, openai.APIStatusError):
            message = redact(_api_message(exc), self._api_key)
            if exc.code in _CONTENT_FILTER_CODES:
                return ContentRefused(message, provider=provider, status=exc.status_code)
            if exc.status_code == 429 and exc.code == "insufficient_quota":
                # Billing, not load: waiting does not help.
                return AuthError(message, provider=provider, status=429)
            return error_for_status(
                exc.status_code,
                message,
                provider=provider,
                retry_after=retry_after_seconds(exc.response.headers),
            )
        if isinstance(exc, openai.APIError):
            # An error event inside a 200 stream: classify by its type or code.
            message = redact(_api_message(exc), self._api_key)
            marker = f"{exc.type or ''} {exc.code or ''}"
            if "rate_limit" in marker:
                return RateLimited(message, provider=provider)
            if any(code in marker for code in _CONTENT_FILTER_CODES):
                return ContentRefused(message, provider=provider)
            if "invalid_request" in marker:
                return BadRequest(message, provider=provider)
            return Unavailable(message, provider=provider)
        if isinstance(exc, json.JSONDecodeError):
            return Unavailable("the provider sent a malformed stream", provider=provider)
        if isinstance(exc, openai.OpenAIError):
            return BadRequest(redact(str(exc), self._api_key), provider=provider)
        raise exc


def _api_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return exc.message


# Conversions


def to_openai_messages(messages: tuple[ChatMessage, ...]) -> list[ChatCompletionMessageParam]:
    converted: list[ChatCompletionMessageParam] = []
    for message in messages:
        if message.role == "system":
            converted.append({"role": "system", "content": message.content})
        elif message.role == "user":
            if message.name:
                converted.append({"role": "user", "content": message.content, "name": message.name})
            else:
                converted.append({"role": "user", "content": message.content})
        elif message.role == "assistant":
            if message.tool_calls:
                converted.append(
                    {
                        "role": "assistant",
                        # The API wants null, not "", beside tool calls.
                        "content": message.content or None,
                        "tool_calls": [
                            {
                                "id": call.id,
                                "type": "function",
                                "function": {
                                    "name": call.name,
                                    "arguments": json.dumps(call.arguments),
                                },
                            }
                            for call in message.tool_calls
                        ],
                    }
                )
            else:
                converted.append({"role": "assistant", "content": message.content})
        else:
            converted.append(
                {"role": "tool", "content": message.content, "tool_call_id": message.tool_call_id}
            )
    return converted


def to_openai_tool(tool: ToolSpec) -> ChatCompletionFunctionToolParam:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


_FINISH_REASONS = {"length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls"}


@dataclass
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Reply:
    """What the chunks said so far."""

    calls: dict[int, _PendingCall] = field(default_factory=dict)
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0

    def feed(self, chunk: ChatCompletionChunk, *, provider: str) -> list[Event]:
        events: list[Event] = []
        if chunk.usage is not None:
            self.input_tokens = chunk.usage.prompt_tokens or 0
            self.output_tokens = chunk.usage.completion_tokens or 0
        for choice in chunk.choices:
            if choice.index != 0:  # n > 1 is never asked for
                continue
            delta = choice.delta
            if delta.refusal:
                raise ContentRefused("the model refused to answer", provider=provider)
            if delta.content:
                events.append(TextDelta(delta.content))
            for position, fragment in enumerate(delta.tool_calls or ()):
                # Some compatible servers send whole calls without an index.
                index = fragment.index if isinstance(fragment.index, int) else position
                pending = self.calls.setdefault(index, _PendingCall())
                pending.id = pending.id or (fragment.id or "")
                if fragment.function is not None:
                    pending.name = pending.name or (fragment.function.name or "")
                    if fragment.function.arguments:
                        pending.arguments.append(fragment.function.arguments)
            if choice.finish_reason is not None:
                if choice.finish_reason == "content_filter":
                    raise ContentRefused(
                        "the provider's content filter stopped the reply", provider=provider
                    )
                calls = self._complete_calls(provider)
                # Some compatible servers say "stop" after calling tools.
                self.finish_reason = (
                    "tool_calls" if calls else _FINISH_REASONS.get(choice.finish_reason, "stop")
                )
                events.extend(calls)
        return events

    def _complete_calls(self, provider: str) -> list[Event]:
        events: list[Event] = []
        for index in sorted(self.calls):
            pending = self.calls[index]
            raw = "".join(pending.arguments).strip() or "{}"
            try:
                arguments: Any = json.loads(raw)
            except json.JSONDecodeError:
                arguments = None
            if not isinstance(arguments, dict):
                raise BadRequest(
                    f"the model sent arguments for tool {pending.name!r} that are not a JSON object",
                    provider=provider,
                )
            events.append(
                ToolCallRequested(
                    ToolCall(
                        id=pending.id or f"call_{index}", name=pending.name, arguments=arguments
                    )
                )
            )
        self.calls.clear()
        return events
