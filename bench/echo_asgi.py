"""The yardstick of bench/chat.py: a bare Channels websocket echo, served the way `manage.py serve`
serves the product (one uvicorn process, ``websockets-sansio``, no lifespan, uvloop when installed).

Any websocket path: ``hello`` on connect; for each ``{"type": "message", ...}`` an ``ack``, one
``delta`` and a ``done``, each padded to the size (UTF-8 bytes of the JSON text) that the bench
measured on the platform and passes in ``ECHO_ACK_BYTES``, ``ECHO_DELTA_BYTES``,
``ECHO_DONE_BYTES``. No Django project, database, middleware, authentication or tenant.

``ECHO_CHANNEL_LAYER``: ``none`` (default: the consumer has no channel layer and sends its
frames itself), or ``redis`` / ``memory``: each socket joins a group of its own and the
``delta`` and ``done`` go through ``group_send``, as the platform's reply events do
(channels-redis with the product's settings: ``REDIS_URL``, ``CHANNEL_LAYER_KIND``,
``CHANNEL_LAYER_CAPACITY``).

``ECHO_STORE``: ``none`` (default), or ``postgres``: the least that the chat issue's rules ask
of any design, and nothing more. Before the ``ack``, one Redis round trip that counts the message
(``INCR`` and ``EXPIRE`` in one pipeline, as a rate limit does) and one committed ``INSERT`` of
the message (its id is the ``ack``'s); before ``done``, one committed ``UPDATE`` that stores the
reply. PostgreSQL is ``ECHO_DATABASE_URL`` (a table ``bench_echo_message (id bigserial primary
key, content text, reply text)`` that the bench creates), Redis is ``REDIS_URL``; statements are
prepared, connections kept (four per process), as the product's own are.

Run (the bench does)::

    .venv/bin/python bench/echo_asgi.py --host 127.0.0.1 --port 8001

Plain HTTP answers ``GET /healthz`` with 200 and anything else with 404.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import django
from django.conf import settings

PROTOCOL = 1
_VOCABULARY = (
    "the vpn client connect network password reset printer queue wifi laptop email calendar "
    "open settings restart check cable account portal ticket helpdesk device update install "
    "windows macos browser security code phone sign in out guide step first then again and "
    "with for from your this that when if not a an to of on in is are be it you can will"
)
_WORDS = _VOCABULARY.split()


def _layers() -> dict[str, Any]:
    mode = os.environ.get("ECHO_CHANNEL_LAYER", "none").strip().lower()
    if mode == "none":
        return {}
    if mode == "memory":
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    if mode == "redis":
        url = os.environ.get("REDIS_URL", "")
        if not url:
            raise SystemExit("ECHO_CHANNEL_LAYER=redis needs REDIS_URL")
        prefix = f"{os.environ.get('CACHE_KEY_PREFIX', '')}echo"
        if os.environ.get("CHANNEL_LAYER_KIND", "pubsub") == "pubsub":  # as the product
            return {
                "default": {
                    "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                    "CONFIG": {"hosts": [url], "prefix": prefix},
                }
            }
        return {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [url],
                    "capacity": int(os.environ.get("CHANNEL_LAYER_CAPACITY", "1500")),
                    "expiry": 60,
                    "prefix": prefix,
                },
            }
        }
    raise SystemExit(f"ECHO_CHANNEL_LAYER must be none, memory or redis, not {mode!r}")


if not settings.configured:
    # Channels reads CHANNEL_LAYERS from Django's settings, and its consumers close "old database
    # connections" around every handler: a minimal configuration, no project.
    settings.configure(CHANNEL_LAYERS=_layers(), INSTALLED_APPS=[], USE_TZ=True)
    django.setup()

from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402


class _Store:
    """What ``ECHO_STORE=postgres`` does for each message: one process's connections."""

    SIZE = 4

    def __init__(self) -> None:
        self.database_url = os.environ.get("ECHO_DATABASE_URL", "")
        self.redis_url = os.environ.get("REDIS_URL", "")
        if not self.database_url or not self.redis_url:
            raise SystemExit("ECHO_STORE=postgres needs ECHO_DATABASE_URL and REDIS_URL")
        self.idle: list[Any] = []
        self.slots: asyncio.Semaphore | None = None
        self.redis: Any = None

    async def _run(self, query: str, params: list[Any]) -> Any:
        import psycopg

        if self.slots is None:
            self.slots = asyncio.Semaphore(self.SIZE)
        async with self.slots:
            conn = self.idle.pop() if self.idle else None
            if conn is None:
                conn = await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True, prepare_threshold=0
                )
            try:
                cursor = await conn.execute(query, params)
                return await cursor.fetchone()
            finally:
                self.idle.append(conn)

    async def count(self, key: str) -> None:
        if self.redis is None:
            import redis.asyncio

            self.redis = redis.asyncio.Redis.from_url(self.redis_url)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 60)
            await pipe.execute()

    async def insert(self, content: str) -> int:
        row = await self._run(
            "INSERT INTO bench_echo_message (content, reply) VALUES (%s, '') RETURNING id",
            [content],
        )
        return int(row[0])

    async def finish(self, message_id: int, reply: str) -> None:
        await self._run(
            "UPDATE bench_echo_message SET reply = %s WHERE id = %s RETURNING id",
            [reply, message_id],
        )


def _store() -> _Store | None:
    mode = os.environ.get("ECHO_STORE", "none").strip().lower()
    if mode == "none":
        return None
    if mode == "postgres":
        return _Store()
    raise SystemExit(f"ECHO_STORE must be none or postgres, not {mode!r}")


STORE = _store()


def _size(name: str, default: int) -> int:
    return max(0, int(os.environ.get(name, str(default))))


ACK_BYTES = _size("ECHO_ACK_BYTES", 180)
DELTA_BYTES = _size("ECHO_DELTA_BYTES", 120)
DONE_BYTES = _size("ECHO_DONE_BYTES", 1500)
# Ids unique across the processes of one server (the bench checks no two messages share one).
_ids = itertools.count(os.getpid() * 1_000_000_000 + 1)


def _filler(length: int, seed: int) -> str:
    """Words, not one repeated character: permessage-deflate compresses it roughly like text."""
    rng = random.Random(seed)
    out: list[str] = []
    total = 0
    while total < length:
        word = rng.choice(_WORDS)
        out.append(word)
        total += len(word) + 1
    return " ".join(out)[:length]


def _padded(event: dict[str, Any], field: str, size: int) -> dict[str, Any]:
    """``event`` with ``field`` filled so that its JSON text is ``size`` bytes (or minimal)."""
    event = {**event, field: ""}
    missing = size - len(json.dumps(event).encode())
    if missing > 0:
        event[field] = _filler(missing, seed=size)
    return event


class EchoConsumer(AsyncJsonWebsocketConsumer):
    group = ""

    async def connect(self) -> None:
        self.key = uuid.uuid4().hex  # the socket's own counter (ECHO_STORE)
        if self.channel_layer is not None:
            self.group = f"echo.{uuid.uuid4().hex}"
            await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(
            {
                "type": "hello",
                "protocol": PROTOCOL,
                "deployment": {"id": 1, "name": "Echo", "offline": True},
                "user": {"id": 1, "email": "echo@bench.example", "role": "member"},
                "auth": "api_key",
                "limits": {"max_frame_bytes": 32 * 1024, "history_page": 50},
            }
        )

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = ""

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "message":
            await self.send_json(
                {"type": "error", "code": "bad_request", "message": "?", "retryable": False}
            )
            return
        message_id, reply_id = next(_ids), next(_ids)
        if STORE is not None:
            await STORE.count(f"{os.environ.get('CACHE_KEY_PREFIX', '')}echo:{self.key}")
            message_id = await STORE.insert(str(content.get("content", "")))
        conversation_id = content.get("conversation_id") or next(_ids)
        ack = {
            "type": "ack",
            "client_msg_id": content.get("client_msg_id"),
            "conversation_id": conversation_id,
            "message_id": message_id,
            "reply_id": reply_id,
            "duplicate": False,
        }
        await self.send_json(_padded(ack, "conversation_title", ACK_BYTES))
        delta = _padded({"type": "delta", "reply_id": reply_id, "seq": 1}, "text", DELTA_BYTES)
        done = _padded(
            {
                "type": "done",
                "reply_id": reply_id,
                "status": "complete",
                "usage": {
                    "provider": "echo",
                    "model": "echo",
                    "input_tokens": 0,
                    "output_tokens": 0,
                },
                "latency_ms": 0,
            },
            "content",
            DONE_BYTES,
        )
        for event in (delta, done):
            if STORE is not None and event is done:
                await STORE.finish(message_id, done["content"])
            if self.group:
                await self.channel_layer.group_send(
                    self.group, {"type": "chat.event", "event": event}
                )
            else:
                await self.send_json(event)

    async def chat_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def http_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    ok = scope["path"] == "/healthz"
    body = b'{"status": "ok"}' if ok else b"{}"
    await send(
        {
            "type": "http.response.start",
            "status": 200 if ok else 404,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


application = ProtocolTypeRouter({"http": http_app, "websocket": EchoConsumer.as_asgi()})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="A bare Channels websocket echo (bench/chat.py).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--processes", type=int, default=1, help="as `manage.py serve`")
    args = parser.parse_args(argv)
    # As `manage.py serve`: SIGTERM becomes a normal exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        "echo_asgi:application",  # an import string: each process imports it
        app_dir=os.path.dirname(os.path.abspath(__file__)),
        workers=args.processes,
        host=args.host,
        port=args.port,
        ws="websockets-sansio",
        # The product's defaults (config/settings/base.py), from the same variables.
        ws_max_size=int(os.environ.get("WEBSOCKET_MAX_BYTES", str(1024 * 1024))),
        ws_per_message_deflate=os.environ.get("WEBSOCKET_COMPRESSION", "true").lower()
        in {"1", "true", "yes", "on"},
        lifespan="off",
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
    )


if __name__ == "__main__":
    main()
