"""Forms of the connection pages. They only shape input; apps.sso.services validates and saves."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from apps.accounts.permissions import role_choices_for_current_schema
from apps.sso.models import Connection

MAPPING_FIELDS = {
    "map_email": "email",
    "map_first_name": "first_name",
    "map_last_name": "last_name",
    "map_groups": "groups",
}


def _names(value: list[str]) -> str:
    return ", ".join(value)


class _ConnectionForm(forms.Form):
    display_name = forms.CharField(label=_("Name on the sign-in button"), max_length=100)
    slug = forms.SlugField(
        label=_("Slug"),
        max_length=40,
        help_text=_("Lowercase letters, digits and hyphens; part of the sign-in addresses."),
    )
    enabled = forms.BooleanField(label=_("Enabled"), required=False, initial=True)
    jit_enabled = forms.BooleanField(
        label=_("Create an account on first sign-in"), required=False, initial=True
    )
    trust_idp_email = forms.BooleanField(
        label=_("The identity provider's email addresses are verified"),
        required=False,
        help_text=_(
            "Only then is a first SSO sign-in linked to an existing account with the same email."
        ),
    )
    default_role = forms.ChoiceField(label=_("Default role"), choices=())
    role_mapping = forms.CharField(
        label=_("Group to role mapping"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("One “group = role” per line, e.g. “agent-admins = tenant_admin”."),
    )
    map_email = forms.CharField(label=_("Email attribute names"), required=False)
    map_first_name = forms.CharField(label=_("First name attribute names"), required=False)
    map_last_name = forms.CharField(label=_("Last name attribute names"), required=False)
    map_groups = forms.CharField(
        label=_("Groups attribute names"),
        required=False,
        help_text=_("Comma-separated, tried in order. Leave empty for the defaults."),
    )

    def __init__(self, *args: Any, instance: Connection | None = None, **kwargs: Any) -> None:
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = self.initial_from(instance)
        super().__init__(*args, **kwargs)
        choices = role_choices_for_current_schema()
        self.fields["default_role"].choices = choices  # type: ignore[attr-defined]
        self.instance = instance
        if instance is not None:
            self.fields["slug"].disabled = True
            self.fields["slug"].required = False

    @staticmethod
    def initial_from(instance: Connection) -> dict[str, Any]:
        initial: dict[str, Any] = {
            name: getattr(instance, name)
            for name in ("display_name", "slug", "enabled", "jit_enabled", "trust_idp_email")
        }
        initial["default_role"] = instance.default_role
        initial["role_mapping"] = "\n".join(
            f"{row['group']} = {row['role']}" for row in instance.role_mapping
        )
        for field_name, key in MAPPING_FIELDS.items():
            initial[field_name] = _names(instance.mapping(key))
        return initial

    def clean_role_mapping(self) -> list[dict[str, str]]:
        rows = []
        for number, line in enumerate(self.cleaned_data["role_mapping"].splitlines(), start=1):
            if not line.strip():
                continue
            group, sep, role = line.rpartition("=")
            if not sep or not group.strip() or not role.strip():
                raise forms.ValidationError(
                    _("Line %(number)s is not “group = role”.") % {"number": number}
                )
            rows.append({"group": group.strip(), "role": role.strip()})
        return rows

    def service_arguments(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        mapping = {}
        for field_name, key in MAPPING_FIELDS.items():
            names = [part.strip() for part in data.pop(field_name, "").split(",") if part.strip()]
            if names:
                mapping[key] = names
        data["attribute_mapping"] = mapping
        if self.instance is not None:
            data.pop("slug", None)
        return data


class SamlConnectionForm(_ConnectionForm):
    saml_metadata_url = forms.URLField(
        assume_scheme="https",
        label=_("IdP metadata URL"),
        required=False,
        max_length=1024,
        help_text=_("Fetched when you save; it fills in the fields below."),
    )
    fetch_metadata = forms.BooleanField(
        label=_("Fetch the metadata again when saving"), required=False
    )
    saml_metadata = forms.CharField(
        label=_("IdP metadata XML"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Or paste the metadata document here instead."),
    )
    saml_entity_id = forms.CharField(label=_("IdP entity ID"), required=False, max_length=1024)
    saml_sso_url = forms.URLField(
        assume_scheme="https", label=_("IdP single sign-on URL"), required=False, max_length=1024
    )
    saml_slo_url = forms.URLField(
        assume_scheme="https", label=_("IdP single logout URL"), required=False, max_length=1024
    )
    saml_certificates = forms.CharField(
        label=_("IdP signing certificates"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("PEM; several during a certificate rotation."),
    )
    saml_name_id_format = forms.ChoiceField(
        label=_("NameID format"), choices=Connection.NameIdFormat.choices
    )
    allow_idp_initiated = forms.BooleanField(
        label=_("Allow sign-in started at the identity provider (IdP-initiated)"),
        required=False,
        help_text=_("Off by default: unsolicited responses are easier to misuse."),
    )

    @staticmethod
    def initial_from(instance: Connection) -> dict[str, Any]:
        initial = _ConnectionForm.initial_from(instance)
        for name in (
            "saml_metadata_url",
            "saml_entity_id",
            "saml_sso_url",
            "saml_slo_url",
            "saml_name_id_format",
            "allow_idp_initiated",
        ):
            initial[name] = getattr(instance, name)
        initial["saml_certificates"] = "\n".join(
            "-----BEGIN CERTIFICATE-----\n" + body + "\n-----END CERTIFICATE-----"
            for body in instance.saml_certificates
        )
        return initial

    def service_arguments(self) -> dict[str, Any]:
        data = super().service_arguments()
        data["saml_metadata_xml"] = data.pop("saml_metadata") or None
        if self.instance is None:
            data.pop("fetch_metadata", None)
        return data


class OidcConnectionForm(_ConnectionForm):
    oidc_issuer = forms.URLField(
        assume_scheme="https",
        label=_("Issuer URL"),
        max_length=1024,
        help_text=_("Its /.well-known/openid-configuration is read at sign-in."),
    )
    oidc_client_id = forms.CharField(label=_("Client ID"), max_length=255)
    oidc_client_secret = forms.CharField(
        label=_("Client secret"),
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Never shown again. When editing, leave empty to keep the current secret."),
    )
    oidc_scopes = forms.CharField(label=_("Scopes"), max_length=255, initial="openid email profile")

    @staticmethod
    def initial_from(instance: Connection) -> dict[str, Any]:
        initial = _ConnectionForm.initial_from(instance)
        for name in ("oidc_issuer", "oidc_client_id", "oidc_scopes"):
            initial[name] = getattr(instance, name)
        return initial


def form_class_for(protocol: str) -> type[_ConnectionForm]:
    return SamlConnectionForm if protocol == Connection.Protocol.SAML else OidcConnectionForm
