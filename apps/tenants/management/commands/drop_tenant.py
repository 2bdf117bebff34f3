"""Drop an organisation's schema and rows. Refuses unless --confirm repeats the slug."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import Actor
from apps.core.exceptions import ServiceError
from apps.tenants.selectors import tenant_get_by_slug
from apps.tenants.services import tenant_delete


class Command(BaseCommand):
    help = "Delete a tenant and all its data. Requires --confirm <slug>."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--slug", required=True)
        parser.add_argument("--confirm", help="Repeat the slug to confirm the deletion.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_get_by_slug(options["slug"])
        if tenant is None:
            raise CommandError(f"No tenant with slug {options['slug']!r}.")
        try:
            tenant_delete(
                tenant=tenant, confirm=options["confirm"], actor=Actor.system("drop_tenant command")
            )
        except ServiceError as exc:
            raise CommandError(f"{exc.message} Run again with --confirm {tenant.slug}.") from exc
        self.stdout.write(
            self.style.SUCCESS(f"Deleted {tenant.slug} and dropped schema {tenant.schema_name}.")
        )
