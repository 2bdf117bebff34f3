from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.deployments.models import Deployment
from apps.deployments.selectors import DeploymentStats
from apps.deployments.settings_schema import secret_names
from apps.runtime.selection import choose_provider


class DeploymentOutput(serializers.ModelSerializer[Deployment]):
    """Secrets are never returned: only which secret settings hold a value."""

    blueprint = serializers.CharField(source="blueprint.slug")
    blueprint_name = serializers.CharField(source="blueprint.name")
    version = serializers.CharField(source="version.version")
    version_state = serializers.CharField(source="version.state")
    sunset_date = serializers.DateField(source="version.sunset_date", allow_null=True)
    owner = serializers.SerializerMethodField()
    secrets = serializers.SerializerMethodField()
    provider = serializers.SerializerMethodField()
    usage_this_month = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id", "name", "slug", "status", "status_reason", "blueprint", "blueprint_name",
            "version", "version_state", "sunset_date", "settings", "secrets", "fallback_provider",
            "provider", "owner", "usage_this_month", "created_at", "updated_at",
        ]  # fmt: skip

    def get_owner(self, obj: Deployment) -> str | None:
        return obj.owner.email if obj.owner else None

    def get_secrets(self, obj: Deployment) -> dict[str, bool]:
        stored = {s.name for s in obj.secrets.all()}
        return {name: name in stored for name in sorted(secret_names(obj.version.settings_schema))}

    def get_provider(self, obj: Deployment) -> dict[str, Any]:
        # Which provider serves it, decided from which secrets are set (their values stay here).
        stored = {s.name: "set" for s in obj.secrets.all()}
        choice = choose_provider(
            provider=obj.version.provider,
            model=obj.version.model,
            secrets=stored,
            settings=obj.settings,
        )
        return {"name": choice.name, "model": choice.model, "offline": choice.offline}

    def get_usage_this_month(self, obj: Deployment) -> dict[str, Any]:
        stats: DeploymentStats = self.context.get("stats", {}).get(obj.pk, DeploymentStats())
        return {
            "messages": stats.messages,
            "tokens": stats.tokens,
            "error_rate": round(stats.error_rate, 4),
            "p95_latency_ms": stats.p95_latency_ms,
        }


class DeploymentCreateInput(serializers.Serializer[Any]):
    blueprint = serializers.SlugField(max_length=60)
    version = serializers.CharField(required=False, allow_blank=True, max_length=64)
    name = serializers.CharField(max_length=100)
    settings = serializers.DictField(required=False, default=dict)
    fallback_provider = serializers.CharField(required=False, allow_blank=True, default="")


class DeploymentUpdateInput(serializers.Serializer[Any]):
    name = serializers.CharField(required=False, max_length=100)
    settings = serializers.DictField(
        required=False, help_text="All non-secret settings; omitted secrets keep their values."
    )


class UpgradeInput(serializers.Serializer[Any]):
    version = serializers.CharField(max_length=64)


class RotateSecretInput(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=64)
    value = serializers.CharField(trim_whitespace=False, max_length=10_000)


class AskInput(serializers.Serializer[Any]):
    message = serializers.CharField(max_length=100_000, trim_whitespace=False)


class AskOutput(serializers.Serializer[Any]):
    reply = serializers.CharField()
    refused = serializers.CharField(allow_null=True)
    offline = serializers.BooleanField()
    tool_calls = serializers.ListField(child=serializers.DictField())
    usage = serializers.DictField(allow_null=True)


class DocumentInput(serializers.Serializer[Any]):
    title = serializers.CharField(max_length=200)
    content = serializers.CharField(max_length=200_000, trim_whitespace=False)


class DocumentOutput(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    title = serializers.CharField()
    characters = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_characters(self, obj: Any) -> int:
        return len(obj.content)
