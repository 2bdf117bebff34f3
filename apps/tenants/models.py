"""Organisations (tenants), the hosts that route to them, and the plans they are on."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_tenants.models import DomainMixin, TenantMixin


class Plan(models.Model):  # type: ignore[django-manager-missing]  # stubs miss TenantMixin's manager
    """What a tenant may use. A limit left empty means unlimited."""

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=64)
    max_members = models.PositiveIntegerField(_("members"), null=True, blank=True)
    max_active_deployments = models.PositiveIntegerField(
        _("active deployments"), null=True, blank=True
    )
    monthly_message_quota = models.PositiveIntegerField(
        _("messages per month"), null=True, blank=True
    )
    is_default = models.BooleanField(_("default for new tenants"), default=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["id"]
        verbose_name = _("plan")
        verbose_name_plural = _("plans")
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="tenants_plan_single_default",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Tenant(TenantMixin):
    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")

    name = models.CharField(_("name"), max_length=100)
    slug = models.SlugField(_("slug"), max_length=30, unique=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE
    )
    suspended_reason = models.CharField(_("suspension reason"), max_length=500, blank=True)
    suspended_at = models.DateTimeField(_("suspended at"), null=True, blank=True)
    plan = models.ForeignKey(
        Plan,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="tenants",
        verbose_name=_("plan"),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    # Schemas are created by cloning the template (services.tenant_provision), never implicitly,
    # and dropped only by tenant_delete with an explicit confirmation.
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
        ordering = ["slug"]
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")

    def __str__(self) -> str:
        return self.name

    @property
    def is_public(self) -> bool:
        return self.schema_name == "public"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class Domain(DomainMixin):
    class Meta:
        verbose_name = _("domain")
        verbose_name_plural = _("domains")

    def __str__(self) -> str:
        return self.domain
