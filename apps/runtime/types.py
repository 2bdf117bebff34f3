"""The runtime's vocabulary: messages, tools, streamed events, and typed provider errors.

Every provider (openai, anthropic, local) takes a ``ProviderRequest`` and yields ``TextDelta`` and
``ToolCallRequested`` events, then exactly one ``Usage`` last. Failures are ``ProviderError``
subclasses, whatever the SDK raised, so retries, the circuit breaker and the fallback treat every
provider alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    # An assistant message that asked for tools carries the calls; a tool message answers one.
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    name: str = ""


@dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model: name, description and a JSON Schema for its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ProviderRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    timeout: float = 30.0  # seconds for the whole call, first byte to last


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallRequested:
    call: ToolCall


@dataclass(frozen=True)
class ToolResult:
    """Emitted by the engine (not providers) after it ran a tool."""

    call: ToolCall
    output: str
    error: bool = False


@dataclass(frozen=True)
class Usage:
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    latency_ms: int
    finish_reason: str = "stop"  # stop, tool_calls, length, refused


Event = TextDelta | ToolCallRequested | ToolResult | Usage


class Provider(Protocol):
    name: str

    def stream(self, request: ProviderRequest) -> AsyncIterator[Event]:
        """Yield ``TextDelta``/``ToolCallRequested`` events, then one ``Usage``; raise a
        ``ProviderError`` on failure."""
        ...

    async def aclose(self) -> None:
        """Release the HTTP client (callers close a provider when the turn is over)."""
        ...


# Errors


class ProviderError(Exception):
    kind = "unavailable"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        retry_after: float | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.retry_after = retry_after  # seconds, from Retry-After when the provider sent one
        self.status = status

    def __str__(self) -> str:
        return f"{self.provider or 'provider'} {self.kind}: {self.message}"


class AuthError(ProviderError):
    """Bad or missing credentials (401/403): fix the deployment's key."""

    kind = "auth"


class RateLimited(ProviderError):
    kind, retryable = "rate_limited", True


class ProviderTimeout(ProviderError):
    kind, retryable = "timeout", True


class Unavailable(ProviderError):
    """5xx, connection refused, DNS: the provider cannot be reached or failed."""

    kind, retryable = "unavailable", True


class BadRequest(ProviderError):
    """The provider refused the request itself (4xx other than auth and rate limits)."""

    kind = "bad_request"


class ContentRefused(ProviderError):
    """The provider's own content filter refused the input or the output."""

    kind = "content_refused"


class CircuitOpen(ProviderError):
    """The circuit breaker is open for this provider and tenant: failing fast."""

    kind = "circuit_open"
