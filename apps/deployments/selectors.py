"""Reads of deployments: the list with this month's usage and health, one deployment, and what
the runtime needs to serve one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.core.exceptions import NotFound
from apps.deployments.models import Deployment


def deployments_live() -> QuerySet[Deployment]:
    return (
        Deployment.objects.exclude(status=Deployment.Status.DELETED)
        .select_related("blueprint", "version", "owner")
        .order_by("name", "id")
    )


def deployment_get(*, pk: Any) -> Deployment:
    """A live deployment of this organisation ("missing" and "another tenant's" are alike: the
    query runs in the caller's schema)."""
    try:
        return deployments_live().get(pk=int(pk))
    except (Deployment.DoesNotExist, TypeError, ValueError):
        raise NotFound(_("No such deployment.")) from None


@dataclass(frozen=True)
class DeploymentStats:
    messages: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    failed: int = 0
    p95_latency_ms: int | None = None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def error_rate(self) -> float:
        return self.failed / self.messages if self.messages else 0.0


def month_start(now: datetime | None = None) -> datetime:
    now = timezone.localtime(now or timezone.now())
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def deployment_stats(
    ids: list[int], *, since: datetime | None = None
) -> dict[int, DeploymentStats]:
    """This month's calls per deployment, in one query for the whole list."""
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT deployment_id, count(*), coalesce(sum(input_tokens), 0), "
            "coalesce(sum(output_tokens), 0), count(*) FILTER (WHERE outcome = 'failed'), "
            "percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms) "
            "FILTER (WHERE outcome = 'ok') "
            "FROM deployments_runtimecall WHERE deployment_id = ANY(%s) AND created_at >= %s "
            "GROUP BY deployment_id",
            [ids, since or month_start()],
        )
        return {
            row[0]: DeploymentStats(row[1], row[2], row[3], row[4], row[5])
            for row in cursor.fetchall()
        }
