"""Blueprint files: every problem is reported with its line, and nothing invalid gets through."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from apps.marketplace.blueprint_file import (
    BlueprintFileInvalid,
    blueprint_file_schema,
    load_blueprint_file,
)
from tests.marketplace.conftest import blueprint_data, blueprint_yaml

SHIPPED = sorted((Path(__file__).resolve().parents[2] / "blueprints").glob("*.yaml"))


def errors_of(text: str | bytes) -> list[dict]:
    with pytest.raises(BlueprintFileInvalid) as caught:
        load_blueprint_file(text)
    return caught.value.details["errors"]


def test_a_valid_file_loads_with_its_version():
    spec = load_blueprint_file(blueprint_yaml())

    assert spec.slug == "invoice-checker"
    assert (spec.semver.major, spec.semver.minor, spec.semver.patch) == (1, 0, 0)
    assert spec.version["settings_schema"]["properties"]["erp_token"]["x-secret"] is True


def test_invalid_yaml_names_the_line_and_column():
    text = "format: 1\nslug: broken\nname: [unclosed\nsummary: x\n"

    (error,) = errors_of(text)

    assert error["line"] == 4
    assert "Invalid YAML" in error["message"]


def test_unknown_keys_are_reported_at_their_own_line():
    text = blueprint_yaml().replace("icon:", "colour: blue\nicon:", 1)
    expected_line = text.splitlines().index("colour: blue") + 1

    (error,) = errors_of(text)

    assert error == {
        "line": expected_line,
        "column": 1,
        "path": "colour",
        "message": "Unknown key 'colour'.",
    }


def test_unknown_keys_inside_the_version_are_reported_too():
    data = blueprint_data()
    data["version"]["temprature"] = 0.3
    text = yaml.safe_dump(data, sort_keys=False)

    (error,) = errors_of(text)

    assert error["path"] == "version.temprature"
    assert text.splitlines()[error["line"] - 1].strip().startswith("temprature:")


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "01.0.0", "1.0.0-", "1.0.0.0", "latest"])
def test_a_bad_semantic_version_is_refused(version):
    (error,) = errors_of(blueprint_yaml(version__version=version))

    assert error["path"] == "version.version"
    assert error["line"] is not None


def test_a_number_where_a_version_string_belongs_is_refused_with_its_line():
    text = blueprint_yaml().replace("version: 1.0.0", "version: 1.0")

    (error,) = errors_of(text)

    assert error["path"] == "version.version"
    assert "not of type 'string'" in error["message"]


def test_a_settings_schema_that_is_not_a_json_schema_is_refused():
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": "zero"}}}

    errors = errors_of(blueprint_yaml(version__settings_schema=schema))

    assert [e["path"] for e in errors] == ["version.settings_schema.properties.n.minimum"]
    assert "Not a valid JSON Schema" in errors[0]["message"]


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "array"}, '"type": "object"'),
        ({"type": "object", "properties": {"x": {"type": "object"}}}, "Each setting needs a type"),
        (
            {"type": "object", "properties": {"key": {"type": "integer", "x-secret": True}}},
            "A secret setting is a string without a default",
        ),
        ({"type": "object", "properties": {}, "required": ["ghost"]}, "'ghost' is required"),
    ],
)
def test_settings_schemas_must_describe_a_form(schema, message):
    errors = errors_of(blueprint_yaml(version__settings_schema=schema))

    assert any(message in e["message"] for e in errors), errors


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": ["string", "null"]}, "Each setting needs a type"),
        ({"type": "integer", "default": "ten"}, "default must be of type integer"),
        ({"type": "string", "enum": ["a", 2]}, "enum must be of type string"),
        ({"type": "integer", "minimum": 5, "default": 1}, "The default does not satisfy"),
    ],
)
def test_a_settings_default_or_enum_of_the_wrong_type_is_refused(spec, message):
    schema = {"type": "object", "properties": {"x": spec}}

    errors = errors_of(blueprint_yaml(version__settings_schema=schema))

    assert any(message in e["message"] for e in errors), errors


def test_build_metadata_cannot_name_a_version():
    (error,) = errors_of(blueprint_yaml(version__version="1.0.0+build.5"))

    assert error["path"] == "version.version"


def test_an_oversized_description_is_refused():
    errors = errors_of(blueprint_yaml(description="x" * 20_001))

    assert errors[0]["path"] == "description"
    assert "is too long" in errors[0]["message"]


@pytest.mark.parametrize(
    "markdown",
    [
        "Hello there <script>alert('x')</script> friend",
        "Click [here](javascript:alert(1)) to win",
        "Click [here](JAVASCRIPT:alert(1)) to win",
        "Look ![x](data:text/html;base64,PHNjcmlwdD4=) here",
        "A tracking pixel ![x](https://tracker.example/p.gif)",
        "An <img src=x onerror=alert(1)> image",
    ],
)
def test_markdown_with_html_or_unsafe_links_is_refused(markdown):
    errors = errors_of(blueprint_yaml(description=markdown))

    assert errors
    assert all(e["path"] == "description" for e in errors)


def test_duplicate_keys_are_refused_rather_than_silently_overwritten():
    text = blueprint_yaml().replace("icon:", "name: Other name\nicon:", 1)

    (error,) = errors_of(text)

    assert "duplicate key 'name'" in error["message"]
    assert error["line"] is not None


def test_yaml_aliases_are_refused():
    text = blueprint_yaml() + "x: &a [1]\ny: *a\n"

    (error,) = errors_of(text)

    assert "aliases" in error["message"]


def test_a_document_that_is_not_a_mapping_is_refused():
    (error,) = errors_of("- just\n- a list\n")

    assert "mapping" in error["message"]


def test_non_utf8_and_oversized_files_are_refused():
    assert "UTF-8" in errors_of(b"\xff\xfe\x00")[0]["message"]
    assert "larger than" in errors_of(b"a: " + b"x" * 600_000)[0]["message"]


def test_a_free_blueprint_has_no_price_and_a_paid_one_needs_one():
    free_with_price = errors_of(blueprint_yaml(pricing={"model": "free", "price": "3"}))
    paid_without = errors_of(blueprint_yaml(pricing={"model": "monthly"}))
    paid_zero = errors_of(
        blueprint_yaml(pricing={"model": "monthly", "price": "0", "currency": "EUR"})
    )

    assert free_with_price[0]["path"] == "pricing.price"
    assert paid_without[0]["path"] == "pricing"
    assert paid_zero[0]["path"] == "pricing.price"


def test_the_shipped_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(blueprint_file_schema())


def test_at_least_twelve_blueprints_ship_and_every_one_is_valid():
    assert len(SHIPPED) >= 12
    slugs = set()
    for path in SHIPPED:
        spec = load_blueprint_file(path.read_bytes())
        slugs.add(spec.slug)
        settings = spec.version.get("settings_schema", {})
        assert settings.get("properties"), f"{path.name} asks for no settings"
        assert spec.version.get("knowledge"), f"{path.name} ships no knowledge"
    assert len(slugs) == len(SHIPPED)
