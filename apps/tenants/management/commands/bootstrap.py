"""Bring a database to a working state: migrate public, template and tenant schemas; optionally
seed the demo organisation and a platform admin, and print how to sign in."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django_tenants.utils import schema_context

from apps.accounts.models import Role, User
from apps.accounts.services import user_create, user_password_set
from apps.audit.services import Actor
from apps.marketplace.shipped import shipped_catalog_seed
from apps.tenants.selectors import (
    tenant_get_by_slug,
    tenant_primary_url,
    tenant_schemas_behind_template,
)
from apps.tenants.services import public_tenant_ensure, template_schema_migrate, tenant_provision

DEMO_SLUG = "acme"
DEMO_NAME = "Acme Corp"
DEMO_ADMIN = "admin@acme.example"
PLATFORM_ADMIN = "platform@agentfactory.example"


class Command(BaseCommand):
    help = "Migrate every schema and, with --demo, seed the demo tenant and print its sign-in."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--demo", action="store_true", help="Seed the acme demo tenant.")

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = max(options["verbosity"] - 1, 0)
        self.stdout.write("Migrating the public schema...")
        call_command("migrate_schemas", shared=True, interactive=False, verbosity=verbosity)
        public_tenant_ensure()
        self.stdout.write("Migrating the tenant template schema...")
        template_schema_migrate(verbosity=verbosity)
        stale = tenant_schemas_behind_template()
        self.stdout.write(f"Migrating tenant schemas ({len(stale)} behind the template)...")
        for schema in stale:
            call_command(
                "migrate_schemas",
                tenant=True,
                schema_name=schema,
                interactive=False,
                verbosity=verbosity,
            )
        with schema_context(settings.PUBLIC_SCHEMA_NAME):
            added = shipped_catalog_seed()
        self.stdout.write(f"Publishing the shipped blueprints ({len(added)} new)...")
        if options["demo"]:
            self._seed_demo()

    def _seed_demo(self) -> None:
        actor = Actor.system("bootstrap --demo")
        credentials = _Credentials(Path(settings.DATA_DIR) / "demo-credentials.json")
        tenant = tenant_get_by_slug(DEMO_SLUG)
        if tenant is None:
            password = credentials.get(DEMO_ADMIN) or secrets.token_urlsafe(12)
            result = tenant_provision(
                slug=DEMO_SLUG,
                name=DEMO_NAME,
                admin_email=DEMO_ADMIN,
                admin_password=password,
                plan_code="team",
                actor=actor,
            )
            tenant = result.tenant
            credentials.put(DEMO_ADMIN, password)
        else:
            with schema_context(tenant.schema_name):
                credentials.ensure(DEMO_ADMIN, actor)

        with schema_context(settings.PUBLIC_SCHEMA_NAME):
            if not User.objects.filter(email=PLATFORM_ADMIN).exists():
                password = credentials.get(PLATFORM_ADMIN) or secrets.token_urlsafe(12)
                user_create(
                    email=PLATFORM_ADMIN,
                    password=password,
                    role=Role.PLATFORM_ADMIN,
                    full_name="Platform admin",
                    actor=actor,
                    is_staff=True,
                    email_verified=True,
                )
                credentials.put(PLATFORM_ADMIN, password)
            else:
                credentials.ensure(PLATFORM_ADMIN, actor)

        port = f":{settings.SITE_PORT}" if settings.SITE_PORT else ""
        public = f"{settings.SITE_SCHEME}://{settings.PUBLIC_HOSTS[0]}{port}/"
        url = tenant_primary_url(tenant)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Agent Factory is ready."))
        self.stdout.write(f"  Demo workspace:  {url}")
        self.stdout.write(f"    Sign in as     {DEMO_ADMIN}")
        self.stdout.write(f"    Password       {credentials.get(DEMO_ADMIN)}")
        self.stdout.write(f"  Platform admin:  {public}admin/")
        self.stdout.write(f"    Sign in as     {PLATFORM_ADMIN}")
        self.stdout.write(f"    Password       {credentials.get(PLATFORM_ADMIN)}")
        self.stdout.write(f"  Marketplace:     {url}marketplace/")
        self.stdout.write(f"  API docs:        {url}api/docs/")
        self.stdout.write("")


class _Credentials:
    """Demo passwords kept in DATA_DIR (git-ignored, owner-only) so each `make run` can print them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}

    def get(self, email: str) -> str | None:
        return self.values.get(email)

    def put(self, email: str, password: str) -> None:
        self.values[email] = password
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.values, indent=2))
        os.chmod(self.path, 0o600)

    def ensure(self, email: str, actor: Actor) -> None:
        """Make the stored password valid for the user in the current schema."""
        user = User.objects.get(email=email)
        known = self.get(email)
        if known and user.check_password(known):
            return
        password = secrets.token_urlsafe(12)
        user_password_set(user=user, password=password, actor=actor)
        self.put(email, password)
