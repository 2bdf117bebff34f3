"""A deployment's settings: the form a version's JSON Schema describes, and validation with
``jsonschema`` that the page, the API and upgrades share.

Secret fields (``"x-secret": true``) are split from the rest: their values go to
``DeploymentSecret`` (encrypted) and never back to a client. An empty secret input keeps the
stored value, so a secret can be left alone, or replaced without being shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jsonschema
from django import forms
from django.utils.translation import gettext as _


def secret_names(schema: dict[str, Any]) -> set[str]:
    return {
        name
        for name, spec in schema.get("properties", {}).items()
        if isinstance(spec, dict) and spec.get("x-secret") is True
    }


@dataclass
class CheckedSettings:
    values: dict[str, Any] = field(default_factory=dict)  # non-secret, defaults applied
    secrets: dict[str, str] = field(default_factory=dict)  # new secret values only
    errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _message(error: jsonschema.ValidationError) -> tuple[str, str]:
    """(field, message) for one jsonschema error, in words a person filling a form understands."""
    if error.validator == "required" and not error.path:
        missing = str(error.message).split("'")[1] if "'" in error.message else ""
        return missing or "__all__", _("This setting is required.")
    if error.validator == "additionalProperties":
        return "__all__", _("Unknown settings: %s") % error.message
    name = str(error.path[0]) if error.path else "__all__"
    if error.validator == "enum":
        return name, _("Choose one of: %s.") % ", ".join(map(str, error.validator_value))
    if error.validator == "type":
        return name, _("Expected a value of type %s.") % error.validator_value
    return name, str(error.message)


def check_settings(
    schema: dict[str, Any],
    submitted: dict[str, Any],
    *,
    stored_secrets: dict[str, str] | None = None,
) -> CheckedSettings:
    """Validate ``submitted`` against ``schema``. ``stored_secrets`` (plaintext, in memory only)
    stand in for secret fields the caller left empty."""
    stored_secrets = stored_secrets or {}
    secrets = secret_names(schema)
    properties = schema.get("properties", {})
    result = CheckedSettings()
    candidate: dict[str, Any] = {}
    for name, value in submitted.items():
        if name in secrets:
            if value not in (None, ""):
                if not isinstance(value, str):
                    result.errors.setdefault(name, []).append(_("Expected text."))
                    continue
                result.secrets[name] = value
                candidate[name] = value
        elif value not in (None, ""):  # an empty field is a missing one (required catches it)
            candidate[name] = value
    for name, value in stored_secrets.items():
        if name in secrets and name not in candidate:
            candidate[name] = value
    for name, spec in properties.items():
        if name not in candidate and isinstance(spec, dict) and "default" in spec:
            candidate[name] = spec["default"]
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(candidate), key=lambda e: list(e.path)):
        name, message = _message(error)
        result.errors.setdefault(name, []).append(message)
    result.values = {k: v for k, v in candidate.items() if k not in secrets}
    return result


def settings_form_class(
    schema: dict[str, Any], *, stored_secret_names: set[str] | None = None
) -> type[forms.Form]:
    """A Django form for ``schema``: types, enums, defaults, required fields, help texts, and
    password inputs for secrets. Its cleaned data goes through ``check_settings``."""
    stored = stored_secret_names or set()
    required = set(schema.get("required", []))
    fields: dict[str, forms.Field] = {}
    for name, spec in schema.get("properties", {}).items():
        label = spec.get("title") or name
        help_text = spec.get("description", "")
        is_required = name in required
        kind = spec.get("type")
        if spec.get("x-secret") is True:
            if name in stored:
                help_text = f"{help_text} " + _("A value is stored; leave empty to keep it.")
            fields[name] = forms.CharField(
                label=label,
                help_text=help_text.strip(),
                required=is_required and name not in stored,
                max_length=spec.get("maxLength"),
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                strip=True,
            )
            continue
        common: dict[str, Any] = {
            "label": label,
            "help_text": help_text,
            "required": is_required and kind != "boolean",
            "initial": spec.get("default"),
        }
        if "enum" in spec:
            choices = [(value, str(value)) for value in spec["enum"]]
            if not is_required:
                choices.insert(0, ("", _("(not set)")))
            coerce: Any = {"integer": int, "number": float}.get(kind, str)
            fields[name] = forms.TypedChoiceField(
                choices=choices, coerce=coerce, empty_value=None, **common
            )
        elif kind == "boolean":
            fields[name] = forms.BooleanField(**common)
        elif kind == "integer":
            fields[name] = forms.IntegerField(
                min_value=spec.get("minimum"), max_value=spec.get("maximum"), **common
            )
        elif kind == "number":
            fields[name] = forms.FloatField(
                min_value=spec.get("minimum"), max_value=spec.get("maximum"), **common
            )
        elif spec.get("format") == "email":
            fields[name] = forms.EmailField(max_length=spec.get("maxLength"), **common)
        elif spec.get("format") == "uri":
            fields[name] = forms.URLField(
                max_length=spec.get("maxLength"), assume_scheme="https", **common
            )
        else:
            widget = (
                forms.Textarea(attrs={"rows": 3}) if (spec.get("maxLength") or 0) > 200 else None
            )
            fields[name] = forms.CharField(
                max_length=spec.get("maxLength"),
                min_length=spec.get("minLength"),
                widget=widget,
                **common,
            )
    return type("DeploymentSettingsForm", (forms.Form,), fields)
