"""Reads for the chat pages: the agents one can chat with, one person's conversations with an
agent (and a search over them), and a window of a conversation's messages. All of them run in the
caller's tenant schema and are scoped to the signed-in user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef, Q

from apps.conversations.models import Conversation, Message
from apps.deployments.models import Deployment
from apps.deployments.selectors import deployments_live
from apps.marketplace.models import BlueprintVersion
from apps.runtime.selection import choose_provider

PAGE_MESSAGES = 30
LIST_CONVERSATIONS = 50
SEARCH_MAX_CHARS = 200
SNIPPET_CHARS = 90


def deployment_offline(deployment: Deployment) -> bool:
    """Whether the agent answers on the built-in ``local`` provider (no key for its own)."""
    stored = dict.fromkeys((s.name for s in deployment.secrets.all()), "set")
    return choose_provider(
        provider=deployment.version.provider,
        model=deployment.version.model,
        secrets=stored,
        settings=deployment.settings,
    ).offline


@dataclass(frozen=True)
class ChatDeployment:
    deployment: Deployment
    offline: bool


def chat_deployments() -> list[ChatDeployment]:
    """The agents that answer now; the others are explained on their own chat page."""
    rows = (
        deployments_live()
        .filter(status=Deployment.Status.ACTIVE)
        .exclude(version__state=BlueprintVersion.State.RETIRED)
        .prefetch_related("secrets")
    )
    return [ChatDeployment(row, deployment_offline(row)) for row in rows]


@dataclass(frozen=True)
class ConversationRow:
    conversation: Conversation
    snippet: str = ""  # the matching message text around the match, when searching


def _snippet(text: str, query: str) -> str:
    text = " ".join(text.split())
    at = text.lower().find(query.lower())
    if at < 0:
        return ""
    start = max(0, at - SNIPPET_CHARS // 3)
    end = min(len(text), start + SNIPPET_CHARS)
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


def conversations_for(
    *, user: Any, deployment: Deployment, query: str = "", limit: int = LIST_CONVERSATIONS
) -> list[ConversationRow]:
    """``user``'s conversations with ``deployment``, newest first; with ``query``, only those
    whose title or any message holds it (case-insensitive), with a snippet of the message."""
    conversations = Conversation.objects.filter(
        user=user, deployment=deployment, archived_at__isnull=True
    )
    query = " ".join(query.split())[:SEARCH_MAX_CHARS]
    if not query:
        return [ConversationRow(c) for c in conversations[:limit]]
    matching = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=query)
    found = list(
        conversations.filter(Q(title__icontains=query) | Exists(matching)).order_by(
            "-updated_at", "-id"
        )[:limit]
    )
    # The first matching message of each conversation, in one query (PostgreSQL DISTINCT ON).
    first_match = dict(
        Message.objects.filter(conversation__in=[c.pk for c in found], content__icontains=query)
        .order_by("conversation_id", "id")
        .distinct("conversation_id")
        .values_list("conversation_id", "content")
    )
    return [ConversationRow(c, _snippet(first_match.get(c.pk, ""), query)) for c in found]


def conversation_for(*, user: Any, deployment: Deployment, pk: int) -> Conversation | None:
    """One of ``user``'s conversations with ``deployment``; anyone else's is as good as missing."""
    return Conversation.objects.filter(pk=pk, user=user, deployment=deployment).first()


@dataclass(frozen=True)
class MessageWindow:
    messages: list[Message]
    has_earlier: bool

    @property
    def first_id(self) -> int | None:
        return self.messages[0].pk if self.messages else None


def messages_window(
    *, conversation: Conversation, before_id: int | None = None, limit: int = PAGE_MESSAGES
) -> MessageWindow:
    """The latest ``limit`` messages (or those just before ``before_id``), oldest first."""
    rows = conversation.messages.order_by("-id")
    if before_id is not None:
        rows = rows.filter(id__lt=before_id)
    newest_first = list(rows[: limit + 1])
    return MessageWindow(list(reversed(newest_first[:limit])), len(newest_first) > limit)
