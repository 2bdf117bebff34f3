"""Create an organisation with its own schema and first tenant admin."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import Actor
from apps.core.exceptions import ServiceError
from apps.tenants.selectors import tenant_primary_url
from apps.tenants.services import tenant_provision


class Command(BaseCommand):
    help = "Provision a tenant: schema cloned from the template, domain, and a tenant admin."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--slug", required=True, help="Address and schema, e.g. acme.")
        parser.add_argument("--name", required=True, help="Display name, e.g. 'Acme Corp'.")
        parser.add_argument("--admin-email", required=True)
        parser.add_argument("--admin-password", help="Omit to generate one (printed once).")
        parser.add_argument("--plan", help="Plan code (default: the default plan).")
        parser.add_argument("--custom-domain", help="An extra host name routed to this tenant.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = tenant_provision(
                slug=options["slug"],
                name=options["name"],
                admin_email=options["admin_email"],
                admin_password=options["admin_password"],
                plan_code=options["plan"],
                custom_domain=options["custom_domain"],
                actor=Actor.system("provision_tenant command"),
            )
        except ServiceError as exc:
            problems = "; ".join(
                f"{field}: {' '.join(msgs)}" for field, msgs in exc.details.items()
            )
            raise CommandError(f"{exc.message} {problems}".strip()) from exc
        url = tenant_primary_url(result.tenant)
        self.stdout.write(
            self.style.SUCCESS(f"Provisioned {result.tenant.slug} ({result.tenant.schema_name})")
        )
        self.stdout.write(f"  URL:      {url}")
        self.stdout.write(f"  Email:    {result.admin.email}")
        if result.password_generated:
            self.stdout.write(f"  Password: {result.admin_password}  (shown once)")
