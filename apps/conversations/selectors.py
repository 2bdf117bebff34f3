"""Reads of conversations: a person's own conversations (no one else's, whatever their role), a
page of one conversation's messages, its transcript, and the deployments the OpenAI-compatible
API offers as models."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Substr
from django.utils.translation import gettext as _

from apps.conversations.models import Conversation, Message
from apps.core.exceptions import NotFound
from apps.deployments.models import Deployment
from apps.deployments.selectors import deployments_live
from apps.marketplace.models import BlueprintVersion

PREVIEW_CHARS = 140
PAGE_LIMIT_DEFAULT = 50
PAGE_LIMIT_MAX = 100


def conversations_of(
    *,
    user: Any,
    deployment_id: int | None = None,
    q: str = "",
    archived: bool | None = None,
) -> QuerySet[Conversation]:
    """``user``'s conversations with their deployment, message count and the last message's
    start, in one query; ``q`` matches the title or any message's text."""
    last = Message.objects.filter(conversation=OuterRef("pk")).exclude(content="").order_by("-id")
    rows = (
        Conversation.objects.filter(user=user)
        .select_related("deployment")
        .annotate(
            message_count=Count("messages", distinct=True),
            preview=Subquery(last.values(snippet=Substr("content", 1, PREVIEW_CHARS))[:1]),
        )
    )
    if deployment_id is not None:
        rows = rows.filter(deployment_id=deployment_id)
    if archived is not None:
        rows = rows.filter(archived_at__isnull=not archived)
    q = q.strip()
    if q:
        matching = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=q)
        rows = rows.filter(Q(title__icontains=q) | Exists(matching))
    return rows.order_by("-updated_at", "-id")


def conversation_get(*, user: Any, pk: Any) -> Conversation:
    """One of ``user``'s conversations; anyone else's is "not found", as is a missing one."""
    try:
        return Conversation.objects.select_related("deployment").get(pk=int(pk), user=user)
    except (Conversation.DoesNotExist, TypeError, ValueError):
        raise NotFound(_("No such conversation.")) from None


def conversation_messages(
    *, conversation: Conversation, before: int | None = None, limit: int = PAGE_LIMIT_DEFAULT
) -> tuple[list[Message], bool]:
    """The newest ``limit`` messages before the message ``before`` (all when None), oldest
    first, and whether older ones remain."""
    limit = max(1, min(limit, PAGE_LIMIT_MAX))
    rows = conversation.messages.all()
    if before is not None:
        rows = rows.filter(id__lt=before)
    page = list(rows.order_by("-id")[: limit + 1])
    more = len(page) > limit
    return list(reversed(page[:limit])), more


def conversation_transcript(*, conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.order_by("id")


def reply_get(*, conversation: Conversation, reply_id: Any) -> Message:
    """A reply of the agent in ``conversation`` (which the caller already owns)."""
    try:
        return conversation.messages.get(pk=int(reply_id), role=Message.Role.ASSISTANT)
    except (Message.DoesNotExist, TypeError, ValueError):
        raise NotFound(_("No such reply.")) from None


def deployments_serving() -> QuerySet[Deployment]:
    """Deployments that answer now: active, on a version that is not retired."""
    return (
        deployments_live()
        .filter(status=Deployment.Status.ACTIVE)
        .exclude(version__state=BlueprintVersion.State.RETIRED)
        .order_by("slug")
    )


def deployment_for_model(*, model: str) -> Deployment | None:
    """The live deployment a client names as ``model`` in the OpenAI-compatible API. Paused
    ones are found too, so that the client learns why they do not answer."""
    if not model:
        return None
    return deployments_live().filter(slug=model).first()
