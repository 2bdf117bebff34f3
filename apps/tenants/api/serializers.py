from __future__ import annotations

from rest_framework import serializers

from apps.tenants.models import Tenant
from apps.tenants.selectors import tenant_primary_url


class TenantCreateInput(serializers.Serializer[dict[str, object]]):
    slug = serializers.CharField(
        max_length=30, help_text="Becomes <slug>.<base domain> and the schema name."
    )
    name = serializers.CharField(max_length=100)
    admin_email = serializers.EmailField()
    admin_password = serializers.CharField(
        required=False,
        write_only=True,
        min_length=10,
        max_length=128,
        help_text="Leave out to have one generated and returned once.",
    )
    plan = serializers.SlugField(required=False, max_length=32)
    custom_domain = serializers.CharField(required=False, max_length=253)


class TenantSuspendInput(serializers.Serializer[dict[str, object]]):
    reason = serializers.CharField(max_length=500)


class TenantOutput(serializers.ModelSerializer[Tenant]):
    plan: serializers.SlugRelatedField[Tenant] = serializers.SlugRelatedField(
        slug_field="code", read_only=True
    )
    domains = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Tenant
        fields = [
            "slug",
            "name",
            "status",
            "suspended_reason",
            "suspended_at",
            "plan",
            "domains",
            "url",
            "schema_name",
            "created_at",
        ]
        read_only_fields = fields

    def get_domains(self, tenant: Tenant) -> list[str]:
        return [d.domain for d in tenant.domains.all()]

    def get_url(self, tenant: Tenant) -> str:
        return tenant_primary_url(tenant, self.context.get("request"))


class TenantCreatedOutput(TenantOutput):
    """The new tenant plus its first admin's sign-in, passed in the serializer context."""

    admin_email = serializers.SerializerMethodField()
    admin_password = serializers.SerializerMethodField(
        help_text="Only when generated; shown this once and never again."
    )

    def get_admin_email(self, tenant: Tenant) -> str:
        return str(self.context["admin_email"])

    def get_admin_password(self, tenant: Tenant) -> str | None:
        return self.context.get("admin_password")

    class Meta(TenantOutput.Meta):
        fields = [*TenantOutput.Meta.fields, "admin_email", "admin_password"]
        read_only_fields = fields
