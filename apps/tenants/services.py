"""Provisioning and lifecycle of organisations. Every change is audited in the public schema and,
while the tenant exists, in its own."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context, schema_exists
from psycopg import sql

from apps.accounts.models import Role, User
from apps.accounts.services import user_create
from apps.audit.selectors import audit_chain_verify
from apps.audit.services import audit_record
from apps.core.exceptions import Conflict, InvalidInput
from apps.tenants.models import Domain, Plan, Tenant
from apps.tenants.schema_clone import clone_template_schema
from apps.tenants.selectors import plan_default

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"
)


@dataclass(frozen=True)
class ProvisionedTenant:
    tenant: Tenant
    admin: User
    admin_password: str
    password_generated: bool


def schema_name_for(slug: str) -> str:
    return slug.replace("-", "_")


def tenant_slug_problems(slug: str) -> dict[str, list[str]]:
    """Why ``slug`` cannot be used for a new tenant (empty when it can). Read-only."""
    if not SLUG_PATTERN.match(slug) or "--" in slug:
        return {
            "slug": [
                _(
                    "Use 3 to 30 lowercase letters, digits and single hyphens, starting with a "
                    "letter and not ending with a hyphen."
                )
            ]
        }
    if slug in settings.TENANT_RESERVED_SLUGS or slug.startswith("pg-"):
        return {"slug": [_("This address is reserved. Choose another.")]}
    taken = (
        Tenant.objects.filter(slug=slug).exists()
        or schema_exists(schema_name_for(slug))
        or Domain.objects.filter(domain=f"{slug}.{settings.BASE_DOMAIN}").exists()
    )
    if taken:
        return {"slug": [_("This address is already taken. Choose another.")]}
    return {}


def _validate_domain(domain: str) -> dict[str, list[str]]:
    if not _HOSTNAME.match(domain):
        return {"custom_domain": [_("Enter a host name such as agents.example.com.")]}
    if domain.startswith("www."):
        # Routing ignores a leading www., so the name without it is what must be registered.
        return {"custom_domain": [_("Leave out the www. prefix; both forms will work.")]}
    if domain == settings.BASE_DOMAIN or domain.endswith(f".{settings.BASE_DOMAIN}"):
        return {
            "custom_domain": [
                _("Custom domains must be your own, outside %(base)s.")
                % {"base": settings.BASE_DOMAIN}
            ]
        }
    if Domain.objects.filter(domain=domain).exists() or domain in settings.PUBLIC_HOSTS:
        return {"custom_domain": [_("This domain is already in use.")]}
    return {}


def tenant_provision(
    *,
    slug: str,
    name: str,
    admin_email: str,
    admin_password: str | None = None,
    plan_code: str | None = None,
    custom_domain: str | None = None,
    actor: Any = None,
) -> ProvisionedTenant:
    """Create an organisation: its row, its host, its schema (a copy of the template) and its
    first tenant admin, all in one transaction — a failure leaves nothing behind."""
    slug = (slug or "").strip().lower()
    name = (name or "").strip()
    admin_email = (admin_email or "").strip().lower()
    custom_domain = (custom_domain or "").strip().lower() or None

    errors: dict[str, list[str]] = {}
    errors |= tenant_slug_problems(slug)
    if not name or len(name) > 100:
        errors["name"] = [_("Enter a name of 1 to 100 characters.")]
    try:
        validate_email(admin_email)
    except ValidationError:
        errors["admin_email"] = [_("Enter a valid email address.")]
    password_generated = admin_password is None
    password = admin_password if admin_password is not None else secrets.token_urlsafe(12)
    if not password_generated:
        try:
            validate_password(password, User(email=admin_email))
        except ValidationError as exc:
            errors["admin_password"] = list(exc.messages)
    plan = Plan.objects.filter(code=plan_code).first() if plan_code else plan_default()
    if plan_code and plan is None:
        errors["plan"] = [_("There is no plan with this code.")]
    if custom_domain:
        errors |= _validate_domain(custom_domain)
    if errors:
        raise InvalidInput(_("The organisation could not be created."), details=errors)

    schema_name = schema_name_for(slug)
    try:
        return _provision(
            slug,
            name,
            admin_email,
            password,
            password_generated,
            plan,
            custom_domain,
            schema_name,
            actor,
        )
    except (IntegrityError, ValidationError) as exc:
        # Another request took the slug or domain between validation and insert.
        raise InvalidInput(
            _("The organisation could not be created."),
            details=tenant_slug_problems(slug)
            or {"custom_domain": [_("This domain is already in use.")]},
        ) from exc


def _provision(
    slug: str,
    name: str,
    admin_email: str,
    password: str,
    password_generated: bool,
    plan: Plan | None,
    custom_domain: str | None,
    schema_name: str,
    actor: Any,
) -> ProvisionedTenant:
    with schema_context(settings.PUBLIC_SCHEMA_NAME), transaction.atomic():
        tenant = Tenant(schema_name=schema_name, slug=slug, name=name, plan=plan)
        tenant.full_clean()
        tenant.save()
        Domain.objects.create(
            domain=f"{slug}.{settings.BASE_DOMAIN}", tenant=tenant, is_primary=not custom_domain
        )
        if custom_domain:
            Domain.objects.create(domain=custom_domain, tenant=tenant, is_primary=True)
        clone_template_schema(schema_name)

        with schema_context(schema_name):
            admin = user_create(
                email=admin_email,
                password=password,
                role=Role.TENANT_ADMIN,
                actor=actor,
                is_staff=True,
                email_verified=True,
            )
            audit_record(
                action="tenant.provisioned",
                actor=actor,
                target_type="tenant",
                target_id=tenant.pk,
                metadata={"slug": slug, "name": name, "plan": plan.code if plan else None},
            )
        audit_record(
            action="tenant.provisioned",
            actor=actor,
            target_type="tenant",
            target_id=tenant.pk,
            metadata={
                "slug": slug,
                "name": name,
                "schema": schema_name,
                "admin_email": admin_email,
                "plan": plan.code if plan else None,
                "custom_domain": custom_domain,
            },
        )
    return ProvisionedTenant(tenant, admin, password, password_generated)


def tenant_suspend(*, tenant: Tenant, reason: str, actor: Any = None) -> Tenant:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput(
            _("Say why the organisation is suspended; its members will see it."),
            details={"reason": [_("This field is required.")]},
        )
    if tenant.status == Tenant.Status.SUSPENDED:
        raise Conflict(_("This organisation is already suspended."), code="already_suspended")
    with schema_context(settings.PUBLIC_SCHEMA_NAME), transaction.atomic():
        tenant.status = Tenant.Status.SUSPENDED
        tenant.suspended_reason = reason[:500]
        tenant.suspended_at = timezone.now()
        tenant.save(update_fields=["status", "suspended_reason", "suspended_at"])
        _audit_both(tenant, "tenant.suspended", actor, {"reason": tenant.suspended_reason})
    return tenant


def tenant_resume(*, tenant: Tenant, actor: Any = None) -> Tenant:
    if tenant.status == Tenant.Status.ACTIVE:
        raise Conflict(_("This organisation is already active."), code="already_active")
    with schema_context(settings.PUBLIC_SCHEMA_NAME), transaction.atomic():
        tenant.status = Tenant.Status.ACTIVE
        tenant.suspended_reason = ""
        tenant.suspended_at = None
        tenant.save(update_fields=["status", "suspended_reason", "suspended_at"])
        _audit_both(tenant, "tenant.resumed", actor, {})
    return tenant


def tenant_delete(*, tenant: Tenant, confirm: str | None, actor: Any = None) -> None:
    """Drop an organisation and everything in its schema. ``confirm`` must repeat its slug."""
    if tenant.is_public:
        raise Conflict(_("The platform itself cannot be deleted."), code="protected")
    if confirm != tenant.slug:
        raise InvalidInput(
            _("Deleting an organisation destroys all its data. Confirm by repeating its slug."),
            code="confirmation_required",
            details={
                "confirm": [
                    _("Must equal the organisation's slug, %(slug)s.") % {"slug": tenant.slug}
                ]
            },
        )
    with schema_context(tenant.schema_name):
        chain = audit_chain_verify()
    with schema_context(settings.PUBLIC_SCHEMA_NAME), transaction.atomic():
        audit_record(
            action="tenant.deleted",
            actor=actor,
            target_type="tenant",
            target_id=tenant.pk,
            metadata={
                "slug": tenant.slug,
                "name": tenant.name,
                "schema": tenant.schema_name,
                # What the tenant's own (now dropped) trail looked like at the end.
                "tenant_audit_events": chain.checked,
                "tenant_audit_chain_intact": chain.ok,
            },
        )
        with connection.cursor() as cursor:
            # Deferred foreign-key checks still pending on the schema's tables (rows written
            # earlier in this transaction) would make the drop fail: run them now.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(tenant.schema_name)
                )
            )
        tenant.domains.all().delete()
        Tenant.objects.filter(pk=tenant.pk).delete()


def _audit_both(tenant: Tenant, action: str, actor: Any, metadata: dict[str, Any]) -> None:
    audit_record(
        action=action,
        actor=actor,
        target_type="tenant",
        target_id=tenant.pk,
        metadata={"slug": tenant.slug, **metadata},
    )
    with schema_context(tenant.schema_name):
        audit_record(
            action=action, actor=actor, target_type="tenant", target_id=tenant.pk, metadata=metadata
        )


def public_tenant_ensure() -> Tenant:
    """The row django-tenants needs for the public schema, with a domain per public host."""
    with schema_context(settings.PUBLIC_SCHEMA_NAME), transaction.atomic():
        tenant, _created = Tenant.objects.get_or_create(
            schema_name=settings.PUBLIC_SCHEMA_NAME,
            defaults={"name": "Agent Factory", "slug": "public"},
        )
        for index, host in enumerate(settings.PUBLIC_HOSTS):
            Domain.objects.get_or_create(
                domain=host.lower(), defaults={"tenant": tenant, "is_primary": index == 0}
            )
    return tenant


def template_schema_migrate(verbosity: int = 0) -> None:
    """Create the template schema if missing and bring it to the latest migrations."""
    template = settings.TENANT_TEMPLATE_SCHEMA
    if not schema_exists(template):
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(template)))
    call_command(
        "migrate_schemas", tenant=True, schema_name=template, interactive=False, verbosity=verbosity
    )
