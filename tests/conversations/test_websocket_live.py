"""The chat websocket with a real client over running ASGI servers (uvicorn, as ``manage.py
serve`` runs it), including two processes serving one tenant through the Redis channel layer.

The servers are this module's own rather than ``product_server``: they need their own rate
limits (the counters live in the shared cache, and the tests of a run together send more than a
person may) and, for the two-process tests, a second process.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async
from django_tenants.utils import schema_context
from websockets.asyncio.client import ClientConnection
from websockets.typing import Origin

from apps.accounts.api_keys import api_key_create
from apps.accounts.models import ApiKey, User
from apps.conversations.consumers import MAX_FRAME_BYTES
from apps.conversations.models import Message
from apps.deployments.services import deployment_pause
from tests.conftest import Org, make_session_cookie
from tests.runtime.fake_openai import Reply
from tests.servers import ServerProcess, database_url

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("committed")]

TIMEOUT = 10
# What ``manage.py serve`` gives uvicorn as ``ws_max_size`` (settings.WEBSOCKET_MAX_BYTES).
SERVER_MAX_MESSAGE_BYTES = 1024 * 1024
# Low enough to reach in a test; each test chats with a deployment of its own.
DEPLOYMENT_PER_MINUTE = 3
needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"),
    reason="two processes share replies only through the Redis channel layer (set REDIS_URL)",
)


@dataclass(frozen=True)
class Servers:
    first: ServerProcess
    second: ServerProcess | None  # with REDIS_URL only: processes share replies through Redis
    spare: ServerProcess  # stopped by a test on purpose; call wait_ready() first


@pytest.fixture(scope="module")
def servers(django_db_setup: Any, tmp_path_factory: Any) -> Iterator[Servers]:
    env = {
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "RATE_LIMIT_USER_PER_MINUTE": "10000",
        "RATE_LIMIT_DEPLOYMENT_PER_MINUTE": str(DEPLOYMENT_PER_MINUTE),
    }
    logs = tmp_path_factory.mktemp("chat-live")
    names = ["first", "spare"] + (["second"] if os.environ.get("REDIS_URL") else [])
    started = {name: ServerProcess(env, logs / f"{name}.log") for name in names}
    try:
        # All start at once; the spare finishes booting while the first tests run.
        for name, server in started.items():
            if name != "spare":
                server.wait_ready()
        yield Servers(started["first"], started.get("second"), started["spare"])
    finally:
        for server in started.values():  # shut down side by side, not one after another
            if server.process.poll() is None:
                server.process.terminate()
        for server in started.values():
            server.stop()


@asynccontextmanager
async def chat(
    server: ServerProcess,
    org: Org,
    deployment_id: int,
    *,
    session: str | None = None,
    api_key: str | None = None,
    browser: bool = True,
) -> AsyncIterator[ClientConnection]:
    headers = {}
    if session:
        headers["Cookie"] = f"sessionid={session}"
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    async with websockets.connect(
        f"ws://{org.host}:{server.port}/ws/deployments/{deployment_id}/chat/",
        host="127.0.0.1",  # *.localhost is not resolved by Python; the Host header still says acme
        port=server.port,
        origin=Origin(f"http://{org.host}:{server.port}") if browser else None,
        additional_headers=headers,
        open_timeout=TIMEOUT,
    ) as socket:
        yield socket


async def session_for(org: Org, email: str) -> str:
    return await database_sync_to_async(make_session_cookie)(org, email)


async def receive(socket: ClientConnection) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await socket.recv())
    return event


async def receive_within(socket: ClientConnection) -> dict[str, Any]:
    return await asyncio.wait_for(receive(socket), TIMEOUT)


async def until(socket: ClientConnection, kind: str) -> list[dict[str, Any]]:
    events = []
    while True:
        events.append(await receive_within(socket))
        if events[-1]["type"] == kind:
            return events


async def closed_with(socket: ClientConnection) -> int:
    """The close code, after any events sent before the close."""

    async def drain() -> None:
        while True:
            await receive_within(socket)

    with pytest.raises(websockets.ConnectionClosed) as closed:
        await drain()
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


def message(content: str, client_msg_id: str, **fields: Any) -> str:
    return json.dumps(
        {"type": "message", "content": content, "client_msg_id": client_msg_id, **fields}
    )


def streamed_text(events: list[dict[str, Any]]) -> str:
    return "".join(event["text"] for event in events if event["type"] == "delta")


def in_schema(org: Org, func: Any) -> Any:
    def run() -> Any:
        with schema_context(org.schema):
            return func()

    return database_sync_to_async(run)()


async def test_a_signed_in_user_chats_over_a_real_server(servers, acme, active_deployment):
    session = await session_for(acme, acme.admin_email)
    async with chat(servers.first, acme, active_deployment.pk, session=session) as socket:
        hello = await receive_within(socket)
        await socket.send(message("How do I connect to the VPN?", "live-1"))
        ack, *stream, done = await until(socket, "done")

    assert (hello["type"], hello["protocol"], hello["auth"]) == ("hello", 1, "session")
    assert (ack["type"], ack["duplicate"]) == ("ack", False)
    assert any(event["type"] == "tool" for event in stream)
    assert done["status"] == "complete"
    assert done["content"] == streamed_text(stream)
    reply = await in_schema(acme, lambda: Message.objects.get(pk=ack["reply_id"]))
    assert (reply.status, reply.content) == ("complete", done["content"])


async def test_an_api_key_client_sends_no_origin_and_chats(servers, acme, active_deployment):
    def create_key() -> str:
        user = User.objects.get(email=acme.member_emails[0])
        return api_key_create(user=user, name="live chat", scopes=["chat:use"]).secret

    secret = await in_schema(acme, create_key)
    try:
        async with chat(
            servers.first, acme, active_deployment.pk, api_key=secret, browser=False
        ) as socket:
            hello = await receive_within(socket)
            await socket.send(message("How do I reset my password?", "key-live-1"))
            done = (await until(socket, "done"))[-1]
        assert (hello["auth"], hello["user"]["email"]) == ("api_key", acme.member_emails[0])
        assert done["status"] == "complete"
    finally:
        await in_schema(acme, lambda: ApiKey.objects.filter(name="live chat").delete())


async def test_no_session_or_another_tenants_session_is_refused(
    servers, acme, globex, active_deployment
):
    async with chat(servers.first, acme, active_deployment.pk) as socket:
        assert await closed_with(socket) == 4401
    globex_session = await session_for(globex, globex.admin_email)
    async with chat(servers.first, acme, active_deployment.pk, session=globex_session) as socket:
        assert await closed_with(socket) == 4401


async def test_a_paused_deployment_says_why_and_closes_with_4409(servers, acme, active_deployment):
    await in_schema(
        acme,
        lambda: deployment_pause(
            deployment=active_deployment, actor=User.objects.get(email=acme.admin_email)
        ),
    )
    session = await session_for(acme, acme.admin_email)
    async with chat(servers.first, acme, active_deployment.pk, session=session) as socket:
        error = await receive_within(socket)
        assert await closed_with(socket) == 4409
    assert (error["code"], error["reason"]) == ("not_serving", "deployment_paused")


async def test_reconnecting_and_resending_never_duplicates(servers, acme, active_deployment):
    session = await session_for(acme, acme.admin_email)
    async with chat(servers.first, acme, active_deployment.pk, session=session) as socket:
        await receive_within(socket)
        await socket.send(message("How do I connect to the VPN?", "resend-1"))
        ack = await receive_within(socket)
    # Gone right after the ack, as a dropped connection would be: the reply still completes.

    async with chat(servers.first, acme, active_deployment.pk, session=session) as socket:
        await receive_within(socket)
        await socket.send(message("How do I connect to the VPN?", "resend-1"))
        before_ack = await until(socket, "ack")
        again = before_ack[-1]
        # The stored reply as it is now; events of the reply, if it still streams, may come first.
        seen = before_ack + await until(socket, "message")
        stored = seen[-1]
        if stored["status"] != "complete":
            ended = [e for e in seen if e["type"] == "done"]
            stored = ended[-1] if ended else (await until(socket, "done"))[-1]
        # Otherwise the reply's own ``done`` may still come: it follows the final write.
        await socket.send(
            json.dumps(
                {
                    "type": "resume",
                    "conversation_id": ack["conversation_id"],
                    "after_id": ack["message_id"],
                }
            )
        )
        resumed = [e for e in await until(socket, "resumed") if e["type"] != "done"]

    assert again["duplicate"] is True
    assert (again["message_id"], again["reply_id"]) == (ack["message_id"], ack["reply_id"])
    assert stored["status"] == "complete"
    assert [(e["type"], e.get("id")) for e in resumed] == [
        ("message", ack["reply_id"]),
        ("resumed", None),
    ]
    count = await in_schema(
        acme, lambda: Message.objects.filter(conversation_id=ack["conversation_id"]).count()
    )
    assert count == 2


async def test_cancel_stops_a_reply_over_a_real_server(
    servers, acme, cloud_deployment, fake_openai
):
    fake_openai.script(Reply(text=("Partial",), hang_after=2))
    session = await session_for(acme, acme.admin_email)
    async with chat(servers.first, acme, cloud_deployment.pk, session=session) as socket:
        await receive_within(socket)
        await socket.send(message("Tell me a long story", "live-cancel-1"))
        ack = await receive_within(socket)
        assert (await receive_within(socket))["text"] == "Partial"
        await socket.send(json.dumps({"type": "cancel", "reply_id": ack["reply_id"]}))
        done = await receive_within(socket)

    assert (done["type"], done["status"], done["content"]) == ("done", "cancelled", "Partial")


async def test_past_the_rate_limit_a_message_gets_retry_after(servers, acme, active_deployment):
    session = await session_for(acme, acme.admin_email)
    async with chat(servers.first, acme, active_deployment.pk, session=session) as socket:
        await receive_within(socket)
        # A minute's window may turn once while sending; twice the limit and one is enough.
        for number in range(2 * DEPLOYMENT_PER_MINUTE + 1):
            await socket.send(message("How do I connect to the VPN?", f"live-limit-{number}"))
            first = await receive_within(socket)
            if first["type"] == "error":
                break
            await until(socket, "done")
        await socket.send(json.dumps({"type": "ping"}))
        pong = await receive_within(socket)

    assert (first["code"], first["retryable"]) == ("rate_limited", True)
    assert 1 <= first["retry_after"] <= 60
    assert pong["type"] == "pong"


async def test_bad_frames_get_errors_and_a_frame_past_the_server_limit_closes_1009(
    servers, acme, active_deployment
):
    session = await session_for(acme, acme.admin_email)
    async with chat(servers.first, acme, active_deployment.pk, session=session) as socket:
        await receive_within(socket)
        await socket.send("{not json")
        bad = await receive_within(socket)
        await socket.send(json.dumps({"type": "ping", "pad": "x" * MAX_FRAME_BYTES}))
        too_large = await receive_within(socket)
        await socket.send(json.dumps({"type": "ping"}))
        pong = await receive_within(socket)

        await socket.send("x" * (SERVER_MAX_MESSAGE_BYTES + 1))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await receive_within(socket)

    assert (bad["code"], too_large["code"], pong["type"]) == ("bad_request", "too_large", "pong")
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


@needs_redis
async def test_a_reply_reaches_the_users_tabs_on_both_processes(servers, acme, active_deployment):
    session = await session_for(acme, acme.admin_email)
    first_server, second_server = servers.first, servers.second
    assert second_server is not None
    async with (
        chat(first_server, acme, active_deployment.pk, session=session) as first,
        chat(second_server, acme, active_deployment.pk, session=session) as second,
    ):
        await receive_within(first)
        await receive_within(second)
        await first.send(message("How do I connect to the VPN?", "two-1"))
        sent = await until(first, "done")
        seen = await until(second, "done")

    ack = sent[0]
    assert [(e["type"], e["id"]) for e in seen[:2]] == [
        ("message", ack["message_id"]),
        ("message", ack["reply_id"]),
    ]
    assert streamed_text(seen) == streamed_text(sent) == sent[-1]["content"]
    assert seen[-1]["content"] == sent[-1]["content"]
    assert any(event["type"] == "tool" for event in seen)


@needs_redis
async def test_a_tab_on_one_process_cancels_a_reply_streaming_on_the_other(
    servers, acme, cloud_deployment, fake_openai
):
    fake_openai.script(Reply(text=("Partial",), hang_after=2))
    session = await session_for(acme, acme.admin_email)
    first_server, second_server = servers.first, servers.second
    assert second_server is not None
    async with chat(second_server, acme, cloud_deployment.pk, session=session) as watcher:
        await receive_within(watcher)
        async with chat(first_server, acme, cloud_deployment.pk, session=session) as starter:
            await receive_within(starter)
            await starter.send(message("Tell me a long story", "two-cancel-1"))
            ack = await receive_within(starter)
            seen = [await receive_within(watcher) for _ in range(3)]
        # The tab that started the reply is closed; the reply streams on without it.
        await watcher.send(json.dumps({"type": "cancel", "reply_id": ack["reply_id"]}))
        done = await receive_within(watcher)

    assert [event["type"] for event in seen] == ["message", "message", "delta"]
    assert (done["type"], done["status"], done["content"]) == ("done", "cancelled", "Partial")


async def test_stopping_a_server_leaves_its_streaming_reply_failed_and_retryable(
    servers, acme, cloud_deployment, fake_openai
):
    await asyncio.to_thread(servers.spare.wait_ready)
    fake_openai.script(Reply(text=("Partial",), hang_after=2))
    session = await session_for(acme, acme.admin_email)
    async with chat(servers.spare, acme, cloud_deployment.pk, session=session) as socket:
        await receive_within(socket)
        await socket.send(message("Tell me a long story", "shutdown-1"))
        ack = await receive_within(socket)
        assert (await receive_within(socket))["text"] == "Partial"

        await asyncio.to_thread(servers.spare.stop)  # SIGTERM, as a deploy or scale-in sends

        assert await closed_with(socket) == 1012  # uvicorn's "service restart"
    reply = await in_schema(acme, lambda: Message.objects.get(pk=ack["reply_id"]))
    assert (reply.status, reply.error_code, reply.content) == ("failed", "interrupted", "Partial")
