"""Conversations with deployed agents, their messages, and usage per deployment, user and day.
Tenant schema."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Conversation(models.Model):
    deployment = models.ForeignKey(
        "deployments.Deployment", on_delete=models.CASCADE, related_name="conversations"
    )
    # No index of its own: conv_user_recent (user, -updated_at) serves lookups by user; each
    # index is one more write with every message (updated_at changes).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="conversations",
        db_index=False,
    )
    title = models.CharField(_("title"), max_length=120)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        indexes: ClassVar = [
            models.Index(fields=["user", "-updated_at"], name="conv_user_recent"),
        ]

    def __str__(self) -> str:
        return self.title


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", _("You")
        ASSISTANT = "assistant", _("Agent")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        STREAMING = "streaming", _("Streaming")
        COMPLETE = "complete", _("Complete")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    # No index of its own: conv_message_seq (conversation, id) serves it.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    # The client's id for a message it sent: re-sending it never creates a second message.
    client_msg_id = models.CharField(max_length=64, blank=True)
    reply_to = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="replies"
    )
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    provider = models.CharField(max_length=16, blank=True)
    model = models.CharField(max_length=100, blank=True)
    tools = models.JSONField(default=list, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["conversation", "client_msg_id"],
                condition=Q(role="user") & ~Q(client_msg_id=""),
                name="conv_message_client_id_once",
            ),
        ]
        indexes: ClassVar = [
            models.Index(fields=["conversation", "id"], name="conv_message_seq"),
            # A message sent again after a reconnect, found by its client_msg_id in any of the
            # user's conversations (the constraint above knows only one conversation).
            models.Index(
                fields=["client_msg_id"], name="conv_message_client_id", condition=Q(role="user")
            ),
            # Replies still open, for the sweep of those a crashed process left streaming.
            models.Index(
                fields=["updated_at"],
                name="conv_message_open",
                condition=Q(status__in=["pending", "streaming"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.pk}"


class UsageDay(models.Model):
    """Messages and tokens per deployment, user and day: for quotas and billing."""

    # No index of its own: the unique (deployment, user_id, day) serves it.
    deployment = models.ForeignKey(
        "deployments.Deployment",
        on_delete=models.CASCADE,
        related_name="usage_days",
        db_index=False,
    )
    user_id = models.BigIntegerField(null=True)
    day = models.DateField()
    messages = models.PositiveIntegerField(default=0)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["deployment", "user_id", "day"], name="conv_usage_one_row_per_day"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.deployment_id} {self.user_id} {self.day}"
