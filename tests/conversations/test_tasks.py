"""Replies a crashed process left streaming are failed (with a retry) by the periodic sweep."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from apps.accounts.models import User
from apps.conversations.models import Conversation, Message
from apps.conversations.tasks import STALE_AFTER, fail_stale_replies

pytestmark = pytest.mark.usefixtures("committed")


def _reply(conversation: Conversation, status: str, age: timedelta) -> Message:
    question = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content="Hello?", client_msg_id="q"
    )
    reply = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        reply_to=question,
        status=status,
        content="Half an ans",
    )
    Message.objects.filter(pk=reply.pk).update(updated_at=timezone.now() - age)
    return reply


def test_only_replies_silent_past_the_limit_are_failed_and_kept_retryable(acme, active_deployment):
    with schema_context(acme.schema):
        user = User.objects.get(email=acme.admin_email)
        stale, fresh, done = (
            Conversation.objects.create(deployment=active_deployment, user=user, title=title)
            for title in ("stale", "fresh", "done")
        )
        stale_reply = _reply(stale, Message.Status.STREAMING, STALE_AFTER + timedelta(minutes=1))
        fresh_reply = _reply(fresh, Message.Status.STREAMING, timedelta(seconds=30))
        complete = _reply(done, Message.Status.COMPLETE, STALE_AFTER * 4)

    result = fail_stale_replies.apply().get()

    with schema_context(acme.schema):
        stale_reply.refresh_from_db()
        fresh_reply.refresh_from_db()
        complete.refresh_from_db()
        Conversation.objects.filter(pk__in=[stale.pk, fresh.pk, done.pk]).delete()
    assert result.get(acme.schema) == 1
    assert (stale_reply.status, stale_reply.error_code) == ("failed", "interrupted")
    assert stale_reply.content == "Half an ans"  # what streamed is kept
    assert fresh_reply.status == "streaming"
    assert complete.status == "complete"
