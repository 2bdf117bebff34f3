"""How a reply reads its turn's events (``turns._Until``): in order, a failure in its place, a
cancel at once even while the provider is silent, and never a wait that cannot end."""

from __future__ import annotations

import asyncio

import pytest

from apps.conversations.turns import _STOP, _Until


async def _events(*items, then: BaseException | None = None, hang: bool = False):
    for item in items:
        yield item
    if then is not None:
        raise then
    if hang:
        await asyncio.Event().wait()


async def _read_all(until: _Until) -> list:
    seen = []
    while (event := await until.next()) is not _STOP:
        seen.append(event)
    return seen


async def test_events_come_in_order_then_the_end():
    until = _Until(_events("a", "b", "c"), asyncio.Event())

    assert await _read_all(until) == ["a", "b", "c"]
    await until.aclose()


async def test_a_failure_comes_after_the_events_before_it():
    until = _Until(_events("a", then=ValueError("provider broke")), asyncio.Event())

    assert await until.next() == "a"
    with pytest.raises(ValueError, match="provider broke"):
        await until.next()
    await until.aclose()


async def test_a_cancel_ends_the_reading_while_the_provider_is_silent():
    cancelled = asyncio.Event()
    events = _events("a", hang=True)
    until = _Until(events, cancelled)
    assert await until.next() == "a"

    waiting = asyncio.ensure_future(until.next())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    cancelled.set()

    assert await asyncio.wait_for(waiting, timeout=2) is _STOP
    await until.aclose()
    await events.aclose()  # nothing iterates the events any more


async def test_a_turn_stopped_by_something_else_fails_the_reply_rather_than_hanging():
    until = _Until(_events("a", then=asyncio.CancelledError()), asyncio.Event())

    assert await until.next() == "a"
    with pytest.raises(RuntimeError, match="stopped before their end"):
        await asyncio.wait_for(until.next(), timeout=2)
    await until.aclose()
