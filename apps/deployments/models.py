"""Blueprints deployed into an organisation: configuration, encrypted credentials, status, and the
record of every call the runtime made for them. Tenant schema.

A deployment points at a catalog version in ``public``; the foreign keys are declared without a
database constraint because the two tables live in different schemas (the catalog never deletes
versions). ``DO_NOTHING`` also keeps Django's delete collector in ``public`` from looking for
deployments in a schema that is not on the search path.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings as django_settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.core.crypto import EncryptedTextField


class Deployment(models.Model):
    class Status(models.TextChoices):
        CONFIGURING = "configuring", _("Configuring")
        ACTIVE = "active", _("Active")
        PAUSED = "paused", _("Paused")
        ERROR = "error", _("Error")
        DELETED = "deleted", _("Deleted")

    class Fallback(models.TextChoices):
        NONE = "", _("No fallback")
        LOCAL = "local", _("The built-in offline provider")
        OPENAI = "openai", _("OpenAI")
        ANTHROPIC = "anthropic", _("Anthropic")

    name = models.CharField(_("name"), max_length=100)
    # The deployment's name in the OpenAI-compatible API (`model`), unique among live ones.
    slug = models.SlugField(_("slug"), max_length=64)
    blueprint = models.ForeignKey(
        "marketplace.Blueprint", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    version = models.ForeignKey(
        "marketplace.BlueprintVersion",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    settings = models.JSONField(_("settings"), default=dict, blank=True)
    fallback_provider = models.CharField(
        _("fallback provider"), max_length=16, choices=Fallback.choices, blank=True, default=""
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.CONFIGURING
    )
    status_reason = models.TextField(_("reason"), blank=True)
    owner = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("deployment")
        verbose_name_plural = _("deployments")
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["slug"], condition=~Q(status="deleted"), name="deployments_live_slug"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_live(self) -> bool:
        return self.status != self.Status.DELETED


class DeploymentSecret(models.Model):
    """One secret setting (an API key, a token), encrypted at rest, never shown again."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=64)
    value = EncryptedTextField()
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["deployment", "name"], name="deployments_secret_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (secret)"

    def __repr__(self) -> str:
        return f"<DeploymentSecret {self.deployment_id}:{self.name} ********>"


class DeploymentDocument(models.Model):
    """A document the organisation uploads for the agent's knowledge search."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(_("title"), max_length=200)
    content = models.TextField(_("content"))
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.title


class RuntimeCall(models.Model):
    """One call of the runtime for a deployment: what it cost and how it went."""

    class Outcome(models.TextChoices):
        OK = "ok", _("Answered")
        FAILED = "failed", _("Failed")

    # No index of its own: deployments_call_recent (deployment, created_at) serves it.
    deployment = models.ForeignKey(
        Deployment, on_delete=models.CASCADE, related_name="calls", db_index=False
    )
    user_id = models.BigIntegerField(null=True)
    provider = models.CharField(max_length=16)
    model = models.CharField(max_length=100)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    error_kind = models.CharField(max_length=32, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes: ClassVar = [
            models.Index(fields=["deployment", "created_at"], name="deployments_call_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.outcome}"


class ProviderFailure(models.Model):
    """Every failed provider attempt, with its type (retries and fallbacks included)."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="failures")
    provider = models.CharField(max_length=16)
    kind = models.CharField(max_length=32)
    attempt = models.PositiveSmallIntegerField(default=1)
    message = models.CharField(max_length=500, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-occurred_at"]
        indexes: ClassVar = [
            models.Index(fields=["deployment", "occurred_at"], name="deployments_failure_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.kind}"


class ToolPolicy(models.Model):
    """The organisation's rules for the ``http_get`` tool: the hosts agents may fetch from, and
    whether private and loopback addresses are allowed (off: they are refused)."""

    allowed_hosts = ArrayField(models.CharField(max_length=253), default=list, blank=True)
    allow_private_addresses = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("tool policy")
        verbose_name_plural = _("tool policies")

    def __str__(self) -> str:
        return ", ".join(self.allowed_hosts) or "-"
