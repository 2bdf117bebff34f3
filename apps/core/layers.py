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
waits only when ``OUTBOX`` messages are already waiting to be published). Everything else
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
            shard, channel, data = await self._outbox.get()
            try:
                await shard.publish(channel, data)
            except Exception:
                logger.warning("a group message could not be published", exc_info=True)

    async def flush(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        self._outbox = asyncio.Queue(maxsize=OUTBOX)
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
