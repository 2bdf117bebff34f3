"""How an event's hash is computed. Shared by the writer and the verifier, nothing else."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from datetime import UTC, datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

GENESIS_HASH = "0" * 64


def normalise_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The form the metadata takes once stored as jsonb, so hashing before and after agree.

    jsonb cannot hold NUL characters or non-finite numbers, and turns integral floats such as
    1e20 or -0.0 into integers; doing the same here keeps the recomputed hash identical.
    """
    result: dict[str, Any] = _jsonb_safe(
        json.loads(json.dumps(metadata or {}, cls=DjangoJSONEncoder))
    )
    return result


def _jsonb_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {_jsonb_safe(key): _jsonb_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonb_safe(item) for item in value]
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer():
            return int(value)
    return value


def normalise_ip(ip: str | None) -> str | None:
    if not ip:
        return None
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


def compute_hash(*, prev_hash: str, fields: dict[str, Any]) -> str:
    occurred_at: datetime = fields["occurred_at"]
    canonical = {
        "prev_hash": prev_hash,
        "occurred_at": occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_type": fields["actor_type"],
        "actor_id": fields["actor_id"],
        "actor_label": fields["actor_label"],
        "action": fields["action"],
        "outcome": fields["outcome"],
        "target_type": fields["target_type"],
        "target_id": fields["target_id"],
        "ip_address": normalise_ip(fields["ip_address"]),
        "user_agent": fields["user_agent"],
        "request_id": fields["request_id"],
        "metadata": fields["metadata"],
    }
    payload = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


HASHED_FIELDS = (
    "occurred_at",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "outcome",
    "target_type",
    "target_id",
    "ip_address",
    "user_agent",
    "request_id",
    "metadata",
)
