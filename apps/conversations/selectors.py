"""Reads of conversations: a person's own conversations (no one else's, whatever their role), a
page of one conversation's messages, its transcript, and the deployments the OpenAI-compatible
API offers as models."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Substr
from django.utils.translation import gettext as _

from apps.accounts.models import ApiKey, User
from apps.conversations.models import Conversation, Message
from apps.core.exceptions import NotFound
from apps.core.sqlfast import table
from apps.deployments.models import Deployment
from apps.deployments.runtime import STAMP_WIDTH, stamp_columns
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


# The checks of every chat message, in one hand-written query (``admission_sql``, run by
# ``apps/conversations/hotpath.py`` with what else the message needs).


@dataclass(frozen=True)
class Admission:
    """Who sends and to what, as stored now. ``user`` is None when the user is gone, ``api_key``
    None without a key or when it is gone, ``deployment`` None when it is gone. The objects are
    built from the row and carry only what the checks and the spec cache need: never save them."""

    user: User | None
    api_key: ApiKey | None
    deployment: Deployment | None


ADMISSION_WIDTH = 15 + STAMP_WIDTH


def admission_sql(columns: str = "", joins: str = "") -> str:
    """The user, their key and the deployment as they are now, for the checks repeated on every
    chat message (a role change, a deactivation, a revoked key or a paused deployment counts
    from the next message on), with the stamp of the deployment's agent spec
    (``apps.deployments.runtime.agent_spec_current``): one query instead of the ORM's four.
    ``columns`` and ``joins`` add to it (each starting with a comma or a JOIN; the aliases ``u``, ``k``, ``d`` and ``v`` are the user, key, deployment and version).
    Parameters by name: ``user``, ``key``, ``deployment``."""
    user, key, deployment = table(User), table(ApiKey), table(Deployment)
    version = table(BlueprintVersion)
    return f"""
        SELECT u.id, u.is_active, u.role, u.email,
               k.id, k.scopes, k.expires_at, k.revoked_at,
               d.id, d.name, d.status, d.status_reason, d.blueprint_id,
               v.state, v.version,
               {stamp_columns("d")}
               {columns}
          FROM (SELECT 1) one
          LEFT JOIN {user} u ON u.id = %(user)s
          LEFT JOIN {key} k ON k.id = %(key)s AND k.user_id = u.id
          LEFT JOIN {deployment} d ON d.id = %(deployment)s AND d.status <> 'deleted'
          LEFT JOIN {version} v ON v.id = d.version_id
          {joins}
    """  # noqa: S608 - table names from the models, values as parameters


def admission_from(found: Sequence[Any]) -> Admission:
    """The ``Admission`` of a row of ``admission_sql`` (its first ``ADMISSION_WIDTH`` columns)."""
    uid, active, role, email, kid, scopes, expires_at, revoked_at = found[:8]
    did, name, status, reason, blueprint_id, version_state, version_label = found[8:15]
    stamp = tuple(found[15:ADMISSION_WIDTH])
    user = None if uid is None else User(id=uid, is_active=active, role=role, email=email)
    api_key = None
    if kid is not None:
        # Django reads JSON columns as text and decodes them in the field: so must this.
        scopes = json.loads(scopes) if isinstance(scopes, str | bytes) else scopes
        api_key = ApiKey(
            id=kid, user_id=uid, scopes=list(scopes), expires_at=expires_at, revoked_at=revoked_at
        )
    deployment = None
    if did is not None:
        version_id, updated_at, fallback = stamp[:3]
        deployment = Deployment(
            id=did,
            name=name,
            status=status,
            status_reason=reason,
            version_id=version_id,
            blueprint_id=blueprint_id,
            fallback_provider=fallback,
            updated_at=updated_at,
        )
        deployment.version = BlueprintVersion(
            id=version_id, state=version_state, version=version_label
        )
        deployment.spec_stamp = stamp  # type: ignore[attr-defined]
    return Admission(user, api_key, deployment)
