"""Scheduled catalog work."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from apps.core.exceptions import ServiceError
from apps.core.tasks import TenantTask
from apps.marketplace.models import BlueprintVersion
from apps.marketplace.services import version_transition


@shared_task(base=TenantTask, name="marketplace.retire_sunset_versions")
def retire_sunset_versions() -> list[int]:
    """Retire deprecated versions whose sunset date has come (idempotent; beat runs it hourly)."""
    retired = []
    due = BlueprintVersion.objects.filter(
        state=BlueprintVersion.State.DEPRECATED, sunset_date__lte=timezone.localdate()
    )
    for version in due:
        try:
            version_transition(
                version=version, to=BlueprintVersion.State.RETIRED, actor=None, note="sunset"
            )
            retired.append(version.pk)
        except ServiceError:  # moved on concurrently: nothing to do
            continue
    return retired
