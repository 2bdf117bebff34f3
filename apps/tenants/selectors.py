"""Reads over tenants, domains and plans (public schema)."""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet

from apps.tenants.models import Domain, Plan, Tenant


def tenant_list() -> QuerySet[Tenant]:
    """Every organisation, excluding the platform's own public tenant."""
    return (
        Tenant.objects.exclude(schema_name=settings.PUBLIC_SCHEMA_NAME)
        .select_related("plan")
        .prefetch_related("domains")
    )


def tenant_get_by_slug(slug: str) -> Tenant | None:
    return tenant_list().filter(slug=slug).first()


def tenant_for_host(hostname: str) -> Tenant | None:
    domain = Domain.objects.select_related("tenant").filter(domain=hostname.lower()).first()
    return domain.tenant if domain else None


def plan_default() -> Plan | None:
    return Plan.objects.filter(is_default=True).first()


def tenant_primary_url(tenant: Tenant) -> str:
    """The address people use to reach the tenant, e.g. http://acme.localhost:8000/."""
    domain = next((d.domain for d in tenant.domains.all() if d.is_primary), None)
    if domain is None:
        domain = f"{tenant.slug}.{settings.BASE_DOMAIN}"
    port = f":{settings.SITE_PORT}" if settings.SITE_PORT else ""
    return f"{settings.SITE_SCHEME}://{domain}{port}/"
