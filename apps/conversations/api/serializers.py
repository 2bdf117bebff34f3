from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from apps.conversations.models import Conversation, Message
from apps.conversations.selectors import PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, PREVIEW_CHARS


class ConversationFilterInput(serializers.Serializer[Any]):
    deployment = serializers.IntegerField(required=False, min_value=1)
    q = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    archived = serializers.BooleanField(required=False, allow_null=True, default=None)


class MessagesPageInput(serializers.Serializer[Any]):
    before = serializers.IntegerField(required=False, min_value=1, allow_null=True, default=None)
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=PAGE_LIMIT_MAX, default=PAGE_LIMIT_DEFAULT
    )


class ExportInput(serializers.Serializer[Any]):
    format = serializers.ChoiceField(choices=["json", "markdown"], default="json")


class MessageInput(serializers.Serializer[Any]):
    # Emptiness and length are the service's to judge, with the same messages everywhere.
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)
    client_msg_id = serializers.CharField(max_length=64)
    conversation_id = serializers.IntegerField(required=False, allow_null=True, min_value=1)


class DeploymentBrief(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()


class ConversationOutput(serializers.ModelSerializer[Conversation]):
    deployment = DeploymentBrief()
    archived = serializers.SerializerMethodField()
    message_count = serializers.SerializerMethodField()
    preview = serializers.SerializerMethodField()

    class Meta:
        model = Conversation
        fields = [
            "id", "title", "deployment", "archived", "archived_at", "message_count", "preview",
            "created_at", "updated_at",
        ]  # fmt: skip

    def get_archived(self, obj: Conversation) -> bool:
        return obj.archived_at is not None

    def get_message_count(self, obj: Conversation) -> int:
        # Annotated by the list's selector; a single conversation counts its own.
        count = getattr(obj, "message_count", None)
        return int(count) if count is not None else obj.messages.count()

    def get_preview(self, obj: Conversation) -> str | None:
        if hasattr(obj, "preview"):
            return obj.preview or None
        last = obj.messages.exclude(content="").order_by("-id").values_list("content", flat=True)
        text = last.first()
        return text[:PREVIEW_CHARS] if text else None


class MessageError(serializers.Serializer[Any]):
    code = serializers.CharField()
    message = serializers.CharField()


class MessageOutput(serializers.ModelSerializer[Message]):
    conversation_id = serializers.IntegerField()
    reply_to = serializers.IntegerField(source="reply_to_id", allow_null=True)
    error = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id", "conversation_id", "role", "content", "status", "client_msg_id", "reply_to",
            "error", "tools", "usage", "created_at", "updated_at",
        ]  # fmt: skip

    def get_error(self, obj: Message) -> dict[str, str] | None:
        if not obj.error_code:
            return None
        return {"code": obj.error_code, "message": obj.error_message}

    def get_usage(self, obj: Message) -> dict[str, Any] | None:
        if obj.role != Message.Role.ASSISTANT or not obj.provider:
            return None
        return {
            "provider": obj.provider,
            "model": obj.model,
            "input_tokens": obj.tokens_in,
            "output_tokens": obj.tokens_out,
            "latency_ms": obj.latency_ms,
        }


class MessagesPageOutput(serializers.Serializer[Any]):
    results = MessageOutput(many=True)
    has_more = serializers.BooleanField()
    next = serializers.CharField(allow_null=True, help_text=_("The page of older messages."))


class ExchangeOutput(serializers.Serializer[Any]):
    """A message and the agent's reply to it."""

    conversation_id = serializers.IntegerField()
    message = MessageOutput()
    reply = MessageOutput()
