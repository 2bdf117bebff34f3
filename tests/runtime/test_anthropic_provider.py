"""AnthropicProvider through the real anthropic SDK against a local Messages API server."""

from __future__ import annotations

import time

import pytest
from anthropic import AsyncAnthropic

from apps.runtime.providers.anthropic import DEFAULT_MAX_TOKENS
from apps.runtime.types import (
    AuthError,
    BadRequest,
    ChatMessage,
    ContentRefused,
    Event,
    Provider,
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
from tests.runtime.conftest import ANTHROPIC_KEY
from tests.runtime.fake_anthropic import FakeAnthropic, Message, ToolUse

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def ask(text: str = "Hi", *, timeout: float = 5.0) -> ProviderRequest:
    return ProviderRequest(
        model="claude-test",
        messages=(ChatMessage("system", "Be brief."), ChatMessage("user", text)),
        timeout=timeout,
    )


async def collect(provider: Provider, request: ProviderRequest) -> list[Event]:
    return [event async for event in provider.stream(request)]


async def collect_until_error(
    provider: Provider, request: ProviderRequest
) -> tuple[list[Event], ProviderError]:
    events: list[Event] = []
    try:
        async for event in provider.stream(request):
            events.append(event)
    except ProviderError as error:
        return events, error
    raise AssertionError(f"expected a ProviderError, got {events}")


async def test_text_streams_in_order_and_usage_comes_once_last(fake_anthropic, anthropic_provider):
    fake_anthropic.script(
        Message(text=("Bon", "jour"), input_tokens=40, cache_read_input_tokens=60, output_tokens=3)
    )

    events = await collect(anthropic_provider, ask())

    assert events[:2] == [TextDelta("Bon"), TextDelta("jour")]
    usage = events[-1]
    assert isinstance(usage, Usage)
    assert [e for e in events if isinstance(e, Usage)] == [usage]
    # Cache reads are input the model read too.
    assert (usage.provider, usage.model, usage.input_tokens, usage.output_tokens) == (
        "anthropic",
        "claude-test",
        100,
        3,
    )
    assert usage.finish_reason == "stop"
    assert 0 <= usage.latency_ms < 5000


async def test_the_conversation_is_sent_as_the_messages_api_wants_it(
    fake_anthropic, anthropic_provider
):
    request = ProviderRequest(
        model="claude-test",
        messages=(
            ChatMessage("system", "Be brief."),
            ChatMessage("system", "Answer in French."),
            ChatMessage("user", "Weather in Paris and Oslo?"),
            ChatMessage(
                "assistant",
                "Checking.",
                tool_calls=(
                    ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Paris"}),
                    ToolCall(id="toolu_2", name="get_weather", arguments={"city": "Oslo"}),
                ),
            ),
            ChatMessage("tool", "21°C", tool_call_id="toolu_1"),
            ChatMessage("tool", "4°C", tool_call_id="toolu_2"),
            ChatMessage("user", "And tomorrow?"),
            ChatMessage("user", "   "),
        ),
        tools=(WEATHER,),
        temperature=0.3,
        max_output_tokens=300,
    )

    await collect(anthropic_provider, request)

    sent = fake_anthropic.messages[-1]
    assert sent.headers["authorization"] == f"Bearer {ANTHROPIC_KEY}"
    assert sent.body["model"] == "claude-test"
    assert sent.body["stream"] is True
    assert sent.body["max_tokens"] == 300
    assert sent.body["temperature"] == 0.3
    assert "top_p" not in sent.body
    assert sent.body["system"] == "Be brief.\n\nAnswer in French."
    assert sent.body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "input_schema": WEATHER.parameters,
        }
    ]
    assert sent.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Oslo?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
        },
        # Both results and the next question merged into one user turn, results first.
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21°C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "4°C"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]


async def test_a_request_without_a_limit_gets_the_default_and_no_optional_fields(
    fake_anthropic, anthropic_provider
):
    await collect(anthropic_provider, ProviderRequest("claude-test", (ChatMessage("user", "Hi"),)))

    body = fake_anthropic.messages[-1].body
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert not {"system", "tools", "temperature", "top_p"} & set(body)


async def test_streamed_tool_input_becomes_whole_calls(fake_anthropic, anthropic_provider):
    fake_anthropic.script(
        Message.tools(
            ToolUse("get_weather", ('{"ci', 'ty": "Pa', 'ris"}'), id="toolu_a"),
            ToolUse("ping", (), id="toolu_b"),
            text=("Let me check.",),
        )
    )

    events = await collect(anthropic_provider, ask())

    assert events[:-1] == [
        TextDelta("Let me check."),
        ToolCallRequested(ToolCall("toolu_a", "get_weather", {"city": "Paris"})),
        ToolCallRequested(ToolCall("toolu_b", "ping", {})),
    ]
    assert isinstance(events[-1], Usage)
    assert events[-1].finish_reason == "tool_calls"


async def test_tool_input_that_is_not_a_json_object_fails_as_a_bad_request(
    fake_anthropic, anthropic_provider
):
    fake_anthropic.script(Message.tools(ToolUse("get_weather", ('["Paris"]',))))

    _, error = await collect_until_error(anthropic_provider, ask())

    assert isinstance(error, BadRequest)


@pytest.mark.parametrize(
    ("reply", "expected", "status"),
    [
        (Message.error_reply(401, "authentication_error", "invalid x-api-key"), AuthError, 401),
        (Message.error_reply(403, "permission_error"), AuthError, 403),
        (Message.error_reply(429, "rate_limit_error"), RateLimited, 429),
        (Message.error_reply(500, "api_error"), Unavailable, 500),
        (Message.error_reply(529, "overloaded_error", "Overloaded"), Unavailable, 529),
        (Message.error_reply(400, "invalid_request_error", "messages: empty"), BadRequest, 400),
        (Message.error_reply(404, "not_found_error", "model: claude-nope"), BadRequest, 404),
        (Message.error_reply(413, "request_too_large"), BadRequest, 413),
    ],
)
async def test_http_errors_become_typed_errors(
    fake_anthropic, anthropic_provider, reply, expected, status
):
    fake_anthropic.script(reply)

    events, error = await collect_until_error(anthropic_provider, ask())

    assert events == []
    assert type(error) is expected
    assert (error.provider, error.status) == ("anthropic", status)
    assert error.message == reply.error_message
    assert len(fake_anthropic.messages) == 1  # the SDK's own retries are off


async def test_a_rate_limit_carries_the_servers_retry_after(fake_anthropic, anthropic_provider):
    fake_anthropic.script(Message.error_reply(429, "rate_limit_error", retry_after="12"))

    _, error = await collect_until_error(anthropic_provider, ask())

    assert isinstance(error, RateLimited)
    assert error.retry_after == 12.0


async def test_an_overloaded_error_event_mid_stream_is_unavailable(
    fake_anthropic, anthropic_provider
):
    fake_anthropic.script(Message(text=("Partial", " answer"), error_event_after=4))

    events, error = await collect_until_error(anthropic_provider, ask())

    assert events == [TextDelta("Partial")]
    assert isinstance(error, Unavailable)
    assert error.retryable


async def test_a_refusal_stop_reason_is_content_refused(fake_anthropic, anthropic_provider):
    fake_anthropic.script(Message(text=("I",), stop_reason="refusal"))

    events, error = await collect_until_error(anthropic_provider, ask())

    assert events == [TextDelta("I")]
    assert isinstance(error, ContentRefused)


async def test_max_tokens_is_reported_as_length(fake_anthropic, anthropic_provider):
    fake_anthropic.script(Message(stop_reason="max_tokens"))

    events = await collect(anthropic_provider, ask())

    assert events[-1].finish_reason == "length"


async def test_a_server_that_hangs_before_answering_times_out_within_the_timeout(
    fake_anthropic, anthropic_provider
):
    fake_anthropic.script(Message.hang())
    started = time.monotonic()

    events, error = await collect_until_error(anthropic_provider, ask(timeout=0.3))

    assert isinstance(error, ProviderTimeout)
    assert events == []
    assert 0.25 <= time.monotonic() - started < 1.2


async def test_a_stream_that_hangs_midway_times_out_within_the_timeout(
    fake_anthropic, anthropic_provider
):
    fake_anthropic.script(Message(text=("Partial", " answer"), hang_after=4))
    started = time.monotonic()

    events, error = await collect_until_error(anthropic_provider, ask(timeout=0.3))

    assert events == [TextDelta("Partial")]
    assert isinstance(error, ProviderTimeout)
    assert 0.25 <= time.monotonic() - started < 1.2


async def test_a_stream_cut_short_is_unavailable_not_a_short_reply(
    fake_anthropic, anthropic_provider
):
    fake_anthropic.script(Message(end_early=True))

    events, error = await collect_until_error(anthropic_provider, ask())

    assert events == [TextDelta("Hello"), TextDelta(" there")]
    assert isinstance(error, Unavailable)


async def test_the_fake_server_also_answers_without_streaming(fake_anthropic: FakeAnthropic):
    fake_anthropic.script(
        Message.tools(ToolUse("get_weather", ('{"city": "Oslo"}',)), text=("On it.",))
    )
    client = AsyncAnthropic(api_key=ANTHROPIC_KEY, base_url=fake_anthropic.base_url, max_retries=0)
    try:
        message = await client.messages.create(
            model="claude-test", max_tokens=100, messages=[{"role": "user", "content": "Oslo?"}]
        )
    finally:
        await client.close()

    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.usage.output_tokens == 9
