"""Verify the hash chain of the audit trail, per schema, and report the first broken link."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from apps.audit.selectors import audit_chain_verify
from apps.tenants.selectors import tenant_list


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain. Exits 1 if any chain is broken."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--tenant", help="Slug of one tenant; 'public' for the platform trail.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["tenant"] == "public":
            targets = [("public", "public")]
        elif options["tenant"]:
            tenant = tenant_list().filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"No tenant with slug {options['tenant']!r}.")
            targets = [(tenant.slug, tenant.schema_name)]
        else:
            targets = [("public", "public")] + [(t.slug, t.schema_name) for t in tenant_list()]

        broken = 0
        for label, schema in targets:
            with schema_context(schema):
                report = audit_chain_verify()
            if report.ok:
                self.stdout.write(f"{label}: {report.checked} events, chain intact")
            else:
                broken += 1
                self.stdout.write(
                    self.style.ERROR(
                        f"{label}: chain broken at event {report.broken_at} "
                        f"after {report.checked} good events: {report.reason}"
                    )
                )
        if broken:
            raise CommandError(f"{broken} audit chain(s) broken.", returncode=1)
