"""Recording audit events. Every write in the product calls ``audit_record`` in its transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from apps.audit.chain import GENESIS_HASH, compute_hash, normalise_ip, normalise_metadata
from apps.audit.models import AuditEvent
from apps.core.context import client_ip_var, request_id_var, user_agent_var

# First key of the two-key advisory lock that serialises appends to one schema's chain.
_AUDIT_LOCK_CLASS = 7_204_331


@dataclass(frozen=True)
class Actor:
    """Who did it, captured as text so the record survives the actor's deletion."""

    type: str
    id: str = ""
    label: str = ""

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(type=AuditEvent.ActorType.SYSTEM, label=label)

    @classmethod
    def anonymous(cls, label: str = "") -> Actor:
        return cls(type=AuditEvent.ActorType.ANONYMOUS, label=label)

    @classmethod
    def of(cls, user: Any) -> Actor:
        """The actor for a user instance; an anonymous or missing user is recorded as anonymous."""
        if user is None or not getattr(user, "is_authenticated", False):
            return cls.anonymous()
        return cls(type=AuditEvent.ActorType.USER, id=str(user.pk), label=user.get_username())


def audit_record(
    *,
    action: str,
    actor: Actor | Any | None = None,
    target_type: str = "",
    target_id: str | int = "",
    outcome: str = AuditEvent.Outcome.SUCCESS,
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the current schema's chain, inside the caller's transaction.

    The advisory lock serialises writers of one schema until the caller commits, so two concurrent
    transactions can never both extend the same head (no forked chain). Callers that need the
    change and its record to stand or fall together simply call this inside their ``atomic``.
    """
    who = actor if isinstance(actor, Actor) else Actor.of(actor) if actor else Actor.system()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", [_AUDIT_LOCK_CLASS]
            )
        head = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        fields: dict[str, Any] = {
            "occurred_at": timezone.now(),
            "actor_type": who.type,
            "actor_id": who.id[:64],
            "actor_label": who.label[:254],
            "action": action,
            "outcome": outcome,
            "target_type": target_type,
            "target_id": str(target_id)[:64],
            "ip_address": normalise_ip(client_ip_var.get()),
            "user_agent": user_agent_var.get(),
            "request_id": "" if request_id_var.get() == "-" else request_id_var.get(),
            "metadata": normalise_metadata(metadata),
        }
        prev_hash = head or GENESIS_HASH
        event = AuditEvent(
            **fields, prev_hash=prev_hash, hash=compute_hash(prev_hash=prev_hash, fields=fields)
        )
        event.full_clean(validate_unique=False)
        event.save(force_insert=True)
        return event
