"""Scheduled conversation work."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from apps.conversations.models import Message
from apps.tenants.selectors import tenant_list

# Longer than any reply can stay silent while it still streams: the provider's timeout with its
# retries and backoff (a few minutes), and the reply row is written every 2 s while text comes.
STALE_AFTER = timedelta(minutes=15)


@shared_task(name="conversations.fail_stale_replies")
def fail_stale_replies() -> dict[str, int]:
    """Replies left pending or streaming by a process that died (a crash or a kill, where a
    normal shutdown already stores them as interrupted) become ``failed`` with code
    ``interrupted``, so their page stops waiting and offers a retry. Idempotent; beat runs it
    every five minutes over every organisation."""
    cutoff = timezone.now() - STALE_AFTER
    failed: dict[str, int] = {}
    for tenant in tenant_list():
        with schema_context(tenant.schema_name):
            count = Message.objects.filter(
                role=Message.Role.ASSISTANT,
                status__in=[Message.Status.PENDING, Message.Status.STREAMING],
                updated_at__lt=cutoff,
            ).update(
                status=Message.Status.FAILED,
                error_code="interrupted",
                error_message=_("The server stopped while the reply was streaming."),
                updated_at=timezone.now(),
            )
        if count:
            failed[tenant.schema_name] = count
    return failed
