"""Server-Sent Events: POST /api/v1/deployments/<id>/messages/stream/ answers the chat
protocol's events (ack, delta, tool, revised, done, error) as an event stream, with heartbeats;
errors before the stream starts are the API's JSON errors; a reply outlives a client that goes
away; and the reply is written in the tenant of the host, under the real ASGI server too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings
from django.test import Client
from django_tenants.utils import schema_context

from apps.accounts.api_keys import api_key_create
from apps.accounts.models import Role, User
from apps.audit.models import AuditEvent
from apps.conversations.models import Conversation, Message
from apps.deployments.models import Deployment, RuntimeCall
from apps.runtime.types import TextDelta, Usage
from tests.conftest import Org
from tests.conversations.conftest import HELPDESK_SETTINGS, deploy_for, remove_deployment
from tests.conversations.test_api import QUESTION, bearer, collect, fresh_member, msg_id
from tests.runtime.fake_openai import FakeOpenAI, Reply

API = "/api/v1"


@pytest.fixture
def member(db: Any, acme: Org) -> str:
    return fresh_member(acme)


class SlowOpenAI(FakeOpenAI):
    """The fake OpenAI server, pausing before each streamed chunk (``delay`` seconds) and
    counting the chunks it could send (a client that hung up stops the count)."""

    delay = 0.0
    sent = 0

    def _send_event(self, handler: Any, data: str, event: str | None = None) -> None:  # type: ignore[override]
        if self.delay:
            time.sleep(self.delay)
        FakeOpenAI._send_event(handler, data, event)
        self.sent += 1


@pytest.fixture
def fake_openai() -> Iterator[SlowOpenAI]:
    with SlowOpenAI() as server:
        yield server
        assert not server.server_errors, server.server_errors


def stream_path(deployment_id: int) -> str:
    return f"{API}/deployments/{deployment_id}/messages/stream/"


def post_stream(client: Client, deployment_id: int, content: str = QUESTION, **fields: Any) -> Any:
    fields.setdefault("client_msg_id", msg_id())
    return client.post(
        stream_path(deployment_id), {"content": content, **fields}, content_type="application/json"
    )


def parse(body: bytes) -> list[dict[str, Any]]:
    """The frames of an event stream: events as their JSON data, comments as {"comment": ...}."""
    frames: list[dict[str, Any]] = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        if block.startswith(":"):
            frames.append({"comment": block[1:].strip()})
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        event = json.loads(fields["data"])
        assert event["type"] == fields["event"], block
        frames.append(event)
    return frames


def events_of(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.content
    return [frame for frame in parse(collect(response)) if "comment" not in frame]


# The stream


def test_the_reply_streams_as_protocol_events_and_is_stored(
    db, acme, member, active_deployment, client_for
):
    response = post_stream(client_for(acme.host, member), active_deployment.pk)

    assert response["Content-Type"].startswith("text/event-stream")
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    events = events_of(response)
    kinds = [event["type"] for event in events]
    assert kinds[0] == "ack"
    assert kinds[-1] == "done"
    assert "delta" in kinds
    assert {"stage": "call", "name": "knowledge_search"}.items() <= next(
        e for e in events if e["type"] == "tool"
    ).items()
    ack, done = events[0], events[-1]
    text = "".join(event["text"] for event in events if event["type"] == "delta")
    assert done["content"] == text
    assert "VPN connection problems" in text
    assert done["status"] == "complete"
    with schema_context(acme.schema):
        reply = Message.objects.get(pk=ack["reply_id"])
        assert (reply.status, reply.content) == ("complete", text)
        assert reply.conversation_id == ack["conversation_id"]
        assert reply.conversation.user.email == member
        assert RuntimeCall.objects.filter(deployment=active_deployment, outcome="ok").count() == 1


def test_a_resent_message_replays_the_stored_reply_without_asking_again(
    db, acme, member, active_deployment, client_for, monkeypatch
):
    client = client_for(acme.host, member)
    first = events_of(post_stream(client, active_deployment.pk, client_msg_id="sse-once"))

    def no_provider(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the provider was asked again")

    monkeypatch.setattr("apps.conversations.turns.run_turn", no_provider)
    again = events_of(post_stream(client, active_deployment.pk, client_msg_id="sse-once"))

    assert [event["type"] for event in again] == ["ack", "done"]
    assert again[0]["duplicate"] is True
    assert again[0]["reply_id"] == first[0]["reply_id"]
    assert again[1]["content"] == first[-1]["content"]


def test_silence_is_filled_with_heartbeat_comments(
    db, acme, member, active_deployment, client_for, monkeypatch
):
    async def slow_turn(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        await asyncio.sleep(0.3)
        yield TextDelta("Finally.")
        yield Usage("local", "local-retrieval", 1, 1, 300)

    monkeypatch.setattr("apps.conversations.api.views.HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr("apps.conversations.turns.run_turn", slow_turn)

    response = post_stream(client_for(acme.host, member), active_deployment.pk)

    frames = parse(collect(response))
    assert frames[0]["type"] == "ack"
    assert {"comment": "heartbeat"} in frames[1:-1]
    assert frames[-1]["type"] == "done"
    assert frames[-1]["content"] == "Finally."


def test_a_provider_failure_is_an_error_event_and_the_message_is_kept(
    db, acme, member, cloud_deployment, fake_openai, client_for
):
    fake_openai.script(Reply.error_reply(400, "no such model", type="invalid_request_error"))

    events = events_of(post_stream(client_for(acme.host, member), cloud_deployment.pk, "Hi"))

    assert [event["type"] for event in events] == ["ack", "error"]
    error = events[-1]
    assert (error["code"], error["retryable"], error["reply_id"]) == (
        "bad_request",
        True,
        events[0]["reply_id"],
    )
    with schema_context(acme.schema):
        reply = Message.objects.get(pk=error["reply_id"])
        assert reply.status == "failed"
        assert reply.reply_to.content == "Hi"


# Refused before the stream starts: the API's JSON errors


def test_without_credentials_the_answer_is_401_json(db, acme, active_deployment):
    response = post_stream(Client(HTTP_HOST=acme.host), active_deployment.pk)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "not_authenticated"


def test_an_invalid_key_is_refused_and_audited(db, acme, active_deployment):
    client = Client(HTTP_HOST=acme.host, HTTP_AUTHORIZATION="Bearer af_0123456789ab_nope")

    response = post_stream(client, active_deployment.pk)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    with schema_context(acme.schema):
        assert AuditEvent.objects.filter(action="auth.api_key_failed").exists()


def test_a_role_without_chat_is_refused_403_and_audited(db, acme, active_deployment, client_for):
    auditor = f"auditor@{acme.slug}.example"

    response = post_stream(client_for(acme.host, auditor), active_deployment.pk)

    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/json")
    with schema_context(acme.schema):
        event = AuditEvent.objects.filter(action="permission.denied").latest("id")
        assert not Conversation.objects.filter(deployment=active_deployment).exists()
    assert (event.actor_label, event.metadata["permission"]) == (auditor, "chat:use")


def test_a_key_without_the_chat_scope_is_refused(db, acme, member, active_deployment):
    client = bearer(acme, member, ["deployments:read"])

    assert post_stream(client, active_deployment.pk).status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"content": "hi"}, 400, "client_msg_id"),
        ({"content": "", "client_msg_id": "e-1"}, 400, "content"),
        ({"content": "hi", "client_msg_id": "e-2", "conversation_id": 999999}, 404, None),
    ],
)
def test_bad_input_is_refused_before_streaming(
    db, acme, member, active_deployment, client_for, body, status, field
):
    response = client_for(acme.host, member).post(
        stream_path(active_deployment.pk), body, content_type="application/json"
    )

    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    if field:
        assert field in response.json()["error"]["details"]


def test_malformed_json_and_other_media_types_are_refused(
    db, acme, member, active_deployment, client_for
):
    client = client_for(acme.host, member)

    broken = client.post(stream_path(active_deployment.pk), "{", content_type="application/json")
    form = client.post(stream_path(active_deployment.pk), {"content": "hi"})

    assert (broken.status_code, broken.json()["error"]["code"]) == (400, "parse_error")
    assert form.status_code == 415


def test_unknown_or_other_tenants_deployments_are_404(
    db, acme, globex, active_deployment, client_for
):
    assert post_stream(client_for(acme.host, acme.admin_email), 999999).status_code == 404
    outsider = client_for(globex.host, globex.admin_email)
    assert post_stream(outsider, active_deployment.pk).status_code == 404


def test_a_paused_deployment_answers_409(db, acme, member, active_deployment, client_for):
    with schema_context(acme.schema):
        Deployment.objects.filter(pk=active_deployment.pk).update(status="paused")

    response = post_stream(client_for(acme.host, member), active_deployment.pk)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "deployment_paused"


def test_too_many_messages_get_429_with_retry_after(
    db, acme, member, active_deployment, client_for, settings
):
    settings.RATE_LIMIT_DEPLOYMENT_PER_MINUTE = 0

    response = post_stream(client_for(acme.host, member), active_deployment.pk)

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response.json()["error"]["details"]["retry_after_seconds"] >= 1


def test_only_post_is_allowed(db, acme, member, active_deployment, client_for):
    response = client_for(acme.host, member).get(stream_path(active_deployment.pk))

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


# CSRF: a session's POST needs the token; a Bearer key does not


def test_a_session_post_without_the_csrf_token_is_refused(db, acme, member, active_deployment):
    client = Client(HTTP_HOST=acme.host, enforce_csrf_checks=True)
    with schema_context(acme.schema):
        client.force_login(acme.user(member))

    refused = post_stream(client, active_deployment.pk)

    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]["message"]
    token = "a" * 32
    client.cookies[django_settings.CSRF_COOKIE_NAME] = token
    allowed = client.post(
        stream_path(active_deployment.pk),
        {"content": QUESTION, "client_msg_id": msg_id()},
        content_type="application/json",
        headers={"X-CSRFToken": token, "Origin": f"http://{acme.host}"},
    )
    assert events_of(allowed)[-1]["type"] == "done"


def test_a_bearer_key_needs_no_csrf_token(db, acme, member, active_deployment):
    client = bearer(acme, member, ["chat:use"])
    client.handler.enforce_csrf_checks = True

    events = events_of(post_stream(client, active_deployment.pk))

    assert events[-1]["type"] == "done"


# Under the real ASGI server (uvicorn), with committed data


@contextlib.contextmanager
def member_with_key(org: Org) -> Iterator[tuple[User, str]]:
    """A member made for one test, with a key: their rate-limit counters are their own, whatever
    other tests sent this minute. Removed afterwards with their conversations and keys."""
    with schema_context(org.schema):
        user = User.objects.create_user(
            email=f"live-{uuid.uuid4().hex[:8]}@{org.slug}.example", role=Role.MEMBER
        )
        key = api_key_create(user=user, name="live", scopes=["chat:use", "deployments:read"])
    try:
        yield user, key.secret
    finally:
        with schema_context(org.schema):
            User.objects.filter(pk=user.pk).delete()


@pytest.fixture
def live_member(committed: None, acme: Org) -> Iterator[tuple[User, str]]:
    with member_with_key(acme) as made:
        yield made


def live_stream(server: Any, org: Org, key: str, deployment_id: int, content: str) -> list[Any]:
    with httpx.stream(
        "POST",
        f"{server.base_url}{stream_path(deployment_id)}",
        json={"content": content, "client_msg_id": msg_id()},
        headers={"Host": org.host, "Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200, response.read()
        return parse(response.read())


def test_each_tenants_reply_is_written_in_its_own_schema_under_asgi(
    committed, product_server, acme, globex, active_deployment, live_member
):
    _user, acme_key = live_member
    globex_deployment = deploy_for(globex, "it-helpdesk", HELPDESK_SETTINGS)
    try:
        with member_with_key(globex) as (_globex_user, globex_key):
            results = _stream_concurrently(
                product_server,
                [(acme, acme_key, active_deployment.pk, QUESTION)] * 3
                + [(globex, globex_key, globex_deployment.pk, "My printer jams")] * 3,
            )
            for (org, *_rest), frames in results:
                ack, done = frames[0], frames[-1]
                assert done["type"] == "done", frames
                with schema_context(org.schema):
                    reply = Message.objects.get(pk=ack["reply_id"])
                    assert (reply.status, reply.content) == ("complete", done["content"])
                    assert reply.conversation.title == ack["conversation_title"]
            assert len(results) == 6
            with schema_context(globex.schema):
                titles = set(Conversation.objects.values_list("title", flat=True))
            assert titles == {"My printer jams"}
    finally:
        remove_deployment(globex, globex_deployment)


def _stream_concurrently(server: Any, calls: list[tuple[Org, str, int, str]]) -> list[Any]:
    """Run the streams all at once: each request's database work must stay in its tenant."""
    results: list[Any] = []

    def run(call: tuple[Org, str, int, str]) -> None:
        results.append((call, live_stream(server, *call)))

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_a_reply_outlives_a_client_that_goes_away(
    committed, product_server, acme, cloud_deployment, fake_openai, live_member
):
    _user, key = live_member
    pieces = tuple(f"part {i}. " for i in range(12))
    fake_openai.delay = 0.15
    fake_openai.script(Reply(text=pieces))

    with httpx.stream(
        "POST",
        f"{product_server.base_url}{stream_path(cloud_deployment.pk)}",
        json={"content": "Tell me a long story", "client_msg_id": msg_id()},
        headers={"Host": acme.host, "Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        lines = response.iter_lines()
        ack = None
        for line in lines:
            if line.startswith("data: "):
                event = json.loads(line[len("data: ") :])
                if event["type"] == "ack":
                    ack = event
                if event["type"] == "delta":
                    break
        assert ack is not None
    # The connection is closed here, long before the provider has finished.

    deadline = time.monotonic() + 20
    while True:
        with schema_context(acme.schema):
            reply = Message.objects.get(pk=ack["reply_id"])
        if reply.status not in ("pending", "streaming") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert reply.status == "complete"
    assert reply.content == "".join(pieces)
    with schema_context(acme.schema):
        call = RuntimeCall.objects.get(deployment=cloud_deployment, outcome="ok")
    assert call.output_tokens == 7
    assert "Traceback" not in product_server.log_path.read_text()


async def test_a_reply_the_server_stops_is_stored_failed_and_retryable(
    committed, acme, active_deployment, live_member, monkeypatch
):
    from apps.conversations.api.views import StreamedReply, request_db
    from apps.conversations.services import message_accept

    async def endless_turn(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        yield TextDelta("Half an answer")
        await asyncio.sleep(60)
        yield Usage("local", "local-retrieval", 1, 1, 1)

    monkeypatch.setattr("apps.conversations.turns.run_turn", endless_turn)
    user, _key = live_member
    accepted = await request_db(
        acme.tenant,
        message_accept,
        user=user,
        deployment=active_deployment,
        content=QUESTION,
        client_msg_id=msg_id(),
    )
    streamed = StreamedReply(accepted, tenant=acme.tenant, user_id=user.pk)
    task = asyncio.ensure_future(streamed.run())
    while not streamed.streamed:
        await asyncio.sleep(0.01)

    task.cancel()  # what the event loop's shutdown does to a running reply
    with contextlib.suppress(asyncio.CancelledError):
        await task

    reply = await request_db(acme.tenant, Message.objects.get, pk=accepted.reply.pk)
    assert (reply.status, reply.error_code, reply.content) == (
        "failed",
        "interrupted",
        "Half an answer",
    )
