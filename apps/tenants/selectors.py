"""Reads over tenants, domains and plans (public schema)."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest
from psycopg import sql

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


def tenant_primary_url(tenant: Tenant, request: HttpRequest | None = None) -> str:
    """The address people use to reach the tenant, e.g. http://acme.localhost:8000/.

    During a request, the scheme and port are the ones the visitor used; elsewhere (commands,
    e-mails) they come from SITE_SCHEME and SITE_PORT.
    """
    domain = next((d.domain for d in tenant.domains.all() if d.is_primary), None)
    if domain is None:
        domain = f"{tenant.slug}.{settings.BASE_DOMAIN}"
    if request is not None:
        # The port the visitor typed (in the Host header), not the one the server listens on.
        host = request.get_host()
        scheme = request.scheme or "http"
        port = host.rpartition(":")[2] if ":" in host and not host.endswith("]") else ""
        default_port = {"http": "80", "https": "443"}.get(scheme)
    else:
        scheme, port, default_port = settings.SITE_SCHEME, settings.SITE_PORT, None
    suffix = f":{port}" if port and port != default_port else ""
    return f"{scheme}://{domain}{suffix}/"


def _applied_migrations_digest(schema: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "SELECT md5(coalesce(string_agg(app || '.' || name, ',' ORDER BY app, name), '')) "
                "FROM {}.django_migrations"
            ).format(sql.Identifier(schema))
        )
        return str(cursor.fetchone()[0])


def tenant_schemas_behind_template() -> list[str]:
    """Tenant schemas whose applied migrations differ from the template's: the only ones
    `bootstrap` needs to migrate (one cheap query each instead of a migrate run each)."""
    target = _applied_migrations_digest(settings.TENANT_TEMPLATE_SCHEMA)
    schemas = tenant_list().values_list("schema_name", flat=True)
    return [schema for schema in schemas if _applied_migrations_digest(schema) != target]
