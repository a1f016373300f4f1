"""The custom rubric's JSON-schema → pydantic compiler, for flat object schemas.

Supported: objects whose properties are strings, integers, numbers, booleans, enums, or arrays
of those, with ``required`` and ``additionalProperties: false``, and the usual constraints
(``minLength``, ``maximum``, ``minItems``...). Anything else is refused with the path of the
offending keyword, as a `RubricConfigError` naming ``output_schema``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from services.judge.rubrics.base import RubricConfigError, literal_of

_PRIMITIVE_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
}
_COMMON_KEYWORDS = frozenset({"type", "description", "title"})
_KEYWORDS: dict[str, frozenset[str]] = {
    "string": _COMMON_KEYWORDS | {"minLength", "maxLength", "pattern"},
    "integer": _COMMON_KEYWORDS | {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "number": _COMMON_KEYWORDS | {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "boolean": _COMMON_KEYWORDS,
    "enum": frozenset({"enum", "type", "description", "title"}),
    "array": _COMMON_KEYWORDS | {"items", "minItems", "maxItems"},
    "object": _COMMON_KEYWORDS | {"properties", "required", "additionalProperties"},
}
_CONSTRAINTS = {
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
    "minimum": "ge",
    "maximum": "le",
    "exclusiveMinimum": "gt",
    "exclusiveMaximum": "lt",
    "minItems": "min_length",
    "maxItems": "max_length",
}


def schema_error(path: str, problem: str) -> RubricConfigError:
    """The error for `problem` at `path` inside the custom rubric's ``output_schema``."""
    return RubricConfigError(f"rubric 'custom': output_schema{path}: {problem}")


def property_kind(prop: Any, path: str) -> str:
    """The kind of a property schema: a JSON type name, or "enum"."""
    if not isinstance(prop, dict):
        raise schema_error(path, "must be a JSON schema object")
    if "enum" in prop:
        return "enum"
    kind = prop.get("type")
    if not isinstance(kind, str) or kind not in _KEYWORDS:
        supported = "string, integer, number, boolean, enum, array"
        raise schema_error(path, f"type {kind!r} is not supported (supported: {supported})")
    return kind


def check_keywords(prop: dict[str, Any], kind: str, path: str) -> None:
    """Refuse keywords the compiler does not understand for a `kind`."""
    extra = sorted(set(prop) - _KEYWORDS[kind])
    if extra:
        raise schema_error(path, f"unsupported keyword(s) {extra} for a {kind}")


def _constraints(prop: dict[str, Any], path: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for keyword, argument in _CONSTRAINTS.items():
        if keyword in prop:
            value = prop[keyword]
            expected: type | tuple[type, ...] = str if keyword == "pattern" else (int, float)
            if isinstance(value, bool) or not isinstance(value, expected):
                raise schema_error(f"{path}.{keyword}", f"invalid value {value!r}")
            found[argument] = value
    if "description" in prop:
        found["description"] = str(prop["description"])
    return found


def _scalar_type(prop: dict[str, Any], kind: str, path: str) -> Any:
    if kind == "enum":
        values = prop["enum"]
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str | int | float | bool) for v in values)
        ):
            raise schema_error(f"{path}.enum", "must be a non-empty list of scalar values")
        return literal_of(values)
    return _PRIMITIVE_TYPES[kind]


def _property_field(prop: Any, path: str) -> tuple[Any, dict[str, Any]]:
    """The annotation and Field arguments of a flat property: scalar, enum or array of scalars."""
    kind = property_kind(prop, path)
    if kind == "object":
        raise schema_error(path, "nested objects are not supported")
    check_keywords(prop, kind, path)
    if kind == "array":
        items = prop.get("items")
        item_kind = property_kind(items, f"{path}.items")
        if item_kind in ("array", "object"):
            raise schema_error(f"{path}.items", f"arrays of {item_kind}s are not supported")
        check_keywords(items, item_kind, f"{path}.items")
        item_type = _scalar_type(items, item_kind, f"{path}.items")
        item_constraints = _constraints(items, f"{path}.items")
        item_constraints.pop("description", None)
        if item_constraints:
            item_type = Annotated[item_type, Field(**item_constraints)]
        return list[item_type], _constraints(prop, path)  # type: ignore[valid-type]
    return _scalar_type(prop, kind, path), _constraints(prop, path)


def object_fields(
    schema: dict[str, Any],
    path: str,
    *,
    skip: frozenset[str] = frozenset(),
    always_required: frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], list[str]]:
    """Fields for `create_model` from a flat object schema, and the property names they hold.

    Properties in `skip` are left out; those in `always_required` are required whatever the
    schema's ``required`` says. A field's alias is its property's name.
    """
    check_keywords(schema, "object", path)
    if schema.get("additionalProperties", False) is not False:
        raise schema_error(f"{path}.additionalProperties", "only false is supported")
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise schema_error(f"{path}.properties", "must be a non-empty mapping")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise schema_error(f"{path}.required", "must be a list of property names")
    missing = sorted(set(required) - set(properties))
    if missing:
        raise schema_error(f"{path}.required", f"names undefined properties {missing}")
    fields: dict[str, Any] = {}
    names: list[str] = []
    for i, (name, prop) in enumerate(properties.items()):
        if name in skip:
            continue
        annotation, constraints = _property_field(prop, f"{path}.properties.{name}")
        if name in required or name in always_required:
            fields[f"field_{i}"] = (annotation, Field(alias=name, **constraints))
        else:
            fields[f"field_{i}"] = (annotation | None, Field(None, alias=name, **constraints))
        names.append(name)
    return fields, names
