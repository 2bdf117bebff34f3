"""OpenAIProvider through the real openai SDK against a local OpenAI-compatible server."""

from __future__ import annotations

import email.utils
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
from openai import AsyncOpenAI

from apps.runtime.providers.openai import OpenAIProvider
from apps.runtime.providers.registry import UnknownProvider, provider_for
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
from tests.runtime.conftest import OPENAI_KEY
from tests.runtime.fake_openai import FakeOpenAI, Reply, ToolCallReply

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def ask(
    text: str = "Hi",
    *,
    timeout: float = 5.0,
    tools: tuple[ToolSpec, ...] = (),
    max_output_tokens: int | None = None,
) -> ProviderRequest:
    return ProviderRequest(
        model="gpt-test",
        messages=(ChatMessage("system", "Be brief."), ChatMessage("user", text)),
        tools=tools,
        max_output_tokens=max_output_tokens,
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


async def test_text_streams_in_order_and_usage_comes_once_last(fake_openai, openai_provider):
    fake_openai.script(Reply(text=("Bon", "jour", "!"), prompt_tokens=31, completion_tokens=4))

    events = await collect(openai_provider, ask())

    assert events[:3] == [TextDelta("Bon"), TextDelta("jour"), TextDelta("!")]
    usage = events[-1]
    assert isinstance(usage, Usage)
    assert [e for e in events if isinstance(e, Usage)] == [usage]
    assert (usage.provider, usage.model, usage.input_tokens, usage.output_tokens) == (
        "openai",
        "gpt-test",
        31,
        4,
    )
    assert usage.finish_reason == "stop"
    assert 0 <= usage.latency_ms < 5000


async def test_the_sdk_sends_the_conversation_tools_and_streaming_options(
    fake_openai, openai_provider
):
    request = ProviderRequest(
        model="gpt-test",
        messages=(
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Weather in Paris?", name="ada"),
            ChatMessage(
                "assistant",
                "",
                tool_calls=(
                    ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"}),
                ),
            ),
            ChatMessage("tool", '{"temp": 21}', tool_call_id="call_1"),
        ),
        tools=(WEATHER,),
        temperature=0.2,
        top_p=0.9,
        max_output_tokens=256,
    )

    await collect(openai_provider, request)

    sent = fake_openai.completions[-1]
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert "openai-organization" not in sent.headers
    assert sent.body["model"] == "gpt-test"
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert (sent.body["temperature"], sent.body["top_p"]) == (0.2, 0.9)
    # A custom base_url is taken for a compatible server, which knows the older field.
    assert sent.body["max_tokens"] == 256
    assert "max_completion_tokens" not in sent.body
    assert sent.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?", "name": "ada"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_1"},
    ]


async def test_optional_parameters_are_left_out_and_the_openai_field_can_be_chosen(fake_openai):
    provider = OpenAIProvider(
        OPENAI_KEY,
        base_url=fake_openai.base_url,
        organization="org-acme",
        max_tokens_field="max_completion_tokens",
    )
    try:
        await collect(provider, ask(max_output_tokens=64))
        await collect(provider, ask())
    finally:
        await provider.aclose()

    limited, plain = fake_openai.completions
    assert limited.body["max_completion_tokens"] == 64
    assert limited.headers["openai-organization"] == "org-acme"
    assert not {"tools", "temperature", "top_p", "max_tokens", "max_completion_tokens"} & set(
        plain.body
    )


async def test_the_platforms_openai_environment_does_not_travel_with_a_tenants_key(
    fake_openai, monkeypatch
):
    monkeypatch.setenv("OPENAI_ORG_ID", "org-platform")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-platform")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    provider = OpenAIProvider(OPENAI_KEY, base_url=fake_openai.base_url)
    try:
        await collect(provider, ask())
    finally:
        await provider.aclose()

    headers = fake_openai.completions[-1].headers
    assert "openai-organization" not in headers
    assert "openai-project" not in headers


async def test_streamed_tool_call_fragments_become_whole_calls_after_the_text(
    fake_openai, openai_provider
):
    fake_openai.script(
        Reply.tools(
            ToolCallReply("get_weather", ('{"ci', 'ty": "Pa', 'ris"}'), id="call_a"),
            ToolCallReply("get_time", ('{"zone": ', '"CET"}'), id="call_b"),
            ToolCallReply("ping", ()),
            text=("Let me check.",),
        )
    )

    events = await collect(openai_provider, ask("Weather and time in Paris?", tools=(WEATHER,)))

    assert events[:-1] == [
        TextDelta("Let me check."),
        ToolCallRequested(ToolCall("call_a", "get_weather", {"city": "Paris"})),
        ToolCallRequested(ToolCall("call_b", "get_time", {"zone": "CET"})),
        ToolCallRequested(ToolCall("call_2", "ping", {})),
    ]
    assert isinstance(events[-1], Usage)
    assert events[-1].finish_reason == "tool_calls"


async def test_tool_arguments_that_are_not_a_json_object_fail_as_a_bad_request(
    fake_openai, openai_provider
):
    fake_openai.script(Reply.tools(ToolCallReply("get_weather", ('{"city": "Par',))))

    events, error = await collect_until_error(openai_provider, ask())

    assert isinstance(error, BadRequest)
    assert "get_weather" in error.message
    assert not any(isinstance(e, ToolCallRequested) for e in events)


@pytest.mark.parametrize(
    ("reply", "expected", "status"),
    [
        (Reply.error_reply(401, "Incorrect API key", type="invalid_request_error"), AuthError, 401),
        (Reply.error_reply(403, "Country not supported"), AuthError, 403),
        (Reply.error_reply(429, "Slow down", type="rate_limit_error"), RateLimited, 429),
        (Reply.error_reply(429, "No credit", code="insufficient_quota"), AuthError, 429),
        (Reply.error_reply(500), Unavailable, 500),
        (Reply.error_reply(503, "Overloaded"), Unavailable, 503),
        (Reply.error_reply(400, "Bad messages", type="invalid_request_error"), BadRequest, 400),
        (Reply.error_reply(404, "No such model"), BadRequest, 404),
        (Reply.error_reply(422, "Unprocessable"), BadRequest, 422),
        (Reply.error_reply(400, "Filtered", code="content_filter"), ContentRefused, 400),
    ],
)
async def test_http_errors_become_typed_errors(
    fake_openai, openai_provider, reply, expected, status
):
    fake_openai.script(reply)

    events, error = await collect_until_error(openai_provider, ask())

    assert events == []
    assert type(error) is expected
    assert (error.provider, error.status) == ("openai", status)
    assert error.retryable is (expected in (RateLimited, Unavailable))
    assert len(fake_openai.completions) == 1  # the SDK's own retries are off


async def test_a_401_message_quoting_the_key_is_redacted(fake_openai, openai_provider):
    fake_openai.script(Reply.error_reply(401, f"Incorrect API key provided: {OPENAI_KEY}."))

    _, error = await collect_until_error(openai_provider, ask())

    assert OPENAI_KEY not in str(error)
    assert OPENAI_KEY[:12] not in str(error)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "1"}, 0.25),
    ],
)
async def test_rate_limits_carry_the_servers_retry_after(
    fake_openai, openai_provider, headers, expected
):
    fake_openai.script(Reply(status=429, error={"message": "slow down"}, headers=headers))

    _, error = await collect_until_error(openai_provider, ask())

    assert isinstance(error, RateLimited)
    assert error.retry_after == expected


async def test_a_retry_after_date_becomes_seconds_from_now(fake_openai, openai_provider):
    later = datetime.now(UTC) + timedelta(seconds=20)
    fake_openai.script(
        Reply.error_reply(429, retry_after=email.utils.format_datetime(later, usegmt=True))
    )

    _, error = await collect_until_error(openai_provider, ask())

    assert error.retry_after is not None
    assert 17 <= error.retry_after <= 20


async def test_the_content_filter_stops_the_reply_as_content_refused(fake_openai, openai_provider):
    fake_openai.script(Reply(text=("Once upon",), finish_reason="content_filter"))

    events, error = await collect_until_error(openai_provider, ask())

    assert events == [TextDelta("Once upon")]
    assert isinstance(error, ContentRefused)
    assert not error.retryable


async def test_a_model_refusal_is_content_refused(fake_openai, openai_provider):
    fake_openai.script(Reply(text=(), refusal="I can't help with that."))

    events, error = await collect_until_error(openai_provider, ask())

    assert events == []
    assert isinstance(error, ContentRefused)


async def test_a_length_stop_is_reported_in_usage(fake_openai, openai_provider):
    fake_openai.script(Reply(text=("Very long",), finish_reason="length"))

    events = await collect(openai_provider, ask())

    assert events[-1].finish_reason == "length"


async def test_a_server_that_does_not_report_usage_gives_zero_tokens(fake_openai, openai_provider):
    fake_openai.script(Reply(report_usage=False))

    events = await collect(openai_provider, ask())

    assert isinstance(events[-1], Usage)
    assert (events[-1].input_tokens, events[-1].output_tokens) == (0, 0)


async def test_a_server_that_hangs_before_answering_times_out_within_the_timeout(
    fake_openai, openai_provider
):
    fake_openai.script(Reply.hang())
    started = time.monotonic()

    events, error = await collect_until_error(openai_provider, ask(timeout=0.3))

    elapsed = time.monotonic() - started
    assert isinstance(error, ProviderTimeout)
    assert error.retryable
    assert events == []
    assert 0.25 <= elapsed < 1.2


async def test_a_stream_that_hangs_midway_times_out_within_the_timeout(
    fake_openai, openai_provider
):
    fake_openai.script(Reply(text=("Partial", " answer"), hang_after=2))
    started = time.monotonic()

    events, error = await collect_until_error(openai_provider, ask(timeout=0.3))

    elapsed = time.monotonic() - started
    assert events == [TextDelta("Partial")]
    assert isinstance(error, ProviderTimeout)
    assert 0.25 <= elapsed < 1.2


async def test_an_error_event_mid_stream_is_unavailable(fake_openai, openai_provider):
    fake_openai.script(Reply(text=("Partial", " answer"), error_event_after=2))

    events, error = await collect_until_error(openai_provider, ask())

    assert events == [TextDelta("Partial")]
    assert isinstance(error, Unavailable)


async def test_a_stream_cut_short_is_unavailable_not_a_short_reply(fake_openai, openai_provider):
    fake_openai.script(Reply(text=("Partial",), end_early=True))

    events, error = await collect_until_error(openai_provider, ask())

    assert events == [TextDelta("Partial")]
    assert isinstance(error, Unavailable)


async def test_a_server_that_cannot_be_reached_is_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = OpenAIProvider(OPENAI_KEY, base_url=f"http://127.0.0.1:{port}/v1")
    try:
        _, error = await collect_until_error(provider, ask())
    finally:
        await provider.aclose()

    assert isinstance(error, Unavailable)
    assert error.status is None


async def test_the_registry_builds_providers_by_name(fake_openai):
    provider = provider_for("openai", api_key=OPENAI_KEY, base_url=fake_openai.base_url)
    try:
        events = await collect(provider, ask())
    finally:
        await provider.aclose()

    assert events[-1].provider == "openai"
    other = provider_for("anthropic", api_key="k")
    assert other.name == "anthropic"
    await other.aclose()
    with pytest.raises(UnknownProvider, match="LocalProvider"):
        provider_for("local", api_key="")
    with pytest.raises(UnknownProvider):
        provider_for("mistral", api_key="k")


async def test_the_fake_server_also_answers_without_streaming(fake_openai: FakeOpenAI):
    fake_openai.script(
        Reply.tools(ToolCallReply("get_weather", ('{"city": "Oslo"}',)), text=("On it.",))
    )
    client = AsyncOpenAI(api_key=OPENAI_KEY, base_url=fake_openai.base_url, max_retries=0)
    try:
        completion = await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "Oslo?"}]
        )
    finally:
        await client.close()

    message = completion.choices[0].message
    assert message.content == "On it."
    assert message.tool_calls
    assert message.tool_calls[0].function.arguments == '{"city": "Oslo"}'
    assert completion.usage.total_tokens == 18
