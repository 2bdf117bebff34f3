from rest_framework import serializers

from apps.audit.chain import HASHED_FIELDS
from apps.audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    """Everything the hash covers, plus the id and both hashes, so a reader can re-verify."""

    class Meta:
        model = AuditEvent
        fields = ["id", *HASHED_FIELDS, "prev_hash", "hash"]
        read_only_fields = fields
