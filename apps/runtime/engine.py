"""One turn of an agent: guardrails on the way in, the conversation window, the provider (with
retries, the circuit breaker and the fallback), tool calls through the function-calling protocol,
and guardrails on the way out — streamed as events.

The engine knows nothing of models or schemas: the caller (the deployments and conversations
layers) builds an ``AgentSpec`` from a deployment, records usage and failures from the events and
the ``on_failure`` hook, and persists the messages.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from apps.runtime.guardrails import (
    GuardrailConfig,
    OutputContext,
    StreamingRedactor,
    check_input,
    check_output,
)
from apps.runtime.memory import fit_window
from apps.runtime.providers.local import LocalProvider
from apps.runtime.providers.registry import provider_for
from apps.runtime.resilience import FailureHook, resilient_stream
from apps.runtime.selection import ProviderChoice
from apps.runtime.tools import KnowledgeDoc, ToolContext, run_tool, tool_specs
from apps.runtime.types import (
    ChatMessage,
    Event,
    Provider,
    ProviderRequest,
    TextDelta,
    ToolCall,
    ToolCallRequested,
    ToolResult,
    Usage,
)

MAX_TOOL_ROUNDS = 4
DEFAULT_CONTEXT_BUDGET = 8_000
DEFAULT_REPLY_TOKENS = 1_024


@dataclass(frozen=True)
class AgentSpec:
    """Everything the runtime needs to serve one deployment (secrets included: never log it)."""

    deployment_id: int
    tenant_key: str  # scopes the circuit breaker: one tenant's failures never open another's
    instructions: str
    provider: ProviderChoice
    fallback: ProviderChoice | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    guardrails: GuardrailConfig = field(default_factory=GuardrailConfig)
    documents: tuple[KnowledgeDoc, ...] = ()
    allowed_hosts: frozenset[str] = frozenset()
    allow_private: bool = False
    context_budget: int = DEFAULT_CONTEXT_BUDGET
    timeout: float = 60.0

    def __repr__(self) -> str:
        return f"AgentSpec(deployment={self.deployment_id}, provider={self.provider!r})"


@dataclass(frozen=True)
class InputRefused:
    """The guardrails refused the message before any provider saw it."""

    code: str  # too_long, blocked_topic
    message: str
    text: str  # the message as it may be stored (personal data redacted)


@dataclass(frozen=True)
class ReplyRevised:
    """An output check replaced the streamed reply: show and store ``text`` instead."""

    text: str
    code: str


TurnEvent = Event | InputRefused | ReplyRevised


def _provider(choice: ProviderChoice, documents: Sequence[KnowledgeDoc]) -> Provider:
    if choice.offline:
        return LocalProvider(knowledge=documents)
    return provider_for(choice.name, api_key=choice.api_key, base_url=choice.base_url)


def redacted_input(spec: AgentSpec, text: str) -> InputRefused | str:
    """The user's message as it may be stored and sent on, or why it is refused."""
    verdict = check_input(text, spec.guardrails)
    if not verdict.allowed:
        return InputRefused(verdict.code or "refused", verdict.reason or "", verdict.text)
    return verdict.text


async def run_turn(
    spec: AgentSpec,
    history: Sequence[ChatMessage],
    user_text: str,
    *,
    on_failure: FailureHook | None = None,
) -> AsyncGenerator[TurnEvent, None]:
    """Answer ``user_text`` after ``history``. Yields text deltas (redacted), tool calls and their
    results, at most one ``ReplyRevised``, and one ``Usage`` summing every provider call, last.
    Raises ``ProviderError`` when no provider could answer (nothing is yielded twice)."""
    started = time.monotonic()
    checked = redacted_input(spec, user_text)
    if isinstance(checked, InputRefused):
        yield checked
        if checked.code == "blocked_topic":
            yield TextDelta(checked.message)
        yield Usage("guardrails", "", 0, 0, _ms(started), "refused")
        return

    system = ChatMessage("system", spec.instructions)
    window = list(
        fit_window(
            system,
            [*history, ChatMessage("user", checked)],
            spec.context_budget,
            int(spec.parameters.get("max_output_tokens") or DEFAULT_REPLY_TOKENS),
        )
    )
    primary = _provider(spec.provider, spec.documents)
    fallback = _provider(spec.fallback, spec.documents) if spec.fallback else None
    context = ToolContext(
        enabled=frozenset(spec.tools),
        documents=spec.documents,
        allowed_hosts=spec.allowed_hosts,
        allow_private=spec.allow_private,
    )
    redactor = StreamingRedactor(spec.guardrails.pii_redaction)
    reply: list[str] = []
    input_tokens = output_tokens = 0
    provider_name, model, finish = spec.provider.name, spec.provider.model, "stop"
    current_model = spec.provider.model

    try:
        for _round in range(MAX_TOOL_ROUNDS + 1):
            last_round = _round == MAX_TOOL_ROUNDS
            request = ProviderRequest(
                model=current_model,
                messages=tuple(window),
                # The last round offers no tools, so the model has to answer with what it has.
                tools=() if last_round else tool_specs(spec.tools),
                temperature=spec.parameters.get("temperature"),
                top_p=spec.parameters.get("top_p"),
                max_output_tokens=spec.parameters.get("max_output_tokens"),
                timeout=spec.timeout,
            )
            calls: list[ToolCall] = []
            round_text: list[str] = []
            async for event in resilient_stream(
                request,
                primary=primary,
                fallback=fallback,
                fallback_model=spec.fallback.model if spec.fallback else None,
                breaker_key=spec.tenant_key,
                on_failure=on_failure,
            ):
                if isinstance(event, TextDelta):
                    round_text.append(event.text)
                    safe = redactor.feed(event.text)
                    if safe:
                        reply.append(safe)
                        yield TextDelta(safe)
                elif isinstance(event, ToolCallRequested):
                    calls.append(event.call)
                elif isinstance(event, Usage):
                    input_tokens += event.input_tokens
                    output_tokens += event.output_tokens
                    provider_name, model, finish = event.provider, event.model, event.finish_reason
            if fallback is not None and provider_name == fallback.name != primary.name:
                # The fallback answered this round: it finishes the turn (the primary just
                # failed; its tool-call protocol state is the fallback's now anyway).
                await primary.aclose()
                primary, fallback = fallback, None
                current_model = spec.fallback.model if spec.fallback else current_model
            if not calls:
                break
            window.append(ChatMessage("assistant", "".join(round_text), tool_calls=tuple(calls)))
            for call in calls:
                yield ToolCallRequested(call)
                output = await run_tool(call, context)
                yield ToolResult(call, output.text, output.error)
                window.append(
                    ChatMessage("tool", output.text, tool_call_id=call.id, name=call.name)
                )

    finally:
        await primary.aclose()
        if fallback is not None:
            await fallback.aclose()
    tail = redactor.flush()
    if tail:
        reply.append(tail)
        yield TextDelta(tail)
    verdict = check_output(
        "".join(reply), OutputContext(system_prompt=spec.instructions, config=spec.guardrails)
    )
    if verdict.text != "".join(reply):
        yield ReplyRevised(verdict.text, verdict.code or "revised")
    yield Usage(provider_name, model, input_tokens, output_tokens, _ms(started), finish)


def _ms(started: float) -> int:
    # Rounded, as the providers do: truncating would make every turn look 0.5 ms shorter.
    return round((time.monotonic() - started) * 1000)
