from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from apps.accounts.forms import NewPasswordForm
from apps.tenants.services import tenant_slug_problems


class SignupForm(NewPasswordForm):
    field_order = ["name", "slug", "admin_email", "password1", "password2"]

    name = forms.CharField(
        label=_("Organisation name"),
        max_length=100,
        widget=forms.TextInput(attrs={"autocomplete": "organization", "autofocus": True}),
    )
    slug = forms.CharField(
        label=_("Workspace address"),
        max_length=30,
        help_text=_(
            "Lowercase letters, digits and hyphens, e.g. acme. Your workspace will be at acme.%(domain)s."
        ),
        widget=forms.TextInput(
            attrs={
                "autocapitalize": "none",
                "spellcheck": "false",
                "pattern": "[a-z][a-z0-9-]{1,28}[a-z0-9]",
            }
        ),
    )
    admin_email = forms.EmailField(
        label=_("Your work email"), widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )

    def __init__(self, *args: Any, base_domain: str = "localhost", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["slug"].help_text = self.fields["slug"].help_text % {"domain": base_domain}

    def clean_slug(self) -> str:
        slug = str(self.cleaned_data["slug"]).strip().lower()
        for message in tenant_slug_problems(slug).get("slug", []):
            self.add_error("slug", message)
        return slug
