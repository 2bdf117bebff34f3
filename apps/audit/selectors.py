"""Reading the audit trail of the current schema, and checking that its chain is unbroken."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import QuerySet

from apps.audit.chain import GENESIS_HASH, HASHED_FIELDS, compute_hash
from apps.audit.models import AuditEvent


def audit_event_list() -> QuerySet[AuditEvent]:
    return AuditEvent.objects.all()


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken_at: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def _events_in_order(batch: int = 2000) -> Iterator[AuditEvent]:
    return (
        AuditEvent.objects.order_by("id")
        .only("id", "prev_hash", "hash", *HASHED_FIELDS)
        .iterator(chunk_size=batch)
    )


def audit_chain_verify() -> ChainReport:
    """Walk the chain in insertion order and return the first broken link, if any."""
    expected_prev = GENESIS_HASH
    checked = 0
    for event in _events_in_order():
        if event.prev_hash != expected_prev:
            return ChainReport(
                checked,
                event.id,
                "its previous-hash does not match the event before it "
                "(an event was removed, inserted or reordered)",
            )
        fields = {name: getattr(event, name) for name in HASHED_FIELDS}
        if compute_hash(prev_hash=event.prev_hash, fields=fields) != event.hash:
            return ChainReport(checked, event.id, "its content does not match its hash (altered)")
        expected_prev = event.hash
        checked += 1
    return ChainReport(checked)
