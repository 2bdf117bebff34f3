"""An organisation's identity-provider connections (SAML 2.0 or OpenID Connect).

allauth never sees a stored ``SocialApp``: ``apps.accounts.adapter.SocialAccountAdapter`` builds
one from each enabled connection of the current schema on every request (``apps/sso/apps_for``).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import Role
from apps.core.crypto import EncryptedTextField

NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"

# Attribute (SAML) or claim (OIDC) names, tried in order. Together they cover what Okta, Microsoft
# Entra ID, Google Workspace and Keycloak send by default or with their usual mappers.
DEFAULT_ATTRIBUTE_MAPPING: dict[str, list[str]] = {
    "email": [
        "email",
        "mail",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "urn:oid:0.9.2342.19200300.100.1.3",
    ],
    "first_name": [
        "firstName",
        "given_name",
        "givenName",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
        "urn:oid:2.5.4.42",
    ],
    "last_name": [
        "lastName",
        "family_name",
        "surname",
        "sn",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
        "urn:oid:2.5.4.4",
    ],
    "groups": [
        "groups",
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
        "memberOf",
    ],
}


def default_attribute_mapping() -> dict[str, list[str]]:
    return {key: list(names) for key, names in DEFAULT_ATTRIBUTE_MAPPING.items()}


class Connection(models.Model):
    class Protocol(models.TextChoices):
        SAML = "saml", _("SAML 2.0")
        OIDC = "oidc", _("OpenID Connect")

    class NameIdFormat(models.TextChoices):
        EMAIL = NAMEID_EMAIL, _("Email address")
        PERSISTENT = NAMEID_PERSISTENT, _("Persistent identifier")
        UNSPECIFIED = NAMEID_UNSPECIFIED, _("Unspecified")

    protocol = models.CharField(_("protocol"), max_length=8, choices=Protocol.choices)
    slug = models.SlugField(
        _("slug"),
        max_length=40,
        unique=True,
        help_text=_("Part of the sign-in addresses; cannot be changed later."),
    )
    display_name = models.CharField(_("display name"), max_length=100)
    enabled = models.BooleanField(_("enabled"), default=True)

    # SAML 2.0
    saml_entity_id = models.CharField(_("IdP entity ID"), max_length=1024, blank=True)
    saml_sso_url = models.URLField(_("IdP single sign-on URL"), max_length=1024, blank=True)
    saml_slo_url = models.URLField(_("IdP single logout URL"), max_length=1024, blank=True)
    saml_certificates = models.JSONField(
        _("IdP signing certificates"),
        default=list,
        blank=True,
        help_text=_("Base64 DER bodies; any of them may sign (rotation)."),
    )
    saml_metadata_url = models.URLField(_("IdP metadata URL"), max_length=1024, blank=True)
    saml_name_id_format = models.CharField(
        _("NameID format"), max_length=100, choices=NameIdFormat.choices, default=NAMEID_EMAIL
    )
    allow_idp_initiated = models.BooleanField(_("allow IdP-initiated sign-in"), default=False)

    # OpenID Connect
    oidc_issuer = models.URLField(_("issuer"), max_length=1024, blank=True)
    oidc_client_id = models.CharField(_("client ID"), max_length=255, blank=True)
    oidc_client_secret = EncryptedTextField(_("client secret"), blank=True)
    oidc_scopes = models.CharField(
        _("scopes"), max_length=255, default="openid email profile", blank=True
    )

    # Both
    attribute_mapping = models.JSONField(
        _("attribute mapping"), default=default_attribute_mapping, blank=True
    )
    jit_enabled = models.BooleanField(_("create accounts on first sign-in"), default=True)
    trust_idp_email = models.BooleanField(
        _("the identity provider's email addresses are verified"),
        default=False,
        help_text=_(
            "Only then is a first SSO sign-in linked to an existing account with the same email."
        ),
    )
    role_mapping = models.JSONField(_("group to role mapping"), default=list, blank=True)
    default_role = models.CharField(
        _("default role"), max_length=32, choices=Role.choices, default=Role.MEMBER
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["display_name", "slug"]
        verbose_name = _("SSO connection")
        verbose_name_plural = _("SSO connections")

    def __str__(self) -> str:
        return f"{self.display_name} ({self.slug})"

    @property
    def is_saml(self) -> bool:
        return self.protocol == self.Protocol.SAML

    @property
    def has_client_secret(self) -> bool:
        return bool(self.oidc_client_secret)

    def mapping(self, key: str) -> list[str]:
        names: Any = (self.attribute_mapping or {}).get(key)
        if not names:
            return list(DEFAULT_ATTRIBUTE_MAPPING[key])
        return [str(name) for name in names]
