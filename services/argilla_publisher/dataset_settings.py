"""Comparing Argilla dataset settings: does an existing dataset match what a template wants?

`settings_diff` reads both settings through the SDK's serialised form and compares only what
decides whether records and answers fit the dataset:

* fields: names, types, required;
* questions: names, types, required, and the option values (labels, rating values, ranking
  values; order and display texts do not count);
* metadata properties: names and types; vectors: names and dimensions;
* the task distribution (strategy, ``min_submitted``) and whether extra metadata is allowed;
* the guidelines: changed or not (surrounding whitespace and line endings do not count).

Titles, descriptions, markdown rendering and what the server fills in by itself (ids,
timestamps, ``visible_options``, empty option descriptions...) are ignored, so settings read
back from a dataset created with ``wanted`` compare equal to ``wanted``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import argilla as rg

Shape = dict[str, Any]


def _options(settings: Mapping[str, Any]) -> list[Any] | None:
    options = settings.get("options")
    if options is None:
        return None
    values = [o.get("value") if isinstance(o, Mapping) else o for o in options]
    return sorted(values, key=lambda v: (str(type(v)), v))


def _field_shape(field: Mapping[str, Any]) -> Shape:
    settings = field.get("settings") or {}
    return {"type": settings.get("type", field.get("type")), "required": bool(field["required"])}


def _question_shape(question: Mapping[str, Any]) -> Shape:
    settings = question.get("settings") or {}
    shape: Shape = {
        "type": settings.get("type", question.get("type")),
        "required": bool(question["required"]),
        "options": _options(settings),
    }
    if settings.get("type") == "span":
        shape["field"] = settings.get("field")
    return shape


def _metadata_shape(prop: Mapping[str, Any]) -> Shape:
    settings = prop.get("settings") or {}
    return {"type": settings.get("type", prop.get("type"))}


def _vector_shape(vector: Mapping[str, Any]) -> Shape:
    return {"dimensions": vector.get("dimensions")}


def _guidelines(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    normalised = text.replace("\r\n", "\n").strip()
    return normalised or None


def settings_shape(settings: rg.Settings) -> Shape:
    """The parts of `settings` that `settings_diff` compares, normalised."""
    data = settings.serialize()
    distribution = data.get("distribution") or {}
    return {
        "fields": {f["name"]: _field_shape(f) for f in data.get("fields") or []},
        "questions": {q["name"]: _question_shape(q) for q in data.get("questions") or []},
        "metadata properties": {m["name"]: _metadata_shape(m) for m in data.get("metadata") or []},
        "vectors": {v["name"]: _vector_shape(v) for v in data.get("vectors") or []},
        "distribution": {
            "strategy": distribution.get("strategy", "overlap"),
            "min_submitted": distribution.get("min_submitted", 1),
        },
        "allow_extra_metadata": bool(data.get("allow_extra_metadata")),
        "guidelines": _guidelines(data.get("guidelines")),
    }


_SINGULAR = {
    "fields": "field",
    "questions": "question",
    "metadata properties": "metadata property",
    "vectors": "vector",
}


def _diff_named(kind: str, existing: dict[str, Shape], wanted: dict[str, Shape]) -> list[str]:
    what = _SINGULAR[kind]
    differences: list[str] = []
    for name, shape in wanted.items():
        if name not in existing:
            differences.append(
                f"{what} {name!r} ({shape.get('type', 'vector')}) is missing from the dataset"
            )
            continue
        for attribute, value in shape.items():
            old = existing[name].get(attribute)
            if old != value:
                label = "labels/values" if attribute == "options" else attribute
                differences.append(
                    f"{what} {name!r}: {label} is {old!r} in the dataset, {value!r} in the template"
                )
    differences.extend(
        f"{what} {name!r} is in the dataset but not in the template"
        for name in existing
        if name not in wanted
    )
    return differences


def settings_diff(existing: rg.Settings, wanted: rg.Settings) -> list[str]:
    """Human-readable differences between an existing dataset's settings and the wanted ones.

    Empty when they match. Each item names the field, question, metadata property, vector or
    setting and both sides, e.g. ``"question 'verdict': required is True in the dataset, False
    in the template"``; for the guidelines only whether they changed.
    """
    old, new = settings_shape(existing), settings_shape(wanted)
    differences: list[str] = []
    for kind in ("fields", "questions", "metadata properties", "vectors"):
        differences.extend(_diff_named(kind, old[kind], new[kind]))
    for attribute, value in new["distribution"].items():
        if old["distribution"][attribute] != value:
            differences.append(
                f"distribution: {attribute} is {old['distribution'][attribute]!r} in the "
                f"dataset, {value!r} in the template"
            )
    if old["allow_extra_metadata"] != new["allow_extra_metadata"]:
        differences.append(
            f"allow_extra_metadata is {old['allow_extra_metadata']} in the dataset, "
            f"{new['allow_extra_metadata']} in the template"
        )
    if old["guidelines"] != new["guidelines"]:
        if old["guidelines"] is None:
            differences.append("guidelines: the dataset has none, the template has some")
        elif new["guidelines"] is None:
            differences.append("guidelines: the dataset has some, the template has none")
        else:
            differences.append("guidelines: the dataset's differ from the template's")
    return differences
