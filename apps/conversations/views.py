"""Chat pages: the agents one can chat with, and one agent's chat with this person's conversation
list and search. The history is rendered here so that it shows without JavaScript; sending and
streaming go over the websocket (static/js/chat.js)."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from apps.accounts.decorators import permission_required
from apps.accounts.permissions import has_permission
from apps.conversations import page_selectors
from apps.core.exceptions import NotFound, ServiceError
from apps.deployments.models import Deployment
from apps.deployments.runtime import serving_check
from apps.deployments.selectors import deployment_get


@permission_required("chat:use")
def chat_index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "conversations/index.html",
        {
            "items": page_selectors.chat_deployments(),
            "can_deploy": has_permission(request.user, "deployments:manage"),
        },
    )


def _not_serving_reason(deployment: Deployment) -> str:
    try:
        serving_check(deployment)
    except ServiceError as exc:
        return exc.message
    return ""


def _positive_int(value: str | None) -> int | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if 0 < number < 2**63 else None


def _shown(window: page_selectors.MessageWindow) -> list[dict[str, Any]]:
    return [
        {
            "message": message,
            "tools": [
                {"label": str(tool.get("name", "")).replace("_", " "), "error": tool.get("error")}
                for tool in message.tools or []
                if isinstance(tool, dict)
            ],
        }
        for message in window.messages
    ]


def _client_strings(deployment: Deployment) -> dict[str, str]:
    """What chat.js says, translated here so the script holds no user-facing text."""
    agent = deployment.name
    return {
        "connecting": _("Connecting…"),
        "connected": _("Connected."),
        "reconnecting": _("Connection lost. Reconnecting in %(seconds)s s…"),
        "offlineBrowser": _("You are offline. Waiting for the network…"),
        "signedOut": _("You were signed out. Sign in again to keep chatting."),
        "signIn": _("Sign in"),
        "forbidden": _("Your role does not allow chatting with agents."),
        "missing": _("This agent no longer exists."),
        "notServing": _("This agent is not answering at the moment."),
        "suspended": _("This organisation is suspended."),
        "tooLarge": _("That message is too large to send."),
        "you": _("You"),
        "agent": agent,
        "sent": _("Message sent."),
        "notSent": _("Not sent: %(reason)s"),
        "replyDone": _("%(agent)s replied.") % {"agent": agent},
        "replyFailed": _("The reply failed."),
        "stopped": _("Stopped."),
        "tryAgain": _("Try again"),
        "usingTool": _("Using %(tool)s…"),
        "usedTool": _("Used %(tool)s"),
        "toolFailed": _("%(tool)s failed"),
        "loadEarlier": _("Load earlier messages"),
        "loadingEarlier": _("Loading earlier messages…"),
        "noEarlier": _("This is the beginning of the conversation."),
        "earlierLoaded": _("Earlier messages were loaded."),
        "rateLimited": _("Too many messages. Sending again in %(seconds)s s."),
        "newConversation": _("New conversation"),
    }


@permission_required("chat:use")
def chat(
    request: HttpRequest, deployment_id: int, conversation_id: int | None = None
) -> HttpResponse:
    """A new conversation (no ``conversation_id``) or one of the user's own; another person's
    conversation is a 404 like a missing one. ``?before=<id>`` shows earlier messages without
    JavaScript; ``?q=`` searches the list."""
    try:
        deployment = deployment_get(pk=deployment_id)
    except NotFound:
        raise Http404 from None
    conversation = None
    if conversation_id is not None:
        conversation = page_selectors.conversation_for(
            user=request.user, deployment=deployment, pk=conversation_id
        )
        if conversation is None:
            raise Http404
    query = request.GET.get("q", "").strip()
    before_id = _positive_int(request.GET.get("before"))
    window = (
        page_selectors.messages_window(conversation=conversation, before_id=before_id)
        if conversation is not None
        else page_selectors.MessageWindow([], False)
    )
    return render(
        request,
        "conversations/chat.html",
        {
            "deployment": deployment,
            "conversation": conversation,
            "conversations": page_selectors.conversations_for(
                user=request.user, deployment=deployment, query=query
            ),
            "query": query,
            "window": window,
            "shown_messages": _shown(window),
            "older_window": before_id is not None,
            "offline": page_selectors.deployment_offline(deployment),
            "not_serving": _not_serving_reason(deployment),
            "client_strings": _client_strings(deployment),
        },
    )
