"""django-tenants: one schema per organisation, new ones cloned from a template schema."""

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
# Kept migrated alongside the tenants; provisioning copies it instead of replaying migrations.
TENANT_TEMPLATE_SCHEMA = "tenant_template"
# Tables whose rows are copied from the template into a new tenant. Only Django's bookkeeping:
# seed data a tenant starts with belongs in tenant_provision, not in a data migration (a data
# migration fills the template's tables, whose rows are not copied unless listed here).
TENANT_TEMPLATE_COPY_TABLES = ("django_migrations", "django_content_type", "auth_permission")
# Slugs that would collide with platform hosts or PostgreSQL's own schemas.
TENANT_RESERVED_SLUGS = frozenset(
    {
        "admin",
        "api",
        "app",
        "auth",
        "billing",
        "default",
        "docs",
        "help",
        "information_schema",
        "mail",
        "marketplace",
        "platform",
        "public",
        "static",
        "status",
        "support",
        "tenant_template",
        "www",
    }
)
