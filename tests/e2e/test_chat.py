"""A developer signs in, deploys a shipped blueprint from the marketplace, chats with it in a real
browser (by keyboard), sees the reply stream in over the websocket, and finds the conversation
again after a reload."""

import json
import re

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from apps.accounts.models import User
from apps.conversations.models import Conversation, Message
from apps.deployments.models import Deployment
from apps.marketplace.models import Blueprint
from tests.e2e.test_members import _off_the_browser_loop, _sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("committed")]

AGENT = "VPN desk"
QUESTION = "How do I connect to the VPN from home?"

# What the page showed between sending and the end of the reply: the indicators are on screen
# for milliseconds on the local provider, too briefly to poll for.
WATCH_INDICATORS = """() => {
  const seen = { typing: false, stop: false, busy: false };
  const look = () => {
    if (!document.getElementById("chat-typing").hidden) { seen.typing = true; }
    if (!document.getElementById("chat-stop").hidden) { seen.stop = true; }
    if (document.getElementById("chat-log").getAttribute("aria-busy") === "true") { seen.busy = true; }
  };
  new MutationObserver(look).observe(document.getElementById("chat"), {
    attributes: true, subtree: true, childList: true, characterData: true,
  });
  window.chatIndicatorsSeen = seen;
}"""


def _remove_deployments(org, name: str) -> None:
    def work():
        with schema_context(org.schema):
            # Conversations, messages and usage go with the deployment.
            for deployment in Deployment.objects.filter(name=name):
                deployment.delete()

    _off_the_browser_loop(work)


def _seed_agent(org, name: str, messages: list[tuple[str, str, str]]) -> tuple[int, int]:
    """A deployment of IT Helpdesk (without the deploy flow) and a conversation of the admin."""

    def work():
        with schema_context("public"):
            blueprint = Blueprint.objects.get(slug="it-helpdesk")
            version = blueprint.versions.get(version="1.0.0")
        with schema_context(org.schema):
            deployment = Deployment.objects.create(
                name=name,
                slug=name.lower().replace(" ", "-"),
                blueprint=blueprint,
                version=version,
                settings={
                    "organisation_name": "Acme Corp",
                    "helpdesk_email": "help@acme.example",
                    "vpn_client": "WireGuard",
                },
                status=Deployment.Status.ACTIVE,
            )
            conversation = Conversation.objects.create(
                deployment=deployment,
                user=User.objects.get(email=org.admin_email),
                title="Seeded conversation",
            )
            previous = None
            for role, status, content in messages:
                previous = Message.objects.create(
                    conversation=conversation,
                    role=role,
                    status=status,
                    content=content,
                    reply_to=previous if role == Message.Role.ASSISTANT else None,
                    error_code="timeout" if status == Message.Status.FAILED else "",
                    error_message="The provider did not answer in time."
                    if status == Message.Status.FAILED
                    else "",
                )
            return deployment.pk, conversation.pk

    return _off_the_browser_loop(work)


def _user_messages(org, conversation_id: int) -> list[str]:
    def work():
        with schema_context(org.schema):
            return list(
                Message.objects.filter(
                    conversation_id=conversation_id, role=Message.Role.USER
                ).values_list("content", flat=True)
            )

    return _off_the_browser_loop(work)


def _deploy_it_helpdesk(page, base: str) -> int:
    page.goto(f"{base}/marketplace/?q=helpdesk")
    page.get_by_role("link", name=re.compile("IT Helpdesk")).first.click()
    deploy = page.get_by_role("link", name="Deploy", exact=True)
    deploy.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Deploy IT Helpdesk")).to_be_visible()
    page.get_by_label(re.compile(r"^Name")).fill(AGENT)
    page.get_by_label(re.compile(r"^Organisation name")).fill("Acme Corp")
    page.get_by_label(re.compile(r"^Helpdesk email")).fill("help@acme.example")
    page.get_by_label("VPN client").select_option("WireGuard")
    page.get_by_role("button", name="Deploy", exact=True).press("Enter")
    expect(page.get_by_role("heading", name=re.compile(AGENT))).to_be_visible()
    expect(page.locator(".badge-status-active").first).to_be_visible()
    found = re.search(r"/deployments/(\d+)/", page.url)
    assert found, page.url
    return int(found.group(1))


def test_deploy_chat_see_the_reply_stream_and_find_it_after_a_reload(page, product_server, acme):
    base = f"http://{acme.host}:{product_server.port}"
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: frames.append(frame)))
    _sign_in(page, base, acme.admin_email)
    try:
        deployment_id = _deploy_it_helpdesk(page, base)

        page.goto(f"{base}/chat/")
        agent = page.get_by_role("link", name=re.compile(AGENT))
        agent.focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name=AGENT, level=1)).to_be_visible()
        expect(page.get_by_role("note")).to_contain_text("runs offline on the built-in local")
        expect(page.locator("#chat-status")).to_have_text("Connected.")
        composer = page.get_by_label(f"Your message to {AGENT}")
        expect(composer).to_be_enabled()

        page.evaluate(WATCH_INDICATORS)
        composer.focus()
        page.keyboard.type(QUESTION)
        page.keyboard.press("Enter")

        log = page.get_by_role("log")
        question = log.locator(".chat-role-user").last
        reply = log.locator(".chat-role-assistant").last
        expect(question).to_contain_text(QUESTION)
        expect(reply).to_have_attribute("data-status", "complete")
        expect(reply).to_contain_text("VPN")
        expect(reply.locator(".chat-tools")).to_contain_text("Used knowledge search")
        assert page.evaluate("window.chatIndicatorsSeen") == {
            "typing": True,
            "stop": True,
            "busy": True,
        }
        expect(page.locator("#chat-typing")).to_be_hidden()
        expect(page.get_by_role("button", name="Stop")).to_be_hidden()
        expect(log).to_have_attribute("aria-busy", "false")
        expect(composer).to_be_focused()
        expect(composer).to_have_value("")
        kinds = [re.search(r'"type": ?"(\w+)"', frame).group(1) for frame in frames]
        assert kinds.count("ack") == 1
        assert "delta" in kinds
        assert kinds.index("ack") < kinds.index("delta") < kinds.index("done")
        # The new conversation got its address without a page load.
        expect(page).to_have_url(re.compile(rf"/chat/{deployment_id}/\d+/$"))
        streamed = reply.inner_text()

        page.reload()

        log = page.get_by_role("log")
        expect(log.locator(".chat-role-user")).to_have_count(1)
        expect(log.locator(".chat-role-user")).to_contain_text(QUESTION)
        expect(log.locator(".chat-role-assistant")).to_have_count(1)
        expect(log.locator(".chat-role-assistant")).to_contain_text("VPN")
        # Rendered from the server the same way it was rendered while streaming.
        assert log.locator(".chat-role-assistant .chat-body").inner_text() in streamed
        current = page.get_by_role("navigation", name="Your conversations").locator(
            "a[aria-current=page]"
        )
        expect(current).to_contain_text("How do I connect to the VPN")
        expect(page.locator("#chat-status")).to_have_text("Connected.")
    finally:
        _remove_deployments(acme, AGENT)


def test_markdown_from_the_agent_cannot_become_markup(page, product_server, acme):
    base = f"http://{acme.host}:{product_server.port}"
    _sign_in(page, base, acme.admin_email)
    page.goto(f"{base}/chat/")  # any page that loads chat.js would do; this one does not
    page.add_script_tag(url=f"{base}/static/js/chat.js")

    rendered = page.evaluate(
        """() => window.AgentChat.renderMarkdown(
          "**bold** <img src=x onerror=alert(1)> [x](javascript:alert(1)) " +
          "[ok](https://example.com/?a=1&b=2)\\n\\n```\\n<script>alert(1)</script>\\n```"
        )"""
    )

    assert "<strong>bold</strong>" in rendered
    assert "&lt;img src=x onerror=alert(1)&gt;" in rendered
    assert 'href="javascript' not in rendered
    assert "[x](javascript:alert(1))" in rendered
    assert (
        '<a href="https://example.com/?a=1&amp;b=2" rel="nofollow noopener noreferrer" '
        'target="_blank">ok</a>' in rendered
    )
    assert "<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;</code></pre>" in rendered


def test_earlier_messages_load_and_a_failed_reply_is_tried_again(page, product_server, acme):
    name = "Retry desk"
    older = [
        (Message.Role.USER if n % 2 == 0 else Message.Role.ASSISTANT, "complete", f"Older {n:02d}")
        for n in range(34)
    ]
    failed = [("user", "complete", QUESTION), ("assistant", "failed", "Half an ans")]
    deployment_id, conversation_id = _seed_agent(acme, name, older + failed)
    base = f"http://{acme.host}:{product_server.port}"
    _sign_in(page, base, acme.admin_email)
    try:
        page.goto(f"{base}/chat/{deployment_id}/{conversation_id}/")
        expect(page.locator("#chat-status")).to_have_text("Connected.")
        log = page.get_by_role("log")
        expect(log.locator(".chat-message")).to_have_count(30)
        expect(log).not_to_contain_text("Older 05")

        page.get_by_role("link", name="Load earlier messages").press("Enter")
        expect(log.locator(".chat-message")).to_have_count(36)
        expect(log.locator(".chat-message").first).to_contain_text("Older 00")
        expect(page.get_by_role("link", name="Load earlier messages")).to_have_count(0)
        expect(page.locator("#chat-announcer")).to_have_text(
            "This is the beginning of the conversation."
        )

        reply = log.locator(".chat-role-assistant").last
        expect(reply).to_contain_text("The provider did not answer in time.")
        reply.get_by_role("button", name="Try again").press("Enter")
        expect(reply).to_have_attribute("data-status", "complete")
        expect(reply).to_contain_text("VPN")
        expect(reply).not_to_contain_text("Half an ans")
        expect(reply.get_by_role("button", name="Try again")).to_have_count(0)
        expect(page.get_by_label(f"Your message to {name}")).to_be_focused()
    finally:
        _remove_deployments(acme, name)


def test_a_lost_connection_comes_back_and_the_message_is_not_sent_twice(page, product_server, acme):
    """The server's ack never arrives (the connection drops right after the message went out):
    the client reconnects with backoff and sends the same message again, with the same id."""
    name = "Flaky desk"
    deployment_id, _seeded = _seed_agent(acme, name, [])
    base = f"http://{acme.host}:{product_server.port}"
    sent: list[dict] = []
    connections: list[int] = []

    def route(ws):
        connections.append(len(connections) + 1)
        first = len(connections) == 1
        server = ws.connect_to_server()

        def to_server(message):
            event = json.loads(message)
            if event["type"] == "message":
                sent.append(event)
            server.send(message)

        def to_page(message):
            if first and json.loads(message)["type"] == "ack":
                ws.close(code=1011, reason="lost")  # the ack is lost with the connection
                return
            ws.send(message)

        ws.on_message(to_server)
        server.on_message(to_page)

    page.route_web_socket(re.compile(r"/ws/deployments/\d+/chat/$"), route)
    _sign_in(page, base, acme.admin_email)
    try:
        page.goto(f"{base}/chat/{deployment_id}/")
        expect(page.locator("#chat-status")).to_have_text("Connected.")
        composer = page.get_by_label(f"Your message to {name}")
        composer.fill(QUESTION)
        composer.press("Enter")

        expect(page.locator("#chat-status")).to_contain_text("Reconnecting in")
        expect(page.get_by_role("button", name="Send")).to_be_disabled()
        expect(page.locator("#chat-status")).to_have_text("Connected.", timeout=10_000)
        log = page.get_by_role("log")
        expect(log.locator(".chat-role-assistant")).to_contain_text("VPN")
        expect(log.locator(".chat-role-user")).to_have_count(1)
        expect(log.locator(".chat-role-assistant")).to_have_count(1)
        expect(page).to_have_url(re.compile(rf"/chat/{deployment_id}/\d+/$"))

        assert len(connections) == 2
        assert len(sent) == 2
        assert sent[0]["client_msg_id"] == sent[1]["client_msg_id"]
        conversation_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
        assert _user_messages(acme, conversation_id) == [QUESTION]
    finally:
        _remove_deployments(acme, name)


def test_the_client_follows_the_protocol_of_a_scripted_server(page, product_server, acme):
    """Moments too short to catch on a real reply: the typing indicator, deltas out of order,
    the stop button, a failed reply, and an agent that stops serving."""
    name = "Scripted desk"
    deployment_id, _seeded = _seed_agent(acme, name, [])
    base = f"http://{acme.host}:{product_server.port}"
    sockets: list = []
    received: list[dict] = []

    def route(ws):
        sockets.append(ws)
        deployment = {"id": deployment_id, "name": name, "offline": False}
        ws.send(json.dumps({"type": "hello", "protocol": 1, "deployment": deployment}))

        def on_message(message):
            event = json.loads(message)
            received.append(event)
            sent = [e for e in received if e["type"] == "message"]
            if event["type"] == "message":
                number = len(sent)
                ack = {
                    "type": "ack",
                    "client_msg_id": event["client_msg_id"],
                    "conversation_id": 4242,
                    "message_id": 100 + 2 * number - 1,
                    "reply_id": 100 + 2 * number,
                    "duplicate": False,
                    "conversation_title": "Scripted chat",
                }
                ws.send(json.dumps(ack))
            elif event["type"] == "cancel":
                done = {"type": "done", "reply_id": event["reply_id"], "status": "cancelled"}
                ws.send(json.dumps({**done, "content": "Hello **world**", "usage": None}))

        ws.on_message(on_message)

    def server_sends(**event):
        sockets[-1].send(json.dumps(event))

    page.route_web_socket(re.compile(r"/ws/deployments/\d+/chat/$"), route)
    _sign_in(page, base, acme.admin_email)
    try:
        page.goto(f"{base}/chat/{deployment_id}/")
        expect(page.locator("#chat-status")).to_have_text("Connected.")
        expect(page.locator("#chat-offline")).to_be_hidden()  # the hello says it is not
        composer = page.get_by_label(f"Your message to {name}")
        composer.press_sequentially("First line")
        composer.press("Shift+Enter")
        composer.press_sequentially("second line")
        composer.press("Enter")

        log = page.get_by_role("log")
        expect(log.locator(".chat-role-user")).to_have_count(1)
        expect(page.get_by_text(f"{name} is writing…")).to_be_visible()  # after the ack
        assert received[-1]["content"] == "First line\nsecond line"
        assert "conversation_id" not in received[-1]
        stop = page.get_by_role("button", name="Stop")
        expect(stop).to_be_visible()
        expect(page).to_have_url(re.compile(rf"/chat/{deployment_id}/4242/$"))

        reply = log.locator('.chat-message[data-id="102"]')
        server_sends(type="delta", reply_id=102, seq=2, text="ld**")
        server_sends(type="delta", reply_id=102, seq=1, text="Hello **wor")
        expect(reply.locator("strong")).to_have_text("world")
        expect(page.get_by_text(f"{name} is writing…")).to_be_hidden()
        # A delta that never arrives: the client asks for the reply as stored.
        server_sends(type="delta", reply_id=102, seq=4, text="lost")
        resume = {"type": "resume", "conversation_id": 4242, "after_id": 101}
        for _ in range(50):
            if resume in received:
                break
            page.wait_for_timeout(100)
        assert resume in received
        expect(reply).not_to_contain_text("lost")

        stop.focus()
        page.keyboard.press("Enter")
        expect(reply).to_have_attribute("data-status", "cancelled")
        assert {"type": "cancel", "reply_id": 102} in received
        expect(reply).to_contain_text("Stopped.")
        expect(reply.get_by_role("button", name="Try again")).to_be_visible()
        expect(stop).to_be_hidden()
        expect(composer).to_be_focused()

        composer.press_sequentially("Second question")
        composer.press("Enter")
        expect(log.locator(".chat-role-user")).to_have_count(2)
        failed = log.locator('.chat-message[data-id="104"]')
        expect(failed).to_have_count(1)  # acknowledged
        assert received[-1]["conversation_id"] == 4242
        server_sends(type="tool", reply_id=104, stage="call", name="calculator", arguments={})
        server_sends(type="tool", reply_id=104, stage="result", name="calculator", output="4")
        server_sends(
            type="error",
            reply_id=104,
            code="timeout",
            message="The agent's provider failed (timeout).",
            retryable=True,
        )
        expect(failed).to_have_attribute("data-status", "failed")
        expect(failed).to_contain_text("Used calculator")
        expect(failed).to_contain_text("The agent's provider failed (timeout).")
        expect(failed.get_by_role("button", name="Try again")).to_be_visible()

        server_sends(
            type="error",
            code="not_serving",
            message="This agent is paused. Ask an operator to resume it.",
            retryable=True,
        )
        sockets[-1].close(code=4409)
        expect(page.locator("#chat-status")).to_have_text(
            "This agent is paused. Ask an operator to resume it."
        )
        expect(composer).to_be_disabled()
        expect(page.get_by_role("button", name="Send")).to_be_disabled()
        expect(page.get_by_role("button", name="Reconnect now")).to_be_visible()
        assert len(sockets) == 1  # a deployment that does not serve is not retried on its own
    finally:
        _remove_deployments(acme, name)


def test_on_a_phone_the_conversation_list_folds_above_the_chat(browser, product_server, acme):
    name = "Phone desk"
    deployment_id, conversation_id = _seed_agent(
        acme, name, [("user", "complete", QUESTION), ("assistant", "complete", "Use **VPN**.")]
    )
    base = f"http://{acme.host}:{product_server.port}"
    context = browser.new_context(locale="en-GB", viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        _sign_in(page, base, acme.admin_email)
        page.goto(f"{base}/chat/{deployment_id}/{conversation_id}/")
        expect(page.locator("#chat-status")).to_have_text("Connected.")
        search = page.get_by_role("searchbox", name="Search")
        expect(search).to_be_hidden()
        toggle = page.locator("#chat-sidebar > summary")
        list_box, chat_box = toggle.bounding_box(), page.get_by_role("log").bounding_box()
        assert list_box["y"] < chat_box["y"]
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 390

        toggle.focus()
        page.keyboard.press("Enter")
        expect(search).to_be_visible()
        expect(page.get_by_role("link", name="Seeded conversation")).to_have_attribute(
            "aria-current", "page"
        )
        expect(page.get_by_role("log").locator("strong")).to_have_text("VPN")
        expect(page.get_by_label(f"Your message to {name}")).to_be_enabled()
    finally:
        context.close()
        _remove_deployments(acme, name)
