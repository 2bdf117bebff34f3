from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.marketplace.models import Blueprint, BlueprintVersion, CatalogPolicy, Review, ReviewReport
from apps.marketplace.selectors import recommended_version


def settings_fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The settings a deployment will ask for, in the schema's order."""
    required = set(schema.get("required", []))
    fields = []
    for name, spec in schema.get("properties", {}).items():
        fields.append(
            {
                "name": name,
                "type": spec.get("type"),
                "title": spec.get("title", name),
                "description": spec.get("description", ""),
                "required": name in required,
                "secret": spec.get("x-secret") is True,
                "enum": spec.get("enum"),
                "default": spec.get("default"),
            }
        )
    return fields


class PublisherOutput(serializers.Serializer[Any]):
    slug = serializers.CharField()
    name = serializers.CharField()
    verified = serializers.BooleanField()


class BlueprintListOutput(serializers.ModelSerializer[Blueprint]):
    publisher = PublisherOutput()
    pricing = serializers.SerializerMethodField()
    rating = serializers.SerializerMethodField()

    class Meta:
        model = Blueprint
        fields = [
            "slug", "name", "summary", "category", "tags", "icon", "publisher", "pricing",
            "visibility", "certified", "rating", "install_count", "published_at",
        ]  # fmt: skip

    def get_pricing(self, obj: Blueprint) -> dict[str, Any]:
        return {
            "model": obj.pricing_model,
            "price": str(obj.price.normalize()) if obj.price else "0",
            "currency": obj.currency,
        }

    def get_rating(self, obj: Blueprint) -> dict[str, Any]:
        return {"average": float(obj.rating_avg), "count": obj.rating_count}


class VersionRefOutput(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    version = serializers.CharField()
    blueprint = serializers.CharField(source="blueprint.slug")


class VersionOutput(serializers.ModelSerializer[BlueprintVersion]):
    replacement = VersionRefOutput(allow_null=True)
    deployable = serializers.BooleanField()
    settings = serializers.SerializerMethodField()
    knowledge = serializers.SerializerMethodField()

    class Meta:
        model = BlueprintVersion
        fields = [
            "id", "version", "state", "deployable", "changelog", "provider", "model", "parameters",
            "tools", "guardrails", "sunset_date", "replacement", "settings", "settings_schema",
            "knowledge", "created_at", "state_changed_at",
        ]  # fmt: skip

    def get_settings(self, obj: BlueprintVersion) -> list[dict[str, Any]]:
        return settings_fields(obj.settings_schema)

    def get_knowledge(self, obj: BlueprintVersion) -> list[str]:
        return [doc.title for doc in obj.documents.all()]


class BlueprintDetailOutput(BlueprintListOutput):
    versions = serializers.SerializerMethodField()
    recommended_version = serializers.SerializerMethodField()

    class Meta(BlueprintListOutput.Meta):
        fields = [
            *BlueprintListOutput.Meta.fields,
            "description", "description_html", "state", "versions", "recommended_version",
        ]  # fmt: skip

    def get_versions(self, obj: Blueprint) -> list[dict[str, Any]]:
        return list(VersionOutput(getattr(obj, "visible_versions", []), many=True).data)

    def get_recommended_version(self, obj: Blueprint) -> str | None:
        version = recommended_version(obj)
        return version.version if version else None


class ReviewOutput(serializers.ModelSerializer[Review]):
    blueprint = serializers.CharField(source="blueprint.slug")
    mine = serializers.SerializerMethodField()

    class Meta:
        model = Review
        fields = [
            "id", "blueprint", "rating", "text", "author_name", "created_at", "updated_at",
            "publisher_reply", "replied_at", "mine",
        ]  # fmt: skip

    def get_mine(self, obj: Review) -> bool:
        tenant, user = self.context.get("tenant"), self.context.get("user")
        return bool(tenant and user and obj.tenant_id == tenant.pk and obj.user_id == user.pk)


class ReviewCreateInput(serializers.Serializer[Any]):
    blueprint = serializers.SlugField(max_length=60)
    # Range and type are checked by the service, which gives the one error everyone sees.
    rating = serializers.JSONField()
    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)


class ReviewUpdateInput(serializers.Serializer[Any]):
    rating = serializers.JSONField()
    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)


class ReportInput(serializers.Serializer[Any]):
    reason = serializers.CharField(allow_blank=True, trim_whitespace=False)


class ReplyInput(serializers.Serializer[Any]):
    text = serializers.CharField(allow_blank=True, trim_whitespace=False)


class ReportOutput(serializers.ModelSerializer[ReviewReport]):
    review = ReviewOutput()
    tenant = serializers.CharField(source="tenant.slug")

    class Meta:
        model = ReviewReport
        fields = ["id", "review", "tenant", "reason", "status", "created_at", "resolved_at"]


class ResolveInput(serializers.Serializer[Any]):
    decision = serializers.ChoiceField(choices=["remove", "dismiss"])


class PublishInput(serializers.Serializer[Any]):
    content = serializers.CharField(trim_whitespace=False, help_text="The blueprint file (YAML).")
    dry_run = serializers.BooleanField(default=False)


class PublishOutput(serializers.Serializer[Any]):
    blueprint = serializers.CharField(source="blueprint.slug")
    version = serializers.CharField(source="version.version")
    version_id = serializers.IntegerField(source="version.pk", allow_null=True)
    state = serializers.CharField(source="version.state")
    blueprint_created = serializers.BooleanField()
    dry_run = serializers.BooleanField()


class TransitionInput(serializers.Serializer[Any]):
    to = serializers.ChoiceField(choices=BlueprintVersion.State.choices)
    sunset_date = serializers.DateField(required=False, allow_null=True)
    replacement = serializers.IntegerField(required=False, allow_null=True)
    note = serializers.CharField(required=False, allow_blank=True, max_length=500)


class CatalogPolicyInput(serializers.Serializer[Any]):
    mode = serializers.CharField()
    blueprints = serializers.ListField(child=serializers.CharField(), required=False)
    publishers = serializers.ListField(child=serializers.CharField(), required=False)
    categories = serializers.ListField(child=serializers.CharField(), required=False)


class CatalogPolicyOutput(serializers.Serializer[CatalogPolicy]):
    mode = serializers.CharField()
    blueprints = serializers.SerializerMethodField()
    publishers = serializers.SerializerMethodField()
    categories = serializers.ListField(child=serializers.CharField())
    updated_at = serializers.DateTimeField(allow_null=True)

    def get_blueprints(self, obj: CatalogPolicy) -> list[str]:
        return sorted(b.slug for b in obj.blueprints.all()) if obj.pk else []

    def get_publishers(self, obj: CatalogPolicy) -> list[str]:
        return sorted(p.slug for p in obj.publishers.all()) if obj.pk else []
