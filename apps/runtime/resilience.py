"""Calling providers without letting one slow or failing provider take a deployment down.

``resilient_stream`` wraps a provider call with, in order:

- a **circuit breaker** per provider and tenant (`CircuitBreaker`): after ``failure_threshold``
  consecutive failed attempts of a retryable kind it fails fast (``CircuitOpen``, no request
  leaves the process) for ``cooldown`` seconds, then lets one probe through (half-open); the
  probe's success closes it, its failure re-opens it for another cool-down. The state lives in
  Django's cache (Redis in production) so every web and worker process sees the same circuit.
- a **deadline** of ``request.timeout`` seconds per attempt, first byte to last, as a guard
  around providers (which enforce it themselves with `await_within` / `iterate_within`).
- **retries** of rate limits, timeouts and unavailability (``ProviderError.retryable``), at most
  ``RetryPolicy.max_retries``, waiting what the provider's ``Retry-After`` asked or else an
  exponential backoff with full jitter — but only while nothing of that attempt has reached the
  caller: once text has streamed, a failure propagates (replaying would duplicate the text).
- an optional **fallback** provider, tried once the primary has failed with one of
  `FALLBACK_KINDS` before producing any output.

Every failed attempt is reported to ``on_failure`` and logged at WARNING with its ``provider``
and ``kind``; neither the log nor this module ever sees API keys, and message contents are not
logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.utils.module_loading import import_string

from apps.runtime.types import (
    AuthError,
    BadRequest,
    CircuitOpen,
    Event,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderTimeout,
    RateLimited,
    Unavailable,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

FailureHook = Callable[[ProviderError, int, str], None]
"""Called with the error, the attempt number (1-based, per provider) and the provider's name."""

Sleep = Callable[[float], Awaitable[None]]

# A bad request, a refusal or a wrong key would fail the same way on another provider or must be
# fixed by the tenant's admin; hiding them behind a fallback would only delay that.
FALLBACK_KINDS = frozenset({"unavailable", "timeout", "rate_limited", "circuit_open"})

# Our guard fires only when a provider does not enforce the deadline itself; the grace keeps it
# from racing the provider's own timeout (two timers expiring together is needless noise).
GUARD_GRACE_MAX_SECONDS = 1.0


# Deadlines


async def await_within(awaitable: Awaitable[T], *, deadline: float, provider: str) -> T:
    """Await ``awaitable`` until ``deadline`` (event-loop time), else raise ``ProviderTimeout``."""
    scope = asyncio.timeout_at(deadline)
    try:
        async with scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise ProviderTimeout(
                "no complete answer within the timeout", provider=provider
            ) from None
        raise


async def iterate_within(
    events: AsyncIterator[T], *, deadline: float, provider: str
) -> AsyncGenerator[T, None]:
    """Yield from ``events`` until ``deadline`` (event-loop time), else raise ``ProviderTimeout``.

    Time the consumer spends between items counts towards the deadline, but only the wait for
    the next item is ever cancelled: a timeout scope spanning a ``yield`` would cancel whatever
    the consumer happens to be awaiting. ``events`` is closed however this ends.
    """
    try:
        while True:
            try:
                item = await await_within(anext(events), deadline=deadline, provider=provider)
            except StopAsyncIteration:
                return
            yield item
    finally:
        await _aclose(events)


async def _aclose(events: AsyncIterator[object]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()


def deadline_after(seconds: float) -> float:
    """The event-loop time ``seconds`` from now, for `await_within` and `iterate_within`."""
    return asyncio.get_running_loop().time() + seconds


# Classifying failures (shared by the providers)


def retry_after_seconds(
    headers: Mapping[str, str], *, now: Callable[[], datetime] | None = None
) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date).

    ``headers`` must look names up case-insensitively (httpx's headers do). None when absent or
    unreadable; a date in the past is 0.
    """
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        with contextlib.suppress(ValueError):
            return max(0.0, float(milliseconds) / 1000)
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is read as such
        when = when.replace(tzinfo=UTC)
    current = now() if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


_KEY_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-*]{3})[A-Za-z0-9_\-*]+")
_MESSAGE_LIMIT = 300


def redact(message: str, api_key: str) -> str:
    """A provider's error message without the key (401s quote it) or anything key-like, short."""
    if api_key:
        message = message.replace(api_key, "[redacted]")
    return _KEY_LIKE.sub(r"\1…", message)[:_MESSAGE_LIMIT]


def error_for_status(
    status: int, message: str, *, provider: str, retry_after: float | None = None
) -> ProviderError:
    """The typed error for an HTTP error status, the same for every provider."""
    cls: type[ProviderError]
    if status in (401, 403, 402):
        # 402: no credit left on the account; retrying cannot help, the admin must act.
        cls = AuthError
    elif status == 429:
        cls = RateLimited
    elif status == 408:
        cls = ProviderTimeout
    elif status == 409 or status >= 500:
        # 409 is a transient conflict (a lock on the provider's side); its SDKs retry it too.
        cls = Unavailable
    else:
        cls = BadRequest
    return cls(message, provider=provider, status=status, retry_after=retry_after)


# Retries


def _jitter() -> float:
    return random.random()  # noqa: S311 -- spreading retries, not a secret


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before retrying a retryable failure."""

    max_retries: int = 3
    base_delay: float = 0.5  # seconds; the n-th retry waits up to base_delay * 2**(n-1)
    max_delay: float = 8.0
    # A provider that asks for a longer pause is not retried: waiting would hold the reply that
    # long, and retrying sooner than asked only collects another 429.
    max_retry_after: float = 30.0
    random: Callable[[], float] = field(default=_jitter, compare=False)

    def delay(self, retry: int, error: ProviderError) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based); None: do not retry."""
        if retry > self.max_retries or not error.retryable:
            return None
        if error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_retry_after else None
        # Full jitter: concurrent callers hit by the same outage spread over the whole window.
        return self.random() * min(self.max_delay, self.base_delay * 2 ** (retry - 1))


# The circuit breaker


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def _schema_free_cache(alias: str = DEFAULT_CACHE_ALIAS) -> BaseCache:
    """The ``alias`` cache, without the tenant-schema key function.

    The project's key function prefixes keys with the schema active on the database connection,
    which differs between a websocket consumer (public), a tenant request and a worker task; a
    breaker key already names its tenant, so the same circuit must be found from all of them.
    """
    params: dict[str, Any] = dict(settings.CACHES[alias])
    params.pop("KEY_FUNCTION", None)
    params.pop("REVERSE_KEY_FUNCTION", None)
    backend = import_string(params.pop("BACKEND"))
    cache: BaseCache = backend(params.pop("LOCATION", ""), params)
    return cache


class CircuitBreaker:
    """Circuit state per key (``"<provider>:<tenant>"``), shared across processes by a cache.

    Closed: calls go through; ``record_failure`` counts consecutive failures and
    ``record_success`` resets the count (`resilient_stream` reports failures of a retryable kind
    as failures, and any answer, a refusal included, as a success). At ``failure_threshold`` consecutive failures the circuit opens:
    ``before_call`` raises ``CircuitOpen`` until ``cooldown`` seconds have passed. Then it is
    half-open: one caller (chosen atomically with ``cache.add``) may probe; if its call does not
    report back within ``probe_timeout`` seconds another may. The probe's success closes the
    circuit, its failure opens it for another cool-down.

    Each failed *attempt* counts, so with the default retry policy one failing call counts up to
    four times. State left untouched for ``state_ttl`` seconds is forgotten.

    ``clock`` gives wall-clock seconds (shared between processes, unlike a monotonic clock);
    tests inject their own. If the shared cache fails, the breaker keeps working on an in-process
    cache for ``cache_retry_after`` seconds before trying the shared one again.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        probe_timeout: float = 60.0,
        state_ttl: int = 3600,
        cache: BaseCache | None = None,
        clock: Callable[[], float] = time.time,
        cache_retry_after: float = 30.0,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.probe_timeout = probe_timeout
        # Unused state expires; it must outlive a cool-down or an open circuit would silently close.
        self.state_ttl = max(state_ttl, int(cooldown + probe_timeout) * 2)
        self.clock = clock
        self.cache_retry_after = cache_retry_after
        self._cache = cache
        self._local = LocMemCache("runtime-circuits", {"OPTIONS": {"MAX_ENTRIES": 10000}})
        self._shared_down_until = 0.0
        self._lock = threading.Lock()

    # Public, async: each runs its cache round trips in one worker thread.

    async def before_call(self, key: str) -> bool:
        """Raise ``CircuitOpen`` if the call must not be made; True if it is the half-open probe."""
        return await sync_to_async(self._before_call, thread_sensitive=False)(key)

    async def record_success(self, key: str) -> None:
        await sync_to_async(self._record_success, thread_sensitive=False)(key)

    async def record_failure(self, key: str) -> None:
        await sync_to_async(self._record_failure, thread_sensitive=False)(key)

    async def state(self, key: str) -> CircuitState:
        return await sync_to_async(self._state, thread_sensitive=False)(key)

    # Synchronous core

    def _keys(self, key: str) -> tuple[str, str]:
        base = f"runtime:circuit:{key}"
        return f"{base}:failures", f"{base}:opened"

    def _state(self, key: str) -> CircuitState:
        _, opened_key = self._keys(key)
        opened = self._on_cache(lambda cache: cache.get(opened_key))
        if opened is None:
            return CircuitState.CLOSED
        return (
            CircuitState.OPEN if self.clock() < opened + self.cooldown else CircuitState.HALF_OPEN
        )

    def _before_call(self, key: str) -> bool:
        _, opened_key = self._keys(key)
        opened = self._on_cache(lambda cache: cache.get(opened_key))
        if opened is None:
            return False
        provider = key.split(":", 1)[0]
        now = self.clock()
        closes_at = opened + self.cooldown
        if now < closes_at:
            raise CircuitOpen(
                "failing fast after repeated failures",
                provider=provider,
                retry_after=closes_at - now,
            )
        # One probe per probe_timeout window: a probe that never reports back frees the next one.
        window = int((now - closes_at) // self.probe_timeout)
        probe_key = f"runtime:circuit:{key}:probe:{opened!r}:{window}"
        if self._on_cache(lambda cache: cache.add(probe_key, 1, self.state_ttl)):
            logger.info("circuit half-open, probing", extra={"provider": provider, "circuit": key})
            return True
        raise CircuitOpen(
            "failing fast while another call probes the provider",
            provider=provider,
            retry_after=self.probe_timeout - (now - closes_at) % self.probe_timeout,
        )

    def _record_success(self, key: str) -> None:
        failures_key, opened_key = self._keys(key)
        # Read first: the common case (nothing to reset) then costs no write.
        found = self._on_cache(lambda cache: cache.get_many([failures_key, opened_key]))
        if not found:
            return
        self._on_cache(lambda cache: cache.delete_many([failures_key, opened_key]))
        if opened_key in found:
            logger.info(
                "circuit closed",
                extra={"provider": key.split(":", 1)[0], "circuit": key},
            )

    def _record_failure(self, key: str) -> None:
        failures_key, opened_key = self._keys(key)

        def count(cache: BaseCache) -> int:
            cache.add(failures_key, 0, self.state_ttl)
            try:
                return int(cache.incr(failures_key))
            except ValueError:  # expired between add and incr
                cache.set(failures_key, 1, self.state_ttl)
                return 1

        failures = self._on_cache(count)
        now = self.clock()
        opened = self._on_cache(lambda cache: cache.get(opened_key))
        provider = key.split(":", 1)[0]
        if opened is not None:
            if now >= opened + self.cooldown:  # the half-open probe failed
                self._on_cache(lambda cache: cache.set(opened_key, now, self.state_ttl))
                logger.warning("circuit re-opened", extra={"provider": provider, "circuit": key})
            return
        # add, not set: concurrent failures must not keep pushing the cool-down back.
        if failures >= self.failure_threshold and self._on_cache(
            lambda cache: cache.add(opened_key, now, self.state_ttl)
        ):
            logger.warning("circuit opened", extra={"provider": provider, "circuit": key})

    def _on_cache(self, operation: Callable[[BaseCache], T]) -> T:
        if time.monotonic() >= self._shared_down_until:
            try:
                return operation(self._shared_cache())
            except Exception:
                # Redis down must not take the runtime down: each process keeps its own circuit.
                logger.warning(
                    "circuit breaker cache unavailable; using in-process state", exc_info=True
                )
                self._shared_down_until = time.monotonic() + self.cache_retry_after
        return operation(self._local)

    def _shared_cache(self) -> BaseCache:
        with self._lock:
            if self._cache is None:
                self._cache = _schema_free_cache()
            return self._cache


_default_breaker: CircuitBreaker | None = None


def default_breaker() -> CircuitBreaker:
    """The process-wide breaker with default thresholds."""
    global _default_breaker
    if _default_breaker is None:
        _default_breaker = CircuitBreaker()
    return _default_breaker


# The resilient call


def _record(error: ProviderError, attempt: int, provider: str, hook: FailureHook | None) -> None:
    logger.warning(
        "provider call failed",
        extra={
            "provider": provider,
            "kind": error.kind,
            "attempt": attempt,
            "status": error.status,
            "retry_after": error.retry_after,
        },
    )
    if hook is not None:
        hook(error, attempt, provider)


@dataclass
class _Progress:
    streamed: bool = False


async def _attempts(
    request: ProviderRequest,
    provider: Provider,
    *,
    circuit: str,
    policy: RetryPolicy,
    breaker: CircuitBreaker,
    on_failure: FailureHook | None,
    sleep: Sleep,
    progress: _Progress,
) -> AsyncIterator[Event]:
    """One provider's attempts: breaker check, deadline, retries while nothing has streamed. A
    provider that runs in this process (``remote = False``: the offline ``local`` one) has no
    upstream to protect and no circuit: its calls skip the breaker's shared-cache round trips."""
    guarded = getattr(provider, "remote", True)
    attempt = 0
    while True:
        attempt += 1
        try:
            if guarded:
                await breaker.before_call(circuit)
        except CircuitOpen as error:
            _record(error, attempt, provider.name, on_failure)
            raise
        grace = min(GUARD_GRACE_MAX_SECONDS, request.timeout / 2)
        deadline = deadline_after(request.timeout + grace)
        try:
            async for event in iterate_within(
                provider.stream(request), deadline=deadline, provider=provider.name
            ):
                progress.streamed = True
                yield event
        except ProviderError as error:
            error.provider = error.provider or provider.name
            if not guarded:
                pass
            elif error.retryable:
                await breaker.record_failure(circuit)
            else:
                # The provider answered, it just refused this request: it is up.
                await breaker.record_success(circuit)
            _record(error, attempt, provider.name, on_failure)
            delay = None if progress.streamed else policy.delay(attempt, error)
            if delay is None:
                raise
            await sleep(delay)
            continue
        if guarded:
            await breaker.record_success(circuit)
        return


async def resilient_stream(
    request: ProviderRequest,
    *,
    primary: Provider,
    fallback: Provider | None = None,
    fallback_model: str | None = None,
    breaker_key: str,
    policy: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
    on_failure: FailureHook | None = None,
    sleep: Sleep = asyncio.sleep,
) -> AsyncGenerator[Event, None]:
    """Stream ``request`` from ``primary``, retrying and falling back as the module describes.

    ``breaker_key`` scopes the circuits, normally the tenant (its schema or id); the circuit of a
    provider is ``f"{provider.name}:{breaker_key}"``. Add the deployment to it when deployments
    of one tenant reach different endpoints under the same provider name (two OpenAI-compatible
    servers, say).

    ``fallback`` receives the same request with ``model`` replaced by ``fallback_model`` when
    given (a model name rarely means anything to another provider). It has its own circuit and
    retries, and is used only if the primary failed with one of `FALLBACK_KINDS` before yielding
    anything.

    Raises the last ``ProviderError`` when nothing more can be tried.
    """
    policy = policy or RetryPolicy()
    breaker = breaker or default_breaker()
    chain: list[tuple[Provider, ProviderRequest]] = [(primary, request)]
    if fallback is not None:
        fallback_request = (
            dataclasses.replace(request, model=fallback_model) if fallback_model else request
        )
        chain.append((fallback, fallback_request))

    for position, (provider, provider_request) in enumerate(chain):
        progress = _Progress()
        try:
            async for event in _attempts(
                provider_request,
                provider,
                circuit=f"{provider.name}:{breaker_key}",
                policy=policy,
                breaker=breaker,
                on_failure=on_failure,
                sleep=sleep,
                progress=progress,
            ):
                yield event
            return
        except ProviderError as error:
            last = position == len(chain) - 1
            if last or progress.streamed or error.kind not in FALLBACK_KINDS:
                raise
            logger.warning(
                "falling back to another provider",
                extra={
                    "provider": provider.name,
                    "kind": error.kind,
                    "fallback": chain[-1][0].name,
                },
            )
