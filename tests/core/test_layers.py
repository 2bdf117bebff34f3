"""The channel layer hands a group message to the sending process's members at once and to the
other processes' members through Redis: each member gets it exactly once."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio
from django.conf import settings

from apps.core.layers import LocalFirstPubSubLayer

pytestmark = pytest.mark.skipif(
    not settings.REDIS_URL, reason="the Redis channel layer needs REDIS_URL"
)


def _processes() -> tuple[LocalFirstPubSubLayer, LocalFirstPubSubLayer]:
    """The layers of two processes (each has its own origin and subscription)."""
    prefix = f"test{uuid.uuid4().hex[:8]}"
    return (
        LocalFirstPubSubLayer(hosts=[settings.REDIS_URL], prefix=prefix),
        LocalFirstPubSubLayer(hosts=[settings.REDIS_URL], prefix=prefix),
    )


async def _drain(layer: LocalFirstPubSubLayer, channel: str, wait: float) -> list[dict]:
    received = []
    while True:
        try:
            received.append(await asyncio.wait_for(layer.receive(channel), wait))
        except TimeoutError:
            return received


async def test_each_member_on_either_process_gets_a_group_message_once():
    here, there = _processes()
    group = f"chat.{uuid.uuid4().hex}"
    try:
        local_a, local_b = await here.new_channel(), await here.new_channel()
        remote = await there.new_channel()
        for layer, channel in ((here, local_a), (here, local_b), (there, remote)):
            await layer.group_add(group, channel)
        await asyncio.sleep(0.1)  # the subscriptions are in place

        for index in range(3):
            await here.group_send(group, {"type": "chat.event", "n": index})

        got_a = await _drain(here, local_a, 0.5)
        got_b = await _drain(here, local_b, 0.2)
        got_remote = await _drain(there, remote, 0.2)
    finally:
        await here.flush()
        await there.flush()
    expected = [{"type": "chat.event", "n": index} for index in range(3)]
    assert got_a == expected
    assert got_b == expected
    assert got_remote == expected


async def test_a_specific_channel_still_goes_through_redis():
    here, there = _processes()
    try:
        channel = await there.new_channel()
        await asyncio.sleep(0.1)
        await here.send(channel, {"type": "hello"})
        assert await asyncio.wait_for(there.receive(channel), 2) == {"type": "hello"}
    finally:
        await here.flush()
        await there.flush()


async def test_a_group_message_is_published_only_while_another_process_has_a_member():
    """Redis carries a group's messages only when they have somewhere else to go; a process
    joining the group gets every message sent after its ``group_add`` returned."""
    here, there = _processes()
    group = f"chat.{uuid.uuid4().hex}"
    watcher = redis.asyncio.Redis.from_url(settings.REDIS_URL)
    pubsub = watcher.pubsub()
    try:
        # What Redis publishes on the group's channel (the origin's bytes, then the message).
        await pubsub.subscribe(f"{here.prefix}__group__{group}")
        await pubsub.get_message(timeout=1)  # the subscription's confirmation

        async def published() -> int:
            count = 0
            while await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3):
                count += 1
            return count

        local = await here.new_channel()
        await here.group_add(group, local)
        await here.group_send(group, {"type": "chat.event", "n": 1})
        alone = await published()

        remote = await there.new_channel()
        await there.group_add(group, remote)
        await here.group_send(group, {"type": "chat.event", "n": 2})
        both = await published()
        got_remote = await _drain(there, remote, 0.3)

        await there.group_discard(group, remote)
        await here.group_send(group, {"type": "chat.event", "n": 3})
        alone_again = await published()
        got_local = await _drain(here, local, 0.2)
    finally:
        await pubsub.aclose()
        await watcher.aclose()
        await here.flush()
        await there.flush()
    assert (alone, both, alone_again) == (0, 1, 0)
    assert got_remote == [{"type": "chat.event", "n": 2}]
    assert got_local == [{"type": "chat.event", "n": index} for index in (1, 2, 3)]
