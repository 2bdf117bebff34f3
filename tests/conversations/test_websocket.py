"""The chat websocket through Channels' communicator against the real ASGI application: the
handshake (session or API key, role, deployment, status), the protocol, several tabs, cancel,
reconnects without duplicates, rate limits, provider failures and frame limits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django_tenants.utils import schema_context

from apps.accounts.api_keys import api_key_create
from apps.accounts.models import ApiKey, User
from apps.audit.models import AuditEvent
from apps.conversations.consumers import MAX_FRAME_BYTES, replies_running
from apps.conversations.models import Conversation, Message
from apps.deployments.models import Deployment, RuntimeCall
from apps.deployments.services import deployment_pause
from config.asgi import application
from tests.conftest import Org, make_session_cookie
from tests.runtime.fake_openai import Reply

pytestmark = pytest.mark.usefixtures("committed")

TIMEOUT = 5


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings: Any) -> None:
    # The counters live in the shared cache for a minute: the tests of this module together
    # send more than a person may. The rate-limit test lowers them again.
    settings.RATE_LIMIT_USER_PER_MINUTE = 10_000
    settings.RATE_LIMIT_DEPLOYMENT_PER_MINUTE = 10_000


@pytest.fixture(autouse=True)
async def _replies_end_with_their_test() -> Any:
    yield
    # A reply outliving its socket is still streaming on this test's event loop.
    await asyncio.wait_for(replies_running(), TIMEOUT)


def path(deployment_id: int) -> str:
    return f"/ws/deployments/{deployment_id}/chat/"


async def session_for(org: Org, email: str) -> str:
    return await database_sync_to_async(make_session_cookie)(org, email)


async def open_socket(
    org: Org,
    deployment_id: int,
    *,
    session: str | None = None,
    authorization: str | None = None,
    origin: str | None = "",
) -> WebsocketCommunicator:
    headers = [(b"host", org.host.encode()), (b"user-agent", b"chat-tests/1")]
    if origin is not None:
        headers.append((b"origin", (origin or f"http://{org.host}").encode()))
    if session:
        headers.append((b"cookie", f"sessionid={session}".encode()))
    if authorization:
        headers.append((b"authorization", authorization.encode()))
    communicator = WebsocketCommunicator(application, path(deployment_id), headers=headers)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return communicator


async def signed_in(org: Org, deployment_id: int, email: str | None = None) -> Any:
    """A socket of a signed-in user, past its hello."""
    socket = await open_socket(
        org, deployment_id, session=await session_for(org, email or org.admin_email)
    )
    hello = await receive(socket)
    assert hello["type"] == "hello", hello
    return socket


async def receive(socket: WebsocketCommunicator) -> dict[str, Any]:
    event: dict[str, Any] = await socket.receive_json_from(timeout=TIMEOUT)
    return event


async def until(socket: WebsocketCommunicator, kind: str) -> list[dict[str, Any]]:
    """Every event up to and including the first of type ``kind``."""
    events = []
    while True:
        events.append(await receive(socket))
        if events[-1]["type"] == kind:
            return events


async def close_code(socket: WebsocketCommunicator) -> int:
    message = await socket.receive_output(timeout=TIMEOUT)
    assert message["type"] == "websocket.close", message
    return int(message["code"])


async def send_message(
    socket: WebsocketCommunicator, content: str, client_msg_id: str, **fields: Any
) -> None:
    await socket.send_json_to(
        {"type": "message", "content": content, "client_msg_id": client_msg_id, **fields}
    )


def streamed_text(events: list[dict[str, Any]]) -> str:
    return "".join(event["text"] for event in events if event["type"] == "delta")


def in_schema(org: Org, func: Any) -> Any:
    def run() -> Any:
        with schema_context(org.schema):
            return func()

    return database_sync_to_async(run)()


def refusals(org: Org, deployment_id: int) -> Any:
    return in_schema(
        org,
        lambda: [
            (event.metadata["reason"], event.actor_type)
            for event in AuditEvent.objects.filter(action="chat.connection_refused").order_by("id")
            if event.metadata["deployment"] == str(deployment_id)
        ],
    )


# Connecting


async def test_a_signed_in_member_is_greeted_with_the_protocol_version(acme, active_deployment):
    member = acme.member_emails[0]
    socket = await open_socket(acme, active_deployment.pk, session=await session_for(acme, member))

    hello = await receive(socket)

    assert hello["type"] == "hello"
    assert hello["protocol"] == 1
    assert hello["deployment"] == {
        "id": active_deployment.pk,
        "name": active_deployment.name,
        "offline": True,
    }
    assert (hello["user"]["email"], hello["user"]["role"]) == (member, "member")
    assert hello["auth"] == "session"
    assert hello["limits"]["max_frame_bytes"] == MAX_FRAME_BYTES
    await socket.disconnect()


async def test_no_session_is_refused_with_4401_and_audited(acme, active_deployment):
    socket = await open_socket(acme, active_deployment.pk)

    assert await close_code(socket) == 4401
    assert await refusals(acme, active_deployment.pk) == [("unauthenticated", "anonymous")]
    event = await in_schema(
        acme, lambda: AuditEvent.objects.filter(action="chat.connection_refused").latest("id")
    )
    assert (event.outcome, event.user_agent, event.metadata["channel"]) == (
        "denied",
        "chat-tests/1",
        "websocket",
    )
    assert event.request_id


async def test_a_member_of_another_tenant_cannot_use_their_session_here(
    acme, globex, active_deployment
):
    globex_session = await session_for(globex, globex.member_emails[0])

    socket = await open_socket(acme, active_deployment.pk, session=globex_session)

    assert await close_code(socket) == 4401


async def test_another_tenants_deployment_is_as_missing_as_an_unknown_one(
    acme, globex, active_deployment
):
    exists_in_globex = await in_schema(
        globex, lambda: Deployment.objects.filter(pk=active_deployment.pk).exists()
    )
    assert not exists_in_globex  # otherwise this test would prove nothing

    socket = await open_socket(
        globex, active_deployment.pk, session=await session_for(globex, globex.admin_email)
    )

    assert await close_code(socket) == 4404
    assert await refusals(globex, active_deployment.pk) == [("not_found", "user")]
    unknown = await open_socket(acme, 2**70, session=await session_for(acme, acme.admin_email))
    assert await close_code(unknown) == 4404


async def test_a_role_without_chat_is_refused_with_4403(acme, active_deployment):
    auditor = f"auditor@{acme.slug}.example"

    socket = await open_socket(acme, active_deployment.pk, session=await session_for(acme, auditor))

    assert await close_code(socket) == 4403
    assert await refusals(acme, active_deployment.pk) == [("forbidden", "user")]


async def test_a_page_on_another_host_is_refused_before_the_deployment_is_looked_at(
    acme, active_deployment
):
    socket = await open_socket(
        acme,
        active_deployment.pk,
        session=await session_for(acme, acme.admin_email),
        origin="http://globex.localhost",
    )

    assert await close_code(socket) == 4403


async def test_a_paused_deployment_says_why_then_closes_with_4409(acme, active_deployment):
    await in_schema(
        acme,
        lambda: deployment_pause(
            deployment=active_deployment, actor=User.objects.get(email=acme.admin_email)
        ),
    )
    socket = await open_socket(
        acme, active_deployment.pk, session=await session_for(acme, acme.admin_email)
    )

    error = await receive(socket)

    assert error["type"] == "error"
    assert (error["code"], error["reason"]) == ("not_serving", "deployment_paused")
    assert "paused" in error["message"]
    assert await close_code(socket) == 4409
    assert await refusals(acme, active_deployment.pk) == [("not_serving", "user")]


async def test_a_deployment_paused_during_a_conversation_answers_with_an_error(
    acme, active_deployment
):
    socket = await signed_in(acme, active_deployment.pk)
    await in_schema(
        acme,
        lambda: deployment_pause(
            deployment=active_deployment, actor=User.objects.get(email=acme.admin_email)
        ),
    )

    await send_message(socket, "Is the VPN down?", "paused-1")

    error = await receive(socket)
    assert (error["type"], error["code"], error["client_msg_id"]) == (
        "error",
        "not_serving",
        "paused-1",
    )
    await socket.send_json_to({"type": "ping"})
    assert (await receive(socket))["type"] == "pong"
    await socket.disconnect()


def _make_key(org: Org, scopes: list[str]) -> Any:
    def create() -> str:
        with schema_context(org.schema):
            user = User.objects.get(email=org.member_emails[0])
            return api_key_create(user=user, name="chat client", scopes=scopes).secret

    return database_sync_to_async(create)()


async def test_an_api_key_with_the_chat_scope_connects_without_a_browser(acme, active_deployment):
    secret = await _make_key(acme, ["chat:use"])
    try:
        socket = await open_socket(
            acme, active_deployment.pk, authorization=f"Bearer {secret}", origin=None
        )
        hello = await receive(socket)
        assert (hello["auth"], hello["user"]["email"]) == ("api_key", acme.member_emails[0])

        await send_message(socket, "How do I reset my password?", "key-1")
        events = await until(socket, "done")
        assert events[0]["type"] == "ack"
        assert events[-1]["status"] == "complete"
        await socket.disconnect()
    finally:
        await in_schema(acme, lambda: ApiKey.objects.filter(name="chat client").delete())


async def test_an_api_key_without_the_chat_scope_or_an_unknown_key_is_refused(
    acme, active_deployment
):
    secret = await _make_key(acme, ["deployments:read"])
    try:
        narrow = await open_socket(
            acme, active_deployment.pk, authorization=f"Bearer {secret}", origin=None
        )
        assert await close_code(narrow) == 4403
        unknown = await open_socket(
            acme, active_deployment.pk, authorization="Bearer af_0000_nope", origin=None
        )
        assert await close_code(unknown) == 4401
        assert await refusals(acme, active_deployment.pk) == [
            ("forbidden", "user"),
            ("unauthenticated", "anonymous"),
        ]
    finally:
        await in_schema(acme, lambda: ApiKey.objects.filter(name="chat client").delete())


# The protocol


async def test_a_message_is_acked_streamed_and_stored(acme, active_deployment):
    socket = await signed_in(acme, active_deployment.pk)

    await send_message(socket, "How do I connect to the VPN?", "happy-1")
    events = await until(socket, "done")

    ack, *stream, done = events
    assert ack["type"] == "ack"
    assert (ack["client_msg_id"], ack["duplicate"]) == ("happy-1", False)
    assert {event["type"] for event in stream} <= {"delta", "tool"}
    assert any(event["type"] == "tool" for event in stream)
    deltas = [event for event in stream if event["type"] == "delta"]
    assert [delta["seq"] for delta in deltas] == list(range(1, len(deltas) + 1))
    assert done["status"] == "complete"
    assert done["content"] == streamed_text(stream)
    assert done["usage"]["provider"] == "local"
    assert done["latency_ms"] is not None

    def stored() -> Any:
        return list(
            Message.objects.filter(conversation_id=ack["conversation_id"])
            .order_by("id")
            .values_list("id", "role", "status", "content")
        )

    assert await in_schema(acme, stored) == [
        (ack["message_id"], "user", "complete", "How do I connect to the VPN?"),
        (ack["reply_id"], "assistant", "complete", done["content"]),
    ]
    await socket.disconnect()


async def test_every_open_tab_of_the_user_receives_the_reply(acme, active_deployment):
    first = await signed_in(acme, active_deployment.pk)
    second = await signed_in(acme, active_deployment.pk)
    other_user = await signed_in(acme, active_deployment.pk, acme.member_emails[0])

    await send_message(first, "My printer is stuck", "tabs-1")
    sent = await until(first, "done")
    seen = await until(second, "done")

    ack = sent[0]
    mine, reply, *rest = seen
    assert (mine["type"], mine["id"], mine["role"]) == ("message", ack["message_id"], "user")
    assert (reply["id"], reply["status"]) == (ack["reply_id"], "pending")
    assert streamed_text(rest) == streamed_text(sent)
    assert rest[-1]["content"] == sent[-1]["content"]
    assert [event["type"] for event in sent if event["type"] == "message"] == []
    assert await other_user.receive_nothing(timeout=0.3)
    for socket in (first, second, other_user):
        await socket.disconnect()


async def test_resending_a_client_msg_id_after_a_reconnect_never_duplicates(
    acme, active_deployment
):
    socket = await signed_in(acme, active_deployment.pk)
    await send_message(socket, "How do I connect to the VPN?", "once-1")
    first = await until(socket, "done")
    await socket.disconnect()

    again = await signed_in(acme, active_deployment.pk)
    await send_message(again, "How do I connect to the VPN?", "once-1")
    ack = await receive(again)
    stored = await receive(again)

    assert ack["duplicate"] is True
    assert (ack["message_id"], ack["reply_id"]) == (first[0]["message_id"], first[0]["reply_id"])
    assert (stored["type"], stored["id"], stored["status"]) == (
        "message",
        first[0]["reply_id"],
        "complete",
    )
    assert stored["content"] == first[-1]["content"]
    assert await again.receive_nothing(timeout=0.3)

    def counts() -> Any:
        return (
            Message.objects.filter(conversation__deployment_id=active_deployment.pk).count(),
            RuntimeCall.objects.filter(deployment_id=active_deployment.pk).count(),
        )

    assert await in_schema(acme, counts) == (2, 1)
    await again.disconnect()


async def test_a_reply_outlives_its_socket_and_a_reconnecting_client_resumes(
    acme, active_deployment
):
    socket = await signed_in(acme, active_deployment.pk)
    await send_message(socket, "How do I connect to the VPN?", "gone-1")
    ack = await receive(socket)
    await socket.disconnect()
    await asyncio.wait_for(replies_running(), TIMEOUT)

    again = await signed_in(acme, active_deployment.pk)
    await again.send_json_to(
        {"type": "resume", "conversation_id": ack["conversation_id"], "after_id": ack["message_id"]}
    )
    reply = await receive(again)
    resumed = await receive(again)

    assert (reply["type"], reply["id"], reply["status"]) == ("message", ack["reply_id"], "complete")
    assert reply["content"]
    assert resumed == {
        "type": "resumed",
        "conversation_id": ack["conversation_id"],
        "last_id": ack["reply_id"],
        "more": False,
    }
    await again.disconnect()


async def test_history_pages_back_from_the_newest_messages(acme, active_deployment):
    socket = await signed_in(acme, active_deployment.pk)
    await send_message(socket, "How do I connect to the VPN?", "page-1")
    ack = (await until(socket, "done"))[0]
    conversation = ack["conversation_id"]
    await send_message(socket, "And the printer?", "page-2", conversation_id=conversation)
    await until(socket, "done")

    await socket.send_json_to({"type": "history", "conversation_id": conversation, "limit": 3})
    newest = await receive(socket)
    oldest_id = newest["messages"][0]["id"]
    await socket.send_json_to(
        {"type": "history", "conversation_id": conversation, "before_id": oldest_id}
    )
    older = await receive(socket)

    assert newest["type"] == "history"
    assert [m["role"] for m in newest["messages"]] == ["assistant", "user", "assistant"]
    assert newest["has_more"] is True
    assert [m["id"] for m in older["messages"]] == [ack["message_id"]]
    assert older["has_more"] is False
    await socket.disconnect()


async def test_another_users_conversation_cannot_be_read_or_resumed(acme, active_deployment):
    owner = await signed_in(acme, active_deployment.pk)
    await send_message(owner, "How do I connect to the VPN?", "private-1")
    conversation = (await until(owner, "done"))[0]["conversation_id"]
    intruder = await signed_in(acme, active_deployment.pk, acme.member_emails[0])

    await intruder.send_json_to({"type": "history", "conversation_id": conversation})
    await intruder.send_json_to({"type": "resume", "conversation_id": conversation, "after_id": 0})
    await send_message(intruder, "Hi", "private-2", conversation_id=conversation)

    assert [(await receive(intruder))["code"] for _ in range(3)] == ["not_found"] * 3
    for socket in (owner, intruder):
        await socket.disconnect()


async def test_cancel_stops_a_streaming_reply_and_keeps_what_streamed(
    acme, cloud_deployment, fake_openai
):
    fake_openai.script(
        Reply(text=("Partial", " answer"), hang_after=2), Reply(text=("Again",), hang_after=2)
    )
    socket = await signed_in(acme, cloud_deployment.pk)
    await send_message(socket, "Tell me a long story", "cancel-1")
    ack = await receive(socket)
    delta = await receive(socket)
    assert (delta["type"], delta["text"]) == ("delta", "Partial")

    await socket.send_json_to({"type": "cancel", "reply_id": ack["reply_id"]})
    done = await receive(socket)

    assert (done["type"], done["status"], done["content"]) == ("done", "cancelled", "Partial")
    reply = await in_schema(acme, lambda: Message.objects.get(pk=ack["reply_id"]))
    assert (reply.status, reply.content) == ("cancelled", "Partial")
    await socket.send_json_to({"type": "cancel", "reply_id": ack["reply_id"]})
    assert (await receive(socket))["code"] == "not_streaming"

    # Retried, the same reply streams again: the earlier cancel does not stop it.
    await socket.send_json_to({"type": "retry", "reply_id": ack["reply_id"]})
    assert [(await receive(socket))["type"] for _ in range(2)] == ["message", "delta"]
    assert await socket.receive_nothing(timeout=1.0)
    await socket.send_json_to({"type": "cancel", "reply_id": ack["reply_id"]})
    assert (await receive(socket))["content"] == "Again"
    await socket.disconnect()


async def test_another_tab_can_cancel_a_reply_whose_socket_has_gone(
    acme, cloud_deployment, fake_openai
):
    fake_openai.script(Reply(text=("Partial",), hang_after=2))
    starter = await signed_in(acme, cloud_deployment.pk)
    watcher = await signed_in(acme, cloud_deployment.pk)
    await send_message(starter, "Tell me a long story", "orphan-1")
    ack = await receive(starter)
    seen = [await receive(watcher) for _ in range(3)]
    assert [event["type"] for event in seen] == ["message", "message", "delta"]
    await starter.disconnect()

    await watcher.send_json_to({"type": "cancel", "reply_id": ack["reply_id"]})

    done = await receive(watcher)
    assert (done["type"], done["status"], done["content"]) == ("done", "cancelled", "Partial")
    await watcher.disconnect()


async def test_a_provider_failure_mid_stream_keeps_the_message_and_retry_answers(
    acme, cloud_deployment, fake_openai
):
    fake_openai.script(
        Reply(text=("Half", " an answer"), error_event_after=2), Reply(text=("Whole", " answer"))
    )
    socket = await signed_in(acme, cloud_deployment.pk)
    await send_message(socket, "Explain the invoice", "fail-1")

    events = await until(socket, "error")

    ack, error = events[0], events[-1]
    assert streamed_text(events) == "Half"
    assert (error["reply_id"], error["retryable"]) == (ack["reply_id"], True)

    def rows() -> Any:
        return list(
            Message.objects.filter(conversation_id=ack["conversation_id"])
            .order_by("id")
            .values_list("role", "status", "content")
        )

    assert await in_schema(acme, rows) == [
        ("user", "complete", "Explain the invoice"),
        ("assistant", "failed", "Half"),
    ]

    await socket.send_json_to({"type": "retry", "reply_id": ack["reply_id"]})
    retried = await until(socket, "done")

    assert (retried[0]["type"], retried[0]["id"], retried[0]["status"]) == (
        "message",
        ack["reply_id"],
        "pending",
    )
    assert (retried[-1]["status"], retried[-1]["content"]) == ("complete", "Whole answer")
    assert await in_schema(acme, rows) == [
        ("user", "complete", "Explain the invoice"),
        ("assistant", "complete", "Whole answer"),
    ]
    await socket.send_json_to({"type": "retry", "reply_id": ack["reply_id"]})
    assert (await receive(socket))["code"] == "not_failed"
    await socket.disconnect()


async def test_past_the_rate_limit_a_message_gets_retry_after(acme, active_deployment, settings):
    settings.RATE_LIMIT_DEPLOYMENT_PER_MINUTE = 1
    socket = await signed_in(acme, active_deployment.pk)

    # A minute's window may turn between two messages; the third is refused in any case.
    for number in range(3):
        await send_message(socket, "How do I connect to the VPN?", f"limit-{number}")
        first = await receive(socket)
        if first["type"] == "error":
            break
        await until(socket, "done")

    assert first["code"] == "rate_limited"
    assert first["retryable"] is True
    assert 1 <= first["retry_after"] <= 60
    assert first["client_msg_id"] == f"limit-{number}"
    refused = await in_schema(
        acme, lambda: Message.objects.filter(client_msg_id=f"limit-{number}").exists()
    )
    assert not refused
    await socket.send_json_to({"type": "ping", "id": 7})
    assert await receive(socket) == {"type": "pong", "id": 7}
    await socket.disconnect()


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "Unknown message type"),
        (json.dumps({"type": "dance"}), "Unknown message type"),
        (json.dumps({"type": "message", "content": 3, "client_msg_id": "x"}), "Invalid fields"),
        (json.dumps({"type": "cancel", "reply_id": "7"}), "Invalid fields"),
        (json.dumps({"type": "history", "conversation_id": 1, "limit": 51}), "Invalid fields"),
        (json.dumps({"type": "message", "content": "hi", "client_msg_id": "no spaces"}), ""),
        (json.dumps({"type": "message", "content": " ", "client_msg_id": "blank-1"}), ""),
    ],
)
async def test_a_bad_frame_gets_bad_request_and_the_connection_stays_usable(
    acme, active_deployment, frame, problem
):
    socket = await signed_in(acme, active_deployment.pk)

    await socket.send_to(text_data=frame)

    error = await receive(socket)
    assert (error["type"], error["code"], error["retryable"]) == ("error", "bad_request", False)
    assert problem in error["message"]
    await socket.send_json_to({"type": "ping"})
    assert (await receive(socket))["type"] == "pong"
    await socket.disconnect()


async def test_an_oversized_or_binary_frame_gets_an_error_and_the_connection_stays_usable(
    acme, active_deployment
):
    socket = await signed_in(acme, active_deployment.pk)
    big = json.dumps(
        {"type": "message", "client_msg_id": "big-1", "content": "x" * MAX_FRAME_BYTES}
    )

    await socket.send_to(text_data=big)
    too_large = await receive(socket)
    await socket.send_to(bytes_data=b"\x00\x01")
    binary = await receive(socket)

    assert (too_large["code"], too_large["details"]["max_frame_bytes"]) == (
        "too_large",
        MAX_FRAME_BYTES,
    )
    assert binary["code"] == "bad_request"
    assert not await in_schema(acme, lambda: Message.objects.filter(client_msg_id="big-1").exists())
    await send_message(socket, "How do I connect to the VPN?", "after-big")
    assert (await until(socket, "done"))[-1]["status"] == "complete"
    await socket.disconnect()


async def test_a_member_whose_role_loses_chat_is_closed_at_the_next_message(
    acme, active_deployment
):
    member = acme.member_emails[0]
    socket = await signed_in(acme, active_deployment.pk, member)
    await in_schema(acme, lambda: User.objects.filter(email=member).update(role="auditor"))
    try:
        await send_message(socket, "Still there?", "demoted-1")

        assert (await receive(socket))["code"] == "forbidden"
        assert await close_code(socket) == 4403
    finally:
        await in_schema(acme, lambda: User.objects.filter(email=member).update(role="member"))
    assert not await in_schema(
        acme, lambda: Conversation.objects.filter(deployment_id=active_deployment.pk).exists()
    )
