"""The conversations REST API: sending a message and getting the whole reply, retrying a failed
reply, and a person's own conversations (list, detail, archive, delete, messages, export)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from apps.accounts.api_keys import api_key_create
from apps.accounts.models import Role
from apps.accounts.services import user_create
from apps.audit.models import AuditEvent
from apps.conversations.models import Conversation, Message, UsageDay
from apps.deployments.models import Deployment, RuntimeCall
from tests.conftest import PASSWORD, Org
from tests.runtime.fake_openai import FakeOpenAI, Reply

API = "/api/v1"
QUESTION = "How do I connect to the VPN from home?"


def fresh_member(org: Org) -> str:
    """A member made for one test. Rate-limit counters live in the shared cache for a minute:
    a test's messages must not use up the allowance of people other tests chat as."""
    email = f"chat-{uuid.uuid4().hex[:10]}@{org.slug}.example"
    with schema_context(org.schema):
        user_create(email=email, password=PASSWORD, role=Role.MEMBER, email_verified=True)
    return email


@pytest.fixture
def member(db: Any, acme: Org) -> str:
    return fresh_member(acme)


def msg_id() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def send(client: Client, deployment_id: int, content: str = QUESTION, **fields: Any) -> Any:
    fields.setdefault("client_msg_id", msg_id())
    return client.post(
        f"{API}/deployments/{deployment_id}/messages/",
        {"content": content, **fields},
        content_type="application/json",
    )


def bearer(org: Org, email: str, scopes: list[str]) -> Client:
    with schema_context(org.schema):
        key = api_key_create(user=org.user(email), name="chat", scopes=scopes).secret
    return Client(HTTP_HOST=org.host, HTTP_AUTHORIZATION=f"Bearer {key}")


def collect(response: Any) -> bytes:
    """The body of a streamed response, consumed the way an ASGI server would (async)."""

    async def read() -> bytes:
        return b"".join([part async for part in response.streaming_content])

    return bytes(async_to_sync(read)())


def conversation_of(org: Org, email: str, deployment: Deployment, title: str, *texts: str) -> int:
    """A stored conversation with one message per text (user and agent in turn)."""
    with schema_context(org.schema):
        conversation = Conversation.objects.create(
            deployment_id=deployment.pk, user=org.user(email), title=title
        )
        for index, text in enumerate(texts):
            role = Message.Role.USER if index % 2 == 0 else Message.Role.ASSISTANT
            Message.objects.create(conversation=conversation, role=role, content=text)
        return int(conversation.pk)


# Sending


def test_a_message_gets_the_whole_reply_and_is_stored_with_its_usage(
    db, acme, member, active_deployment, client_for
):

    response = send(client_for(acme.host, member), active_deployment.pk)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["message"]["role"] == "user"
    assert body["message"]["content"] == QUESTION
    reply = body["reply"]
    assert (reply["role"], reply["status"], reply["reply_to"]) == (
        "assistant",
        "complete",
        body["message"]["id"],
    )
    assert "VPN connection problems" in reply["content"]
    assert reply["usage"]["provider"] == "local"
    assert reply["tools"][0]["name"] == "knowledge_search"
    with schema_context(acme.schema):
        conversation = Conversation.objects.get(pk=body["conversation_id"])
        assert conversation.user.email == member
        assert conversation.title == QUESTION
        call = RuntimeCall.objects.get(deployment=active_deployment)
        usage = UsageDay.objects.get(deployment=active_deployment)
    assert (call.outcome, call.user_id) == ("ok", acme.user(member).pk)
    assert (usage.messages, usage.tokens_out) == (1, reply["usage"]["output_tokens"])


def test_the_next_message_continues_the_conversation(
    db, acme, member, active_deployment, client_for
):
    client = client_for(acme.host, member)
    first = send(client, active_deployment.pk).json()

    second = send(
        client, active_deployment.pk, "And my password?", conversation_id=first["conversation_id"]
    )

    assert second.status_code == 201
    assert second.json()["conversation_id"] == first["conversation_id"]
    with schema_context(acme.schema):
        assert Message.objects.filter(conversation_id=first["conversation_id"]).count() == 4


def test_the_same_client_msg_id_returns_the_stored_pair_without_asking_again(
    db, acme, member, active_deployment, client_for, monkeypatch
):
    client = client_for(acme.host, member)
    first = send(client, active_deployment.pk, client_msg_id="once-1").json()

    def no_provider(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the provider was asked again")

    monkeypatch.setattr("apps.conversations.turns.run_turn", no_provider)
    again = send(client, active_deployment.pk, "something else", client_msg_id="once-1")

    assert again.status_code == 200
    assert again.json() == first
    with schema_context(acme.schema):
        assert RuntimeCall.objects.filter(deployment=active_deployment).count() == 1
        assert Message.objects.filter(conversation_id=first["conversation_id"]).count() == 2


def test_a_blocked_topic_is_answered_with_the_refusal_and_no_provider_call(
    db, acme, member, active_deployment, client_for
):
    response = send(
        client_for(acme.host, member),
        active_deployment.pk,
        "Can you help me with disabling antivirus on my laptop?",
    )

    assert response.status_code == 201
    reply = response.json()["reply"]
    assert reply["content"].startswith("I can't help with that.")
    assert reply["error"]["code"] == "blocked_topic"
    with schema_context(acme.schema):
        assert not RuntimeCall.objects.filter(deployment=active_deployment).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": "hi"}, "client_msg_id"),
        ({"client_msg_id": "x-1"}, "content"),
        ({"content": "  ", "client_msg_id": "x-2"}, "content"),
        ({"content": "hi", "client_msg_id": "not ok!"}, "client_msg_id"),
        ({"content": "hi", "client_msg_id": "x-3", "conversation_id": "abc"}, "conversation_id"),
        ({"content": "x" * 6001, "client_msg_id": "x-4"}, "content"),
    ],
)
def test_bad_input_is_explained_and_nothing_is_stored(
    db, acme, member, active_deployment, client_for, body, field
):
    response = client_for(acme.host, member).post(
        f"{API}/deployments/{active_deployment.pk}/messages/", body, content_type="application/json"
    )

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    with schema_context(acme.schema):
        assert not Conversation.objects.filter(deployment=active_deployment).exists()


def test_another_persons_conversation_cannot_be_continued(
    db, acme, member, active_deployment, client_for
):
    theirs = conversation_of(acme, acme.admin_email, active_deployment, "Admin's", "hello")

    response = send(client_for(acme.host, member), active_deployment.pk, conversation_id=theirs)

    assert response.status_code == 404
    with schema_context(acme.schema):
        assert Message.objects.filter(conversation_id=theirs).count() == 1


def test_another_tenants_deployment_is_not_found(db, acme, globex, active_deployment, client_for):
    response = send(client_for(globex.host, globex.member_emails[0]), active_deployment.pk)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_roles_without_chat_are_refused(db, acme, active_deployment, client_for):
    auditor = client_for(acme.host, f"auditor@{acme.slug}.example")

    assert send(auditor, active_deployment.pk).status_code == 403
    assert auditor.get(f"{API}/conversations/").status_code == 403
    assert Client(HTTP_HOST=acme.host).get(f"{API}/conversations/").status_code == 401


def test_an_api_key_needs_the_chat_scope(db, acme, member, active_deployment):

    assert send(bearer(acme, member, ["chat:use"]), active_deployment.pk).status_code == 201
    refused = send(bearer(acme, member, ["deployments:read"]), active_deployment.pk)
    assert refused.status_code == 403
    with schema_context(acme.schema):
        event = AuditEvent.objects.filter(action="permission.denied").latest("id")
    assert event.metadata["permission"] == "chat:use"


def test_too_many_messages_get_429_with_retry_after(
    db, acme, member, active_deployment, client_for, settings
):
    settings.RATE_LIMIT_DEPLOYMENT_PER_MINUTE = 0
    client = client_for(acme.host, member)

    response = send(client, active_deployment.pk)

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "rate_limited"


def test_a_failed_provider_answers_503_keeps_the_message_and_the_reply_can_be_retried(
    db, acme, member, cloud_deployment, fake_openai: FakeOpenAI, client_for
):
    client = client_for(acme.host, member)
    fake_openai.script(Reply.error_reply(400, "no such model", type="invalid_request_error"))

    failed = send(client, cloud_deployment.pk, "Hello there")

    assert failed.status_code == 503
    error = failed.json()["error"]
    assert error["code"] == "provider_failed"
    assert error["details"]["retryable"] is True
    assert error["details"]["kind"] == "bad_request"
    reply_id, conversation_id = error["details"]["reply_id"], error["details"]["conversation_id"]
    with schema_context(acme.schema):
        reply = Message.objects.get(pk=reply_id)
        assert (reply.status, reply.error_code) == ("failed", "bad_request")
        assert reply.reply_to.content == "Hello there"
        assert RuntimeCall.objects.get(deployment=cloud_deployment).outcome == "failed"

    fake_openai.script(Reply(text=("Hello ", "again.")))
    retried = client.post(f"{API}/conversations/{conversation_id}/replies/{reply_id}/retry/")

    assert retried.status_code == 200, retried.content
    assert retried.json()["reply"]["id"] == reply_id
    assert retried.json()["reply"]["content"] == "Hello again."
    assert retried.json()["reply"]["status"] == "complete"
    again = client.post(f"{API}/conversations/{conversation_id}/replies/{reply_id}/retry/")
    assert again.status_code == 409


def test_a_reply_of_another_conversation_cannot_be_retried_through_this_one(
    db, acme, member, active_deployment, client_for
):
    client = client_for(acme.host, member)
    first = send(client, active_deployment.pk).json()
    other = conversation_of(acme, member, active_deployment, "Other", "hi")

    response = client.post(f"{API}/conversations/{other}/replies/{first['reply']['id']}/retry/")

    assert response.status_code == 404


# Reading


def test_the_list_shows_only_ones_own_conversations_most_recent_first(
    db, acme, member, active_deployment, client_for
):
    older = conversation_of(acme, member, active_deployment, "Printer", "The printer jams")
    newer = conversation_of(acme, member, active_deployment, "Wi-Fi", "No Wi-Fi", "Try again")
    conversation_of(acme, acme.admin_email, active_deployment, "Admin's own", "secret")

    body = client_for(acme.host, member).get(f"{API}/conversations/").json()

    assert [row["id"] for row in body["results"]] == [newer, older]
    first = body["results"][0]
    assert first["deployment"] == {
        "id": active_deployment.pk,
        "name": active_deployment.name,
        "slug": active_deployment.slug,
    }
    assert (first["message_count"], first["preview"], first["archived"]) == (2, "Try again", False)


def test_the_list_filters_by_deployment_archive_state_and_words(
    db, acme, member, active_deployment, client_for
):
    client = client_for(acme.host, member)
    printer = conversation_of(acme, member, active_deployment, "Printer", "The printer jams")
    wifi = conversation_of(acme, member, active_deployment, "Network", "No Wi-Fi on floor 3")
    client.post(f"{API}/conversations/{printer}/archive/")

    def ids(query: str) -> list[int]:
        response = client.get(f"{API}/conversations/?{query}")
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids("archived=true") == [printer]
    assert ids("archived=false") == [wifi]
    assert set(ids("")) == {printer, wifi}
    assert ids("q=floor") == [wifi]  # a message's text
    assert ids("q=PRINT") == [printer]  # the title, any case
    assert ids(f"deployment={active_deployment.pk}&q=network") == [wifi]
    assert ids("deployment=999999") == []
    assert client.get(f"{API}/conversations/?archived=maybe").status_code == 400


def test_the_list_pages_with_a_cursor(db, acme, member, active_deployment, client_for):
    made = [conversation_of(acme, member, active_deployment, f"C{i}", "hi") for i in range(5)]
    client = client_for(acme.host, member)

    first = client.get(f"{API}/conversations/?page_size=2").json()
    second = client.get(first["next"]).json()

    assert [row["id"] for row in first["results"] + second["results"]] == made[::-1][:4]


def test_the_list_costs_the_same_queries_for_many_conversations(
    db, acme, member, active_deployment, client_for
):
    client = client_for(acme.host, member)
    conversation_of(acme, member, active_deployment, "One", "a", "b")
    client.get(f"{API}/conversations/")  # warm up: session, content types

    with CaptureQueriesContext(connection) as few:
        assert client.get(f"{API}/conversations/").status_code == 200
    for index in range(6):
        conversation_of(acme, member, active_deployment, f"More {index}", "a", "b", "c")
    with CaptureQueriesContext(connection) as many:
        response = client.get(f"{API}/conversations/?q=a")

    assert len(response.json()["results"]) == 7
    assert len(many.captured_queries) == len(few.captured_queries)


def test_a_conversation_of_another_user_or_tenant_is_not_found_and_unchanged(
    db, acme, member, globex, active_deployment, client_for
):
    theirs = conversation_of(acme, member, active_deployment, "Mine", "hello")
    admin = client_for(acme.host, acme.admin_email)
    outsider = client_for(globex.host, globex.admin_email)

    for client in (admin, outsider):
        assert client.get(f"{API}/conversations/{theirs}/").status_code == 404
        assert client.get(f"{API}/conversations/{theirs}/messages/").status_code == 404
        assert client.get(f"{API}/conversations/{theirs}/export/").status_code == 404
        assert client.post(f"{API}/conversations/{theirs}/archive/").status_code == 404
        assert client.delete(f"{API}/conversations/{theirs}/").status_code == 404

    with schema_context(acme.schema):
        conversation = Conversation.objects.get(pk=theirs)
        assert conversation.archived_at is None
        assert conversation.messages.count() == 1


def test_archive_and_unarchive(db, acme, member, active_deployment, client_for):
    conversation = conversation_of(acme, member, active_deployment, "Old", "hello")
    client = client_for(acme.host, member)

    archived = client.post(f"{API}/conversations/{conversation}/archive/")
    assert archived.status_code == 200
    assert archived.json()["archived"] is True
    assert client.get(f"{API}/conversations/{conversation}/").json()["archived_at"]

    restored = client.post(f"{API}/conversations/{conversation}/unarchive/")
    assert restored.json()["archived"] is False


def test_deleting_a_conversation_removes_its_messages_and_is_audited(
    db, acme, member, active_deployment, client_for
):
    conversation = conversation_of(acme, member, active_deployment, "Gone", "a", "b")

    response = client_for(acme.host, member).delete(f"{API}/conversations/{conversation}/")

    assert response.status_code == 204
    with schema_context(acme.schema):
        assert not Conversation.objects.filter(pk=conversation).exists()
        assert not Message.objects.filter(conversation_id=conversation).exists()
        event = AuditEvent.objects.get(action="conversation.deleted", target_id=str(conversation))
    assert (event.actor_label, event.metadata["messages"]) == (member, 2)


def test_messages_come_a_page_at_a_time_from_the_newest(
    db, acme, member, active_deployment, client_for
):
    texts = [f"message {i}" for i in range(7)]
    conversation = conversation_of(acme, member, active_deployment, "Long", *texts)
    client = client_for(acme.host, member)

    newest = client.get(f"{API}/conversations/{conversation}/messages/?limit=3").json()
    older = client.get(newest["next"]).json()
    oldest = client.get(older["next"]).json()

    assert [m["content"] for m in newest["results"]] == texts[4:]
    assert [m["content"] for m in older["results"]] == texts[1:4]
    assert [m["content"] for m in oldest["results"]] == texts[:1]
    assert (newest["has_more"], oldest["has_more"], oldest["next"]) == (True, False, None)
    assert [m["role"] for m in newest["results"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize("query", ["limit=101", "limit=0", "before=abc"])
def test_a_bad_page_is_refused(db, acme, member, active_deployment, client_for, query):
    conversation = conversation_of(acme, member, active_deployment, "Long", "a")

    response = client_for(acme.host, member).get(
        f"{API}/conversations/{conversation}/messages/?{query}"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_export_as_json_and_markdown_is_audited(db, acme, member, active_deployment, client_for):
    conversation = conversation_of(
        acme, member, active_deployment, "VPN trouble", "The VPN drops", "Restart the client"
    )
    client = client_for(acme.host, member)

    as_json = client.get(f"{API}/conversations/{conversation}/export/?format=json")
    as_markdown = client.get(f"{API}/conversations/{conversation}/export/?format=markdown")

    assert as_json.status_code == 200
    assert as_json["Content-Disposition"].endswith(f'conversation-{conversation}.json"')
    assert [m["content"] for m in as_json.json()["messages"]] == [
        "The VPN drops",
        "Restart the client",
    ]
    assert as_markdown.status_code == 200
    assert as_markdown["Content-Type"].startswith("text/markdown")
    text = as_markdown.content.decode()
    assert text.startswith("# VPN trouble")
    assert "## You" in text
    assert f"## {active_deployment.name}" in text
    assert "Restart the client" in text
    with schema_context(acme.schema):
        formats = list(
            AuditEvent.objects.filter(action="conversation.exported", target_id=str(conversation))
            .order_by("id")
            .values_list("metadata__format", flat=True)
        )
    assert formats == ["json", "markdown"]


def test_an_unknown_export_format_is_a_json_error(db, acme, member, active_deployment, client_for):
    conversation = conversation_of(acme, member, active_deployment, "X", "a")

    response = client_for(acme.host, member).get(
        f"{API}/conversations/{conversation}/export/?format=pdf"
    )

    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert "format" in response.json()["error"]["details"]
