"""Blueprint files: YAML validated by the JSON Schema that ships in ``schema/``, with every problem
reported at its line and column (docs/blueprints.md documents the format)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from django.utils.translation import gettext as _

from apps.core.exceptions import InvalidInput
from apps.marketplace.markdown import markdown_problems
from apps.marketplace.semver import SemVer, parse_semver

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "blueprint.schema.json"
MAX_FILE_BYTES = 512 * 1024
SETTINGS_TYPES = frozenset({"string", "integer", "number", "boolean"})
SETTINGS_KEYWORDS = frozenset(
    {
        "type", "title", "description", "default", "enum", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "format",
        "x-secret", "examples",
    }
)  # fmt: skip
MAX_SETTINGS = 40

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class FileError:
    line: int | None
    column: int | None
    path: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
        }

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.column}" if self.line else "file"
        return f"{where}: {self.path + ': ' if self.path else ''}{self.message}"


class BlueprintFileInvalid(InvalidInput):
    code = "invalid_blueprint_file"

    def __init__(self, errors: list[FileError]):
        self.errors = errors
        super().__init__(
            _("The blueprint file is not valid: %(count)d problem(s).") % {"count": len(errors)},
            details={"errors": [error.as_dict() for error in errors]},
        )


@dataclass(frozen=True)
class BlueprintSpec:
    """A valid blueprint file, as the publishing service takes it."""

    data: dict[str, Any]
    semver: SemVer
    source: str = field(default="", compare=False)

    @property
    def slug(self) -> str:
        return str(self.data["slug"])

    @property
    def version(self) -> dict[str, Any]:
        return dict(self.data["version"])

    @property
    def price(self) -> Decimal:
        return Decimal(str(self.data["pricing"].get("price", "0")))


@cache
def blueprint_file_schema() -> dict[str, Any]:
    return dict(json.loads(SCHEMA_PATH.read_text()))


def _dotted(path: Path_) -> str:
    return ".".join(str(part) for part in path)


class _Positions:
    """Where each value of the document starts (and each mapping key), by path."""

    def __init__(self, root: yaml.Node | None):
        self.values: dict[Path_, yaml.Mark] = {}
        self.keys: dict[Path_, yaml.Mark] = {}
        if root is not None:
            self._index(root, ())

    def _index(self, node: yaml.Node, path: Path_) -> None:
        self.values[path] = node.start_mark
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = (*path, str(key_node.value))
                self.keys[child] = key_node.start_mark
                self._index(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._index(item, (*path, index))

    def error(self, path: Path_, message: str, *, at_key: bool = False) -> FileError:
        marks = self.keys if at_key else self.values
        probe = path
        while probe not in marks and probe:
            probe = probe[:-1]  # the nearest enclosing value that exists
        mark = marks.get(probe) or self.values.get(probe)
        if mark is None:
            return FileError(None, None, _dotted(path), message)
        return FileError(mark.line + 1, mark.column + 1, _dotted(path), message)


class _StrictLoader(yaml.SafeLoader):
    """Refuses duplicate keys, which YAML would silently let the last one win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str) -> tuple[Any, _Positions]:
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) and event.start_mark is not None:
                mark = event.start_mark
                raise BlueprintFileInvalid(
                    [
                        FileError(
                            mark.line + 1,
                            mark.column + 1,
                            "",
                            _("YAML anchors and aliases are not supported; write values out."),
                        )
                    ]
                )
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        error_mark: Any = exc.problem_mark or exc.context_mark
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise BlueprintFileInvalid(
            [
                FileError(
                    error_mark.line + 1 if error_mark else None,
                    error_mark.column + 1 if error_mark else None,
                    "",
                    _("Invalid YAML: %(problem)s") % {"problem": problem or exc},
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise BlueprintFileInvalid(
            [FileError(None, None, "", _("Invalid YAML: %(problem)s") % {"problem": exc})]
        ) from None
    return data, _Positions(root)


def _schema_errors(data: Any, positions: _Positions) -> list[FileError]:
    validator = jsonschema.Draft202012Validator(blueprint_file_schema())
    errors: list[FileError] = []
    for error in validator.iter_errors(data):
        path: Path_ = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - known, key=str):
                errors.append(
                    positions.error(
                        (*path, str(key)), _("Unknown key %(key)r.") % {"key": key}, at_key=True
                    )
                )
            continue
        if error.validator == "not" and error.validator_value == {"required": ["price"]}:
            errors.append(positions.error((*path, "price"), _("A free blueprint has no price.")))
            continue
        if error.validator == "not" and error.validator_value == {"required": ["tenants"]}:
            errors.append(
                positions.error(
                    ("tenants",), _("Only a private blueprint lists organisations."), at_key=True
                )
            )
            continue
        errors.append(positions.error(path, error.message))
    return errors


def settings_schema_problems(schema: Any) -> list[tuple[Path_, str]]:
    """Why ``schema`` cannot describe a deployment's settings form; empty when it can."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [(tuple(exc.absolute_path), _("Not a valid JSON Schema: %s") % exc.message)]
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return [((), _('The settings schema must have "type": "object".'))]
    problems: list[tuple[Path_, str]] = []
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        return [(("properties",), _("Properties must be a mapping of names to schemas."))]
    if len(properties) > MAX_SETTINGS:
        problems.append(
            (("properties",), _("At most %(count)d settings.") % {"count": MAX_SETTINGS})
        )
    for name, spec in properties.items():
        where: Path_ = ("properties", name)
        kind = spec.get("type") if isinstance(spec, dict) else None
        if not isinstance(kind, str) or kind not in SETTINGS_TYPES:
            problems.append(
                (where, _("Each setting needs a type: string, integer, number or boolean."))
            )
            continue
        unknown = sorted(set(spec) - SETTINGS_KEYWORDS)
        if unknown:
            problems.append(
                (where, _("Unsupported keywords for a setting: %s.") % ", ".join(unknown))
            )
        plain = {k: v for k, v in spec.items() if k != "x-secret"}
        for keyword in ("default", "enum"):
            if keyword not in spec:
                continue
            values = [spec["default"]] if keyword == "default" else list(spec["enum"] or [])
            if not all(jsonschema.Draft202012Validator({"type": kind}).is_valid(v) for v in values):
                problems.append(
                    (
                        (*where, keyword),
                        _("%(keyword)s must be of type %(type)s.")
                        % {"keyword": keyword, "type": kind},
                    )
                )
        if "default" in spec and not jsonschema.Draft202012Validator(plain).is_valid(
            spec["default"]
        ):
            problems.append(((*where, "default"), _("The default does not satisfy the setting.")))
        secret = spec.get("x-secret", False)
        if not isinstance(secret, bool):
            problems.append(((*where, "x-secret"), _('"x-secret" must be true or false.')))
        elif secret and (spec["type"] != "string" or "default" in spec):
            problems.append(
                ((*where, "x-secret"), _("A secret setting is a string without a default."))
            )
    for required in schema.get("required", []):
        if required not in properties:
            problems.append(
                (("required",), _("%(name)r is required but not defined.") % {"name": required})
            )
    return problems


def _semantic_errors(data: dict[str, Any], positions: _Positions) -> list[FileError]:
    """What the JSON Schema cannot say. Each check runs when its input has the right shape, so
    one pass reports these together with the schema's own errors."""
    errors: list[FileError] = []
    version = data.get("version")
    version = version if isinstance(version, dict) else {}
    number = version.get("version")
    if isinstance(number, str) and parse_semver(number) is None:
        errors.append(
            positions.error(
                ("version", "version"),
                _("%(value)r is not a semantic version (like 1.2.0 or 2.0.0-rc.1).")
                % {"value": number},
            )
        )
    description = data.get("description")
    if isinstance(description, str):
        for problem in markdown_problems(description):
            errors.append(positions.error(("description",), problem))
    pricing = data.get("pricing")
    if (
        isinstance(pricing, dict)
        and pricing.get("model") in ("monthly", "per_message")
        and isinstance(pricing.get("price"), str)
        and _decimal(pricing["price"]) == 0
    ):
        errors.append(
            positions.error(("pricing", "price"), _("A paid blueprint needs a price above 0."))
        )
    if "settings_schema" in version:
        for path, message in settings_schema_problems(version["settings_schema"]):
            errors.append(positions.error(("version", "settings_schema", *path), message))
    return errors


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except ArithmeticError:
        return None


def load_blueprint_file(text: str | bytes) -> BlueprintSpec:
    """The blueprint ``text`` describes, or ``BlueprintFileInvalid`` listing every problem."""
    if isinstance(text, bytes):
        if len(text) > MAX_FILE_BYTES:
            raise BlueprintFileInvalid([FileError(None, None, "", _too_large())])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            message = _("The file is not UTF-8 text.")
            raise BlueprintFileInvalid([FileError(None, None, "", message)]) from None
    if len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise BlueprintFileInvalid([FileError(None, None, "", _too_large())])
    data, positions = _parse_yaml(text)
    if not isinstance(data, dict):
        message = _("A blueprint file is a mapping of keys to values.")
        raise BlueprintFileInvalid([FileError(1, 1, "", message)])
    errors = _schema_errors(data, positions)
    seen = {error.path for error in errors}
    errors += [e for e in _semantic_errors(data, positions) if e.path not in seen]
    if errors:
        errors.sort(key=lambda e: (e.line or 0, e.column or 0))
        raise BlueprintFileInvalid(errors)
    semver = parse_semver(data["version"]["version"])
    assert semver is not None  # checked above
    return BlueprintSpec(data=data, semver=semver, source=text)


def _too_large() -> str:
    return _("The file is larger than %(size)d KB.") % {"size": MAX_FILE_BYTES // 1024}
