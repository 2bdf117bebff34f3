from rest_framework import serializers

from apps.audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
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
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields
