from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import Role, User
from apps.accounts.permissions import permissions_of, role_choices_for_current_schema


class InvitationForm(forms.Form):
    email = forms.EmailField(
        label=_("Email address"), widget=forms.EmailInput(attrs={"autocomplete": "off"})
    )
    role = forms.ChoiceField(label=_("Role"), choices=())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        role = self.fields["role"]
        assert isinstance(role, forms.ChoiceField)
        role.choices = role_choices_for_current_schema()
        self.fields["role"].initial = "member"


class NewPasswordForm(forms.Form):
    """A new password typed twice; the password rules apply where it is saved (the service)."""

    password_label: Any = _("Password")

    password1 = forms.CharField(
        label=_("Password"),
        strip=False,
        help_text=_("At least 10 characters, not entirely numeric, not a common password."),
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label=_("Repeat the password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["password1"].label = self.password_label

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if cleaned.get("password1") and cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", _("The two passwords differ."))
        return cleaned


class AcceptInvitationForm(NewPasswordForm):
    password_label = _("Choose a password")
    field_order = ["full_name", "password1", "password2"]

    full_name = forms.CharField(
        label=_("Your name"),
        max_length=150,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )


class SecurityPolicyForm(forms.Form):
    require_mfa = forms.BooleanField(
        label=_("Require two-factor authentication for everyone"), required=False
    )
    require_sso = forms.BooleanField(
        label=_("Require single sign-on (password sign-in only for the break-glass administrator)"),
        required=False,
    )
    break_glass_user = forms.ModelChoiceField(
        label=_("Break-glass administrator"),
        queryset=User.objects.none(),
        required=False,
        help_text=_(
            "An active tenant admin who can still sign in with a password if the identity provider fails."
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["break_glass_user"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = User.objects.filter(role=Role.TENANT_ADMIN, is_active=True).order_by(
            "email"
        )


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label=_("Name"), max_length=100, help_text=_("What the key is for, e.g. “Nightly export”.")
    )
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"),
        choices=(),
        widget=forms.CheckboxSelectMultiple,
        help_text=_("What the key may do: at most what your role allows."),
    )
    expires_on = forms.DateField(
        label=_("Expires on"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("Leave empty for a key that does not expire."),
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        scopes = self.fields["scopes"]
        assert isinstance(scopes, forms.MultipleChoiceField)
        scopes.choices = [(permission, permission) for permission in sorted(permissions_of(user))]
