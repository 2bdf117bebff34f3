"""django-tenants: one schema per organisation, new ones cloned from a template schema."""

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
# Kept migrated alongside the tenants; provisioning copies it instead of replaying migrations.
TENANT_TEMPLATE_SCHEMA = "tenant_template"
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
