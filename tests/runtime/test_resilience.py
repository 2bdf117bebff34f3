"""Retries, backoff, the circuit breaker, fallback and timeouts, against the fake servers."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from django.core.cache import cache
from django.core.cache.backends.redis import RedisCache
from django_tenants.utils import schema_context

from apps.runtime.providers.openai import OpenAIProvider
from apps.runtime.resilience import (
    CircuitBreaker,
    CircuitState,
    RetryPolicy,
    _schema_free_cache,
    resilient_stream,
    retry_after_seconds,
)
from apps.runtime.types import (
    AuthError,
    BadRequest,
    ChatMessage,
    CircuitOpen,
    Event,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderTimeout,
    RateLimited,
    TextDelta,
    Unavailable,
    Usage,
)
from tests.runtime.conftest import OPENAI_KEY
from tests.runtime.fake_anthropic import Message
from tests.runtime.fake_openai import FakeOpenAI, Reply

QUESTION = "What is the secret launch date?"
NO_JITTER = RetryPolicy(random=lambda: 1.0)  # every backoff at its upper bound: 0.5, 1, 2


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeps:
    """Records the waits instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Failures:
    def __init__(self) -> None:
        self.records: list[tuple[str, int, str]] = []

    def __call__(self, error: ProviderError, attempt: int, provider: str) -> None:
        self.records.append((error.kind, attempt, provider))


@pytest.fixture(autouse=True)
def _failures_stay_out_of_the_test_output() -> Iterator[None]:
    """The settings' handler writes to the real stderr; tests that fail on purpose would flood it."""
    logger = logging.getLogger("apps.runtime.resilience")
    before, logger.propagate = logger.propagate, False
    yield
    logger.propagate = before


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, cooldown=30, probe_timeout=60, clock=clock)


@pytest.fixture
def tenant() -> str:
    """A breaker key of its own per test: the circuits live in the run's shared Redis."""
    return f"tenant-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def failures() -> Failures:
    return Failures()


def ask(*, timeout: float = 5.0) -> ProviderRequest:
    return ProviderRequest(
        model="gpt-test",
        messages=(ChatMessage("system", "Be brief."), ChatMessage("user", QUESTION)),
        timeout=timeout,
    )


async def run(
    request: ProviderRequest,
    *,
    primary: Provider,
    tenant: str,
    breaker: CircuitBreaker,
    sleeps: Sleeps,
    failures: Failures | None = None,
    policy: RetryPolicy = NO_JITTER,
    fallback: Provider | None = None,
    fallback_model: str | None = None,
) -> tuple[list[Event], ProviderError | None]:
    events: list[Event] = []
    try:
        async for event in resilient_stream(
            request,
            primary=primary,
            fallback=fallback,
            fallback_model=fallback_model,
            breaker_key=tenant,
            policy=policy,
            breaker=breaker,
            on_failure=failures,
            sleep=sleeps,
        ):
            events.append(event)
    except ProviderError as error:
        return events, error
    return events, None


def text_of(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


async def fail_until_open(fake: FakeOpenAI, provider: OpenAIProvider, tenant, breaker) -> None:
    fake.script(*[Reply.error_reply(500)] * breaker.failure_threshold)
    for _ in range(breaker.failure_threshold):
        _, error = await run(
            ask(),
            primary=provider,
            tenant=tenant,
            breaker=breaker,
            sleeps=Sleeps(),
            policy=RetryPolicy(max_retries=0),
        )
        assert isinstance(error, Unavailable)
    assert await breaker.state(f"openai:{tenant}") == CircuitState.OPEN


# Retry-After and backoff


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "Tue, 14 Nov 2023 22:13:40 GMT"}, 20.0),
        ({"retry-after": "Tue, 14 Nov 2023 22:13:00 GMT"}, 0.0),  # already past
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_as_seconds_a_date_or_milliseconds(headers, expected):
    now = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)

    assert retry_after_seconds(headers, now=lambda: now) == expected


def test_backoff_doubles_with_full_jitter_and_honours_retry_after_up_to_a_cap():
    unavailable = Unavailable("down")
    top, bottom = RetryPolicy(random=lambda: 1.0), RetryPolicy(random=lambda: 0.0)

    assert [top.delay(retry, unavailable) for retry in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert [bottom.delay(retry, unavailable) for retry in (1, 2, 3)] == [0.0, 0.0, 0.0]
    assert top.delay(4, unavailable) is None
    assert top.delay(1, BadRequest("no")) is None
    assert top.delay(1, RateLimited("slow", retry_after=3)) == 3
    assert top.delay(1, RateLimited("slow", retry_after=120)) is None


# Retries


async def test_rate_limits_and_server_errors_are_retried_until_the_reply_succeeds(
    fake_openai, openai_provider, tenant, breaker, sleeps, failures
):
    fake_openai.script(
        Reply.error_reply(500),
        Reply.error_reply(429, type="rate_limit_error", retry_after="1"),
        Reply(text=("All", " good")),
    )

    events, error = await run(
        ask(),
        primary=openai_provider,
        tenant=tenant,
        breaker=breaker,
        sleeps=sleeps,
        failures=failures,
    )

    assert error is None
    assert text_of(events) == "All good"
    assert isinstance(events[-1], Usage)
    assert len(fake_openai.completions) == 3
    # Exponential backoff for the 500, then exactly what Retry-After asked for.
    assert sleeps.delays == [0.5, 1.0]
    assert failures.records == [("unavailable", 1, "openai"), ("rate_limited", 2, "openai")]


async def test_timeouts_are_retried(
    fake_openai, openai_provider, tenant, breaker, sleeps, failures
):
    fake_openai.script(Reply.hang(), Reply(text=("Late",)))

    events, error = await run(
        ask(timeout=0.5),
        primary=openai_provider,
        tenant=tenant,
        breaker=breaker,
        sleeps=sleeps,
        failures=failures,
    )

    assert error is None
    assert text_of(events) == "Late"
    assert failures.records == [("timeout", 1, "openai")]


async def test_after_three_retries_the_last_error_is_raised(
    fake_openai, openai_provider, tenant, sleeps, failures
):
    fake_openai.script(*[Reply.error_reply(503)] * 4, Reply(text=("never asked",)))
    patient = CircuitBreaker(failure_threshold=10)

    events, error = await run(
        ask(),
        primary=openai_provider,
        tenant=tenant,
        breaker=patient,
        sleeps=sleeps,
        failures=failures,
    )

    assert isinstance(error, Unavailable)
    assert events == []
    assert len(fake_openai.completions) == 4
    assert sleeps.delays == [0.5, 1.0, 2.0]
    assert failures.records == [("unavailable", attempt, "openai") for attempt in (1, 2, 3, 4)]


async def test_every_attempt_gets_the_full_timeout_and_no_more(
    fake_openai, openai_provider, tenant, sleeps, failures
):
    fake_openai.script(*[Reply.hang()] * 4)
    started = time.monotonic()

    _, error = await run(
        ask(timeout=0.2),
        primary=openai_provider,
        tenant=tenant,
        breaker=CircuitBreaker(failure_threshold=10),
        sleeps=sleeps,
        failures=failures,
    )

    assert isinstance(error, ProviderTimeout)
    assert [kind for kind, _, _ in failures.records] == ["timeout"] * 4
    assert 0.75 <= time.monotonic() - started < 2.0


async def test_a_failure_after_text_has_streamed_is_neither_retried_nor_sent_elsewhere(
    fake_openai,
    openai_provider,
    anthropic_provider,
    fake_anthropic,
    tenant,
    breaker,
    sleeps,
    failures,
):
    fake_openai.script(Reply(text=("Partial", " answer"), error_event_after=2), Reply())

    events, error = await run(
        ask(),
        primary=openai_provider,
        fallback=anthropic_provider,
        tenant=tenant,
        breaker=breaker,
        sleeps=sleeps,
        failures=failures,
    )

    # The caller saw "Partial" once and learns the reply failed; nothing is replayed.
    assert events == [TextDelta("Partial")]
    assert isinstance(error, Unavailable)
    assert len(fake_openai.completions) == 1
    assert fake_anthropic.messages == []
    assert sleeps.delays == []
    assert failures.records == [("unavailable", 1, "openai")]


async def test_a_request_the_provider_refused_is_not_retried(
    fake_openai, openai_provider, tenant, breaker, sleeps, failures
):
    fake_openai.script(Reply.error_reply(400, "Bad messages", type="invalid_request_error"))

    _, error = await run(
        ask(),
        primary=openai_provider,
        tenant=tenant,
        breaker=breaker,
        sleeps=sleeps,
        failures=failures,
    )

    assert isinstance(error, BadRequest)
    assert len(fake_openai.completions) == 1
    assert sleeps.delays == []
    assert failures.records == [("bad_request", 1, "openai")]


async def test_a_retry_after_beyond_the_cap_is_not_waited_for(
    fake_openai, openai_provider, tenant, breaker, sleeps
):
    fake_openai.script(Reply.error_reply(429, retry_after="120"), Reply())

    _, error = await run(
        ask(), primary=openai_provider, tenant=tenant, breaker=breaker, sleeps=sleeps
    )

    assert isinstance(error, RateLimited)
    assert error.retry_after == 120
    assert len(fake_openai.completions) == 1
    assert sleeps.delays == []


async def test_a_provider_ignoring_its_timeout_is_cut_off(tenant, breaker, sleeps, failures):
    class Stuck:
        name = "stuck"

        async def stream(self, request: ProviderRequest) -> AsyncIterator[Event]:
            yield TextDelta("thinking")
            await asyncio.sleep(30)

        async def aclose(self) -> None:
            pass

    started = time.monotonic()

    events, error = await run(
        ask(timeout=0.2),
        primary=Stuck(),
        tenant=tenant,
        breaker=breaker,
        sleeps=sleeps,
        failures=failures,
        policy=RetryPolicy(max_retries=0),
    )

    assert events == [TextDelta("thinking")]
    assert isinstance(error, ProviderTimeout)
    assert error.provider == "stuck"
    assert time.monotonic() - started < 1.0
    assert failures.records == [("timeout", 1, "stuck")]


# The circuit breaker


async def test_the_circuit_opens_after_consecutive_failures_and_then_fails_fast(
    fake_openai, openai_provider, tenant, breaker, sleeps, failures
):
    await fail_until_open(fake_openai, openai_provider, tenant, breaker)
    sent = len(fake_openai.completions)

    events, error = await run(
        ask(),
        primary=openai_provider,
        tenant=tenant,
        breaker=breaker,
        sleeps=sleeps,
        failures=failures,
    )

    assert isinstance(error, CircuitOpen)
    assert error.provider == "openai"
    assert error.retry_after == pytest.approx(30)
    assert events == []
    assert len(fake_openai.completions) == sent  # no request left the process
    assert failures.records == [("circuit_open", 1, "openai")]
    assert sleeps.delays == []


async def test_after_the_cooldown_a_successful_probe_closes_the_circuit(
    fake_openai, openai_provider, tenant, breaker, clock, sleeps
):
    await fail_until_open(fake_openai, openai_provider, tenant, breaker)
    clock.advance(29)
    assert await breaker.state(f"openai:{tenant}") == CircuitState.OPEN
    clock.advance(1)
    assert await breaker.state(f"openai:{tenant}") == CircuitState.HALF_OPEN
    sent = len(fake_openai.completions)

    probe, probe_error = await run(
        ask(), primary=openai_provider, tenant=tenant, breaker=breaker, sleeps=sleeps
    )
    after, after_error = await run(
        ask(), primary=openai_provider, tenant=tenant, breaker=breaker, sleeps=sleeps
    )

    assert (probe_error, after_error) == (None, None)
    assert text_of(probe) == text_of(after) == "Hello there"
    assert await breaker.state(f"openai:{tenant}") == CircuitState.CLOSED
    assert len(fake_openai.completions) == sent + 2


async def test_a_failed_probe_opens_the_circuit_for_another_cooldown(
    fake_openai, openai_provider, tenant, breaker, clock, sleeps
):
    await fail_until_open(fake_openai, openai_provider, tenant, breaker)
    clock.advance(30)
    fake_openai.script(Reply.error_reply(502), Reply())
    sent = len(fake_openai.completions)

    _, probe_error = await run(
        ask(), primary=openai_provider, tenant=tenant, breaker=breaker, sleeps=sleeps
    )

    # The probe's retry already meets the re-opened circuit.
    assert isinstance(probe_error, CircuitOpen)
    assert len(fake_openai.completions) == sent + 1
    assert await breaker.state(f"openai:{tenant}") == CircuitState.OPEN
    clock.advance(29)
    _, error = await run(
        ask(), primary=openai_provider, tenant=tenant, breaker=breaker, sleeps=sleeps
    )
    assert isinstance(error, CircuitOpen)
    assert len(fake_openai.completions) == sent + 1
    clock.advance(1)
    assert await breaker.state(f"openai:{tenant}") == CircuitState.HALF_OPEN


async def test_only_one_probe_goes_through_at_a_time(tenant, breaker, clock):
    circuit = f"openai:{tenant}"
    for _ in range(3):
        await breaker.record_failure(circuit)
    clock.advance(30)

    assert await breaker.before_call(circuit) is True
    with pytest.raises(CircuitOpen):
        await breaker.before_call(circuit)
    # A probe that never reported back frees the next one after probe_timeout.
    clock.advance(60)
    assert await breaker.before_call(circuit) is True


async def test_a_success_resets_the_count_of_consecutive_failures(tenant, breaker):
    circuit = f"openai:{tenant}"
    for _ in range(2):
        await breaker.record_failure(circuit)
    await breaker.record_success(circuit)
    for _ in range(2):
        await breaker.record_failure(circuit)

    assert await breaker.state(circuit) == CircuitState.CLOSED


async def test_refused_requests_do_not_open_the_circuit(
    fake_openai, openai_provider, tenant, breaker, sleeps
):
    fake_openai.script(*[Reply.error_reply(400)] * 4)

    for _ in range(4):
        _, error = await run(
            ask(), primary=openai_provider, tenant=tenant, breaker=breaker, sleeps=sleeps
        )
        assert isinstance(error, BadRequest)

    assert await breaker.state(f"openai:{tenant}") == CircuitState.CLOSED


async def test_circuits_are_per_provider_and_tenant(
    fake_openai, openai_provider, tenant, breaker, sleeps
):
    await fail_until_open(fake_openai, openai_provider, tenant, breaker)

    events, error = await run(
        ask(), primary=openai_provider, tenant=f"{tenant}-other", breaker=breaker, sleeps=sleeps
    )

    assert error is None
    assert text_of(events) == "Hello there"
    assert await breaker.state(f"anthropic:{tenant}") == CircuitState.CLOSED


async def test_the_circuit_is_shared_between_processes_through_the_cache(tenant, clock):
    web, worker = CircuitBreaker(failure_threshold=2, clock=clock), CircuitBreaker(clock=clock)
    circuit = f"anthropic:{tenant}"

    await web.record_failure(circuit)
    await web.record_failure(circuit)

    with pytest.raises(CircuitOpen):
        await worker.before_call(circuit)


async def test_the_breaker_works_in_process_when_the_cache_is_down(tenant, clock):
    unreachable = RedisCache(
        "redis://127.0.0.1:1/0", {"OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2}}
    )
    breaker = CircuitBreaker(failure_threshold=2, cache=unreachable, clock=clock)
    circuit = f"openai:{tenant}"
    started = time.monotonic()

    await breaker.record_failure(circuit)
    await breaker.record_failure(circuit)

    with pytest.raises(CircuitOpen):
        await breaker.before_call(circuit)
    assert time.monotonic() - started < 2.0


def test_circuit_keys_do_not_depend_on_the_schema_in_use():
    """A consumer (public schema), a tenant request and a worker must find the same circuit."""
    with schema_context("acme"):
        in_tenant = (_schema_free_cache().make_key("k"), cache.make_key("k"))
    in_public = (_schema_free_cache().make_key("k"), cache.make_key("k"))

    assert in_tenant[0] == in_public[0]
    assert in_tenant[1] != in_public[1]  # why the breaker does not use the default key function


# Fallback


async def test_the_fallback_answers_when_the_primary_is_down(
    fake_openai, openai_provider, fake_anthropic, anthropic_provider, tenant, sleeps, failures
):
    fake_openai.script(*[Reply.error_reply(500)] * 4)
    fake_anthropic.script(Message(text=("From", " Claude")))

    events, error = await run(
        ask(),
        primary=openai_provider,
        fallback=anthropic_provider,
        fallback_model="claude-fallback",
        tenant=tenant,
        breaker=CircuitBreaker(failure_threshold=10),
        sleeps=sleeps,
        failures=failures,
    )

    assert error is None
    assert text_of(events) == "From Claude"
    usage = events[-1]
    assert isinstance(usage, Usage)
    assert (usage.provider, usage.model) == ("anthropic", "claude-fallback")
    assert fake_anthropic.messages[0].body["model"] == "claude-fallback"
    assert fake_anthropic.messages[0].body["system"] == "Be brief."
    assert failures.records == [("unavailable", attempt, "openai") for attempt in (1, 2, 3, 4)]


async def test_the_fallback_is_used_at_once_while_the_primary_circuit_is_open(
    fake_openai,
    openai_provider,
    fake_anthropic,
    anthropic_provider,
    tenant,
    breaker,
    sleeps,
    failures,
):
    await fail_until_open(fake_openai, openai_provider, tenant, breaker)
    sent = len(fake_openai.completions)

    events, error = await run(
        ask(),
        primary=openai_provider,
        fallback=anthropic_provider,
        fallback_model="claude-fallback",
        tenant=tenant,
        breaker=breaker,
        sleeps=sleeps,
        failures=failures,
    )

    assert error is None
    assert events[-1].provider == "anthropic"
    assert len(fake_openai.completions) == sent
    assert failures.records == [("circuit_open", 1, "openai")]
    assert sleeps.delays == []


async def test_the_fallback_is_retried_and_its_last_error_raised_when_both_are_down(
    fake_openai, openai_provider, fake_anthropic, anthropic_provider, tenant, sleeps, failures
):
    fake_openai.script(*[Reply.error_reply(500)] * 2)
    fake_anthropic.script(*[Message.error_reply(529, "overloaded_error", "Overloaded")] * 2)

    _, error = await run(
        ask(),
        primary=openai_provider,
        fallback=anthropic_provider,
        tenant=tenant,
        breaker=CircuitBreaker(failure_threshold=10),
        sleeps=sleeps,
        failures=failures,
        policy=RetryPolicy(max_retries=1, random=lambda: 1.0),
    )

    assert isinstance(error, Unavailable)
    assert error.provider == "anthropic"
    assert error.status == 529
    assert failures.records == [
        ("unavailable", 1, "openai"),
        ("unavailable", 2, "openai"),
        ("unavailable", 1, "anthropic"),
        ("unavailable", 2, "anthropic"),
    ]


async def test_no_fallback_for_a_wrong_key(
    fake_openai, openai_provider, fake_anthropic, anthropic_provider, tenant, breaker, sleeps
):
    fake_openai.script(Reply.error_reply(401, "Incorrect API key"))

    _, error = await run(
        ask(),
        primary=openai_provider,
        fallback=anthropic_provider,
        tenant=tenant,
        breaker=breaker,
        sleeps=sleeps,
    )

    assert isinstance(error, AuthError)
    assert fake_anthropic.messages == []


# Recording


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def runtime_log() -> Iterator[_Capture]:
    logger = logging.getLogger("apps.runtime.resilience")
    handler, level = _Capture(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_every_failure_is_logged_with_its_type_and_no_key_or_content(
    fake_openai, openai_provider, tenant, sleeps, failures, runtime_log
):
    fake_openai.script(
        Reply.error_reply(401, f"Incorrect API key provided: {OPENAI_KEY}"),
        Reply.error_reply(500, f"failed on: {QUESTION}"),
        Reply.error_reply(429, retry_after="1"),
        Reply(),
    )
    breaker = CircuitBreaker(failure_threshold=10)

    await run(
        ask(),
        primary=openai_provider,
        tenant=tenant,
        breaker=breaker,
        sleeps=sleeps,
        failures=failures,
    )
    await run(
        ask(),
        primary=openai_provider,
        tenant=tenant,
        breaker=breaker,
        sleeps=sleeps,
        failures=failures,
    )

    failed = [r for r in runtime_log.records if r.getMessage() == "provider call failed"]
    assert [(r.levelno, r.__dict__["provider"], r.__dict__["kind"]) for r in failed] == [
        (logging.WARNING, "openai", "auth"),
        (logging.WARNING, "openai", "unavailable"),
        (logging.WARNING, "openai", "rate_limited"),
    ]
    assert [kind for kind, _, _ in failures.records] == ["auth", "unavailable", "rate_limited"]
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in runtime_log.records)
    assert OPENAI_KEY not in logged
    assert QUESTION not in logged


async def test_a_caller_that_stops_reading_early_leaves_the_circuit_alone(
    fake_openai, openai_provider, tenant, breaker, sleeps
):
    stream = resilient_stream(
        ask(), primary=openai_provider, breaker_key=tenant, breaker=breaker, sleep=sleeps
    )
    first = await anext(stream)
    await stream.aclose()

    assert first == TextDelta("Hello")
    assert await breaker.state(f"openai:{tenant}") == CircuitState.CLOSED
