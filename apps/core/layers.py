"""The Redis channel layer of the project: channels-redis pub/sub, local members first.

With channels-redis's pub/sub layer a message to a group is one ``PUBLISH``, and every process
with a member of the group (the sender's own included) receives it back from Redis before it
hands it to its sockets. A streamed reply's events are sent by the process whose socket accepted
the message, and nearly always read by sockets of that same process, so each of them waited for
a round trip to Redis and back, and cost that process a publish, a read and a decode.

``LocalFirstPubSubLayer`` hands a group message to the group's members in its own process at
once, then publishes it for the other processes, marked with this layer's origin; a process
drops the messages it published itself when Redis delivers them back. The publishing is done by
one writer task per loop, in order, so that ``group_send`` returns without waiting for Redis (it
waits only when ``OUTBOX`` messages are already waiting to be published); what is waiting goes
to Redis in one script.

Most groups (one person's tabs on one deployment) have members in one process only, and
publishing their messages cost that process a command and, for each message, reading it back
from Redis to drop it. So each group has a set in Redis of the origins of the processes with a
member in it (added with the first member here, before ``group_add`` returns; removed with the
last; kept alive by a refresh every ``REFRESH_SECONDS`` while there are members, and expiring
``REGISTRY_EXPIRY`` seconds after a process that stopped without saying so): the script that
publishes does so only when a process other than the sender is in the set. Everything else
(specific channels, subscriptions, reconnection, serialisation) is channels-redis's own.
Delivery stays at-most-once, in order per sender, as with the parent class (docs/architecture.md,
Channel layer); a message that cannot be published is logged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
)
from channels_redis.utils import _wrap_close, decode_hosts

logger = logging.getLogger(__name__)

_ORIGIN_BYTES = 16
OUTBOX = 10_000
BATCH = 200
REFRESH_SECONDS = 600
REGISTRY_EXPIRY = 3 * REFRESH_SECONDS

# KEYS: the sets of origins of the groups of the messages; ARGV: the sender's origin, then each
# message's group channel and data. A message is published only when another process has a
# member in its group (its set holds an origin other than the sender's).
_PUBLISH = """
local sent = 0
for i, key in ipairs(KEYS) do
  local members = redis.call('SCARD', key)
  if members > 1 or (members == 1 and redis.call('SISMEMBER', key, ARGV[1]) == 0) then
    redis.call('PUBLISH', ARGV[2 * i], ARGV[2 * i + 1])
    sent = sent + 1
  end
end
return sent
"""
# KEYS[1]: a group's set of origins; ARGV: this process's origin, the set's expiry in seconds.
_REGISTER = """
redis.call('SADD', KEYS[1], ARGV[1])
return redis.call('EXPIRE', KEYS[1], ARGV[2])
"""


class _Shard(RedisSingleShardConnection):
    def _receive_message(self, message: Any) -> None:
        if message is None:
            return
        name = message["channel"]
        if isinstance(name, bytes):
            name = name.decode()
        layer: LocalFirstLoopLayer = self.channel_layer
        if name in layer.groups:
            data = message["data"]
            if data[:_ORIGIN_BYTES] == layer.origin:
                return  # ours: its members here already have it
            message = {**message, "data": data[_ORIGIN_BYTES:]}
        super()._receive_message(message)


class LocalFirstLoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.origin = uuid.uuid4().bytes
        assert len(self.origin) == _ORIGIN_BYTES
        self._shards = [_Shard(host, self) for host in decode_hosts(kwargs.get("hosts"))]
        self._outbox: asyncio.Queue[tuple[Any, str, bytes]] = asyncio.Queue(maxsize=OUTBOX)
        self._writer: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    def _registry(self, group_channel: str) -> str:
        return f"{self.prefix}__members__{group_channel}"

    async def _command(self, shard: Any, *args: Any) -> Any:
        async with shard._lock:
            shard._ensure_redis()
            return await shard._redis.execute_command(*args)

    async def _register(self, group_channel: str) -> None:
        """Name this process in the group's set (again), for ``REGISTRY_EXPIRY`` seconds."""
        shard, registry = self._get_shard(group_channel), self._registry(group_channel)
        await self._command(shard, "EVAL", _REGISTER, 1, registry, self.origin, REGISTRY_EXPIRY)

    async def _unregister(self, group_channel: str) -> None:
        shard, registry = self._get_shard(group_channel), self._registry(group_channel)
        await self._command(shard, "SREM", registry, self.origin)

    async def group_add(self, group: str, channel: str) -> None:
        group_channel = self._get_group_channel_name(group)
        first = not self.groups.get(group_channel)
        await super().group_add(group, channel)
        if first:
            # Subscribed first: a message published once the set names us reaches us.
            await self._register(group_channel)
            if self._refresher is None or self._refresher.done():
                self._refresher = asyncio.ensure_future(self._refresh())

    async def group_discard(self, group: str, channel: str) -> None:
        group_channel = self._get_group_channel_name(group)
        had = channel in self.groups.get(group_channel, ())
        await super().group_discard(group, channel)
        if had and group_channel not in self.groups:
            await self._unregister(group_channel)

    async def _refresh(self) -> None:
        """Keep the sets that name this process from expiring while it has members."""
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            for group_channel in list(self.groups):
                try:
                    await self._register(group_channel)
                except Exception:
                    logger.warning("a group's members could not be refreshed", exc_info=True)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        group_channel = self._get_group_channel_name(group)
        data = self.channel_layer.serialize(message)
        for name in self.groups.get(group_channel, ()):
            queue = self.channels.get(name)
            if queue is not None:
                queue.put_nowait(data)
        shard = self._get_shard(group_channel)
        await self._outbox.put((shard, group_channel, self.origin + data))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < BATCH and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            shards: dict[Any, list[tuple[str, bytes]]] = {}
            for shard, channel, data in batch:
                shards.setdefault(shard, []).append((channel, data))
            for shard, messages in shards.items():
                try:
                    await self._publish(shard, messages)
                except Exception:
                    logger.warning("group messages could not be published", exc_info=True)

    async def _publish(self, shard: Any, messages: list[tuple[str, bytes]]) -> None:
        """What is waiting for one shard, in one script."""
        registries = [self._registry(channel) for channel, _data in messages]
        pairs = [part for message in messages for part in message]
        await self._command(
            shard, "EVAL", _PUBLISH, len(messages), *registries, self.origin, *pairs
        )

    async def flush(self) -> None:
        for task in (self._writer, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._writer = self._refresher = None
        self._outbox = asyncio.Queue(maxsize=OUTBOX)
        for group_channel in list(self.groups):
            with contextlib.suppress(Exception):
                await self._unregister(group_channel)
        await super().flush()


class LocalFirstPubSubLayer(RedisPubSubChannelLayer):
    """channels-redis's pub/sub layer whose group messages reach this process's members first."""

    def _get_layer(self) -> LocalFirstLoopLayer:
        loop = asyncio.get_running_loop()
        try:
            return self._layers[loop]
        except KeyError:
            layer = LocalFirstLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
            return layer
