"""The chat pages, as a person uses them: the agents one can chat with, one agent's chat with
the conversation list and its search, and the history rendered by the server."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from apps.conversations.models import Conversation, Message
from apps.deployments.models import Deployment, DeploymentSecret
from apps.marketplace.models import Blueprint

pytestmark = pytest.mark.django_db


def html(response: Any) -> str:
    return response.content.decode()


def _deployment(org: Any, name: str = "Helpdesk", **fields: Any) -> Deployment:
    with schema_context("public"):
        blueprint = Blueprint.objects.get(slug="it-helpdesk")
        version = blueprint.versions.get(version="1.0.0")
    with schema_context(org.schema):
        return Deployment.objects.create(
            name=name,
            slug=re.sub(r"[^a-z0-9]+", "-", name.lower()),
            blueprint=blueprint,
            version=version,
            settings={"organisation_name": "Acme Corp", "helpdesk_email": "help@acme.example"},
            status=fields.pop("status", Deployment.Status.ACTIVE),
            **fields,
        )


def _conversation(org: Any, deployment: Deployment, email: str, title: str, *texts: str):
    with schema_context(org.schema):
        conversation = Conversation.objects.create(
            deployment=deployment, user=org.user(email), title=title
        )
        for index, text in enumerate(texts):
            Message.objects.create(
                conversation=conversation,
                role=Message.Role.USER if index % 2 == 0 else Message.Role.ASSISTANT,
                content=text,
            )
        return conversation


def test_the_chat_index_lists_the_agents_that_answer(client_for, acme):
    _deployment(acme, "Helpdesk")
    _deployment(acme, "Sleeping desk", status=Deployment.Status.PAUSED)

    page = html(client_for(acme.host, acme.member_emails[0]).get("/chat/"))

    assert "Helpdesk" in page
    assert "Sleeping desk" not in page
    assert "Runs on the built-in local provider." in page


def test_a_member_gets_the_chat_of_an_agent_with_its_composer(client_for, acme):
    deployment = _deployment(acme)

    response = client_for(acme.host, acme.member_emails[0]).get(f"/chat/{deployment.pk}/")

    page = html(response)
    assert response.status_code == 200
    assert 'role="log"' in page
    assert 'aria-live="polite"' in page
    assert 'id="chat-input"' in page
    assert f'data-socket="/ws/deployments/{deployment.pk}/chat/"' in page
    assert "New conversation" in page
    assert "runs offline on the built-in local provider" in page
    assert 'id="chat-offline" hidden' not in page


def test_with_a_key_for_its_provider_the_agent_is_not_offline(client_for, acme):
    deployment = _deployment(acme)
    with schema_context(acme.schema):
        DeploymentSecret.objects.create(deployment=deployment, name="openai_api_key", value="sk")

    page = html(client_for(acme.host, acme.member_emails[0]).get(f"/chat/{deployment.pk}/"))

    assert 'id="chat-offline" hidden' in page


@pytest.mark.parametrize("path", ["/chat/", "/chat/{d}/", "/chat/{d}/{c}/"])
def test_auditors_may_not_chat(client_for, acme, path):
    deployment = _deployment(acme)
    conversation = _conversation(acme, deployment, "auditor@acme.example", "Mine", "Hello")

    response = client_for(acme.host, "auditor@acme.example").get(
        path.format(d=deployment.pk, c=conversation.pk)
    )

    assert response.status_code == 403


def test_anonymous_visitors_are_sent_to_sign_in(client_for, acme):
    deployment = _deployment(acme)

    response = client_for(acme.host).get(f"/chat/{deployment.pk}/")

    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_another_persons_conversation_is_not_found(client_for, acme):
    deployment = _deployment(acme)
    other = _deployment(acme, "Other desk")
    theirs = _conversation(acme, deployment, acme.admin_email, "Admin's secret plan", "Hi")
    mine = _conversation(acme, other, acme.member_emails[0], "Mine", "Hi")
    member = client_for(acme.host, acme.member_emails[0])

    assert member.get(f"/chat/{deployment.pk}/{theirs.pk}/").status_code == 404
    assert member.get(f"/chat/{deployment.pk}/{mine.pk}/").status_code == 404  # another agent's
    assert member.get(f"/chat/{other.pk}/{mine.pk}/").status_code == 200
    assert "Admin&#x27;s secret plan" not in html(member.get(f"/chat/{deployment.pk}/"))


def test_another_organisations_agent_is_not_found(client_for, acme, globex):
    theirs = _deployment(globex, "Globex desk")

    member = client_for(acme.host, acme.member_emails[0])

    with schema_context(acme.schema):
        assert not Deployment.objects.filter(pk=theirs.pk).exists()
    assert member.get(f"/chat/{theirs.pk}/").status_code == 404


def test_a_deleted_agent_is_not_found(client_for, acme):
    deployment = _deployment(acme, status=Deployment.Status.DELETED)

    assert client_for(acme.host, acme.admin_email).get(f"/chat/{deployment.pk}/").status_code == 404


def test_search_finds_conversations_by_title_and_by_message_text(client_for, acme):
    deployment = _deployment(acme)
    email = acme.member_emails[0]
    _conversation(acme, deployment, email, "Printer on floor 3", "The printer is offline")
    _conversation(acme, deployment, email, "Connection trouble", "My VPN drops every hour")
    _conversation(acme, deployment, email, "Laptop request", "I need a new laptop")
    member = client_for(acme.host, email)

    by_title = html(member.get(f"/chat/{deployment.pk}/", {"q": "printer"}))
    by_text = html(member.get(f"/chat/{deployment.pk}/", {"q": "vpn DROPS"}))
    nothing = html(member.get(f"/chat/{deployment.pk}/", {"q": "zebra"}))

    assert "Printer on floor 3" in by_title
    assert "Connection trouble" not in by_title
    assert "1 conversation matches" in by_title
    assert "Connection trouble" in by_text
    assert "My VPN drops every hour" in by_text  # the matching message is quoted
    assert "Printer on floor 3" not in by_text
    assert "No conversation matches." in nothing


def test_the_list_takes_the_same_queries_for_many_conversations(client_for, acme):
    deployment = _deployment(acme)
    email = acme.member_emails[0]
    member = client_for(acme.host, email)
    _conversation(acme, deployment, email, "First", "About the VPN")
    member.get(f"/chat/{deployment.pk}/", {"q": "vpn"})  # warm up sessions and caches

    with CaptureQueriesContext(connection) as one:
        member.get(f"/chat/{deployment.pk}/", {"q": "vpn"})
    for index in range(10):
        _conversation(acme, deployment, email, f"Chat {index}", "VPN again")
    with CaptureQueriesContext(connection) as eleven:
        page = html(member.get(f"/chat/{deployment.pk}/", {"q": "vpn"}))

    assert "11 conversations match" in page
    assert len(eleven) == len(one)


def test_the_latest_messages_are_rendered_by_the_server_with_a_way_to_earlier_ones(
    client_for, acme
):
    deployment = _deployment(acme)
    email = acme.member_emails[0]
    texts = [f"Message number {n:02d}" for n in range(35)]
    conversation = _conversation(acme, deployment, email, "Long one", *texts)
    member = client_for(acme.host, email)

    page = html(member.get(f"/chat/{deployment.pk}/{conversation.pk}/"))

    assert "Message number 34" in page
    assert "Message number 05" in page
    assert "Message number 04" not in page
    assert page.index("Message number 05") < page.index("Message number 34")
    assert 'class="messages"' not in page  # not mistaken for the flash messages of the layout
    with schema_context(acme.schema):
        fifth = conversation.messages.order_by("id")[5].pk
    assert f'href="?before={fifth}"' in page
    assert "Load earlier messages" in page

    earlier = html(member.get(f"/chat/{deployment.pk}/{conversation.pk}/", {"before": fifth}))
    assert "Message number 00" in earlier
    assert "Message number 04" in earlier
    assert "Message number 05" not in earlier
    assert "Show the latest messages" in earlier
    assert 'id="chat-input"' not in earlier


def test_failed_and_stopped_replies_show_why_with_a_way_to_try_again(client_for, acme):
    deployment = _deployment(acme)
    email = acme.member_emails[0]
    conversation = _conversation(acme, deployment, email, "Trouble", "Question one")
    with schema_context(acme.schema):
        question = conversation.messages.get()
        Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            reply_to=question,
            status=Message.Status.FAILED,
            content="Half an ans",
            error_code="timeout",
            error_message="The provider did not answer in time.",
            tools=[{"name": "knowledge_search", "arguments": {}, "error": None}],
        )

    page = html(client_for(acme.host, email).get(f"/chat/{deployment.pk}/{conversation.pk}/"))

    assert "The reply failed. The provider did not answer in time." in page
    assert "data-retry=" in page
    assert "Try again" in page
    assert "Used knowledge search" in page


def test_a_paused_agent_says_why_and_offers_no_composer(client_for, acme):
    deployment = _deployment(acme, status=Deployment.Status.PAUSED)
    email = acme.member_emails[0]
    conversation = _conversation(acme, deployment, email, "Before the pause", "Earlier question")
    member = client_for(acme.host, email)

    page = html(member.get(f"/chat/{deployment.pk}/{conversation.pk}/"))

    assert "This agent is paused. Ask an operator to resume it." in page
    assert 'id="chat-input"' not in page
    assert 'data-live="false"' in page
    assert "Earlier question" in page  # the history stays readable


def test_stored_message_html_is_shown_as_text(client_for, acme):
    deployment = _deployment(acme)
    email = acme.member_emails[0]
    conversation = _conversation(
        acme,
        deployment,
        email,
        "<b>Title</b>",
        "<script>alert('x')</script>",
        '<img src=x onerror="alert(1)"> [click](javascript:alert(1))',
    )

    page = html(client_for(acme.host, email).get(f"/chat/{deployment.pk}/{conversation.pk}/"))

    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert 'href="javascript' not in page
    assert "&lt;b&gt;Title&lt;/b&gt;" in page
