"""Suspend or resume an organisation."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import Actor
from apps.core.exceptions import ServiceError
from apps.tenants.selectors import tenant_get_by_slug
from apps.tenants.services import tenant_resume, tenant_suspend


class Command(BaseCommand):
    help = "Suspend a tenant (its hosts answer 403) or, with --resume, restore it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--slug", required=True)
        parser.add_argument("--reason", default="", help="Shown in the audit trail.")
        parser.add_argument("--resume", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_get_by_slug(options["slug"])
        if tenant is None:
            raise CommandError(f"No tenant with slug {options['slug']!r}.")
        actor = Actor.system("suspend_tenant command")
        try:
            if options["resume"]:
                tenant_resume(tenant=tenant, actor=actor)
            else:
                tenant_suspend(tenant=tenant, reason=options["reason"], actor=actor)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(f"{tenant.slug} is now {tenant.status}."))
