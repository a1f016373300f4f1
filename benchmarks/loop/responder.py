"""Instant scripted answers for the loop benchmark's LLM endpoint (`devstack.scripted_llm`).

A generation request gets a short text naming the model asked for and the prompt. A judge
request (it carries `response_format` with a JSON schema, as `services/judge/structured.py`
builds it) gets an object valid for that schema, made from the schema itself: the k-th item
of an array takes the k-th value of an enum (the response labels A, B, ... in order) and
integer scores that fall with k (A: 4, B: 2 on a 1-5 scale), so every record has a clear
winner and a margin of 2.
"""

from __future__ import annotations

import json
from typing import Any

RATIONALE = "Correct and clear; the other answer is thinner."


def last_user_message(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def respond(body: dict[str, Any]) -> str:
    """The reply's text for one chat request."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = response_format["json_schema"]["schema"]
        return json.dumps(instance(schema, schema))
    model = body.get("model", "model")
    return f"[{model}] Use a loop over the input; {last_user_message(body)[:60]}"


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    if not ref.startswith("#/$defs/"):
        raise ValueError(f"unsupported $ref {ref!r}")
    found: dict[str, Any] = root["$defs"][ref.removeprefix("#/$defs/")]
    return _resolve(found, root)


def instance(schema: dict[str, Any], root: dict[str, Any], index: int = 0) -> Any:
    """A value valid for `schema` (pydantic's JSON schemas: objects, arrays, enums, numbers,
    strings); `index` is the value's position in the array holding it."""
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        values = schema["enum"]
        return values[index % len(values)]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if _resolve(o, root).get("type") != "null"]
            return instance(options[0], root, index)
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: instance(sub, root, index) for name, sub in properties.items()}
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 1)
        return [instance(schema.get("items", {}), root, k) for k in range(count)]
    if kind in ("integer", "number"):
        low = int(schema.get("minimum", 1))
        high = int(schema.get("maximum", low + 4))
        return max(low, min(high, high - 1 - 2 * index))
    if kind == "string":
        return RATIONALE[: int(schema.get("maxLength", len(RATIONALE)))]
    if kind == "boolean":
        return index == 0
    if kind == "null":
        return None
    raise ValueError(f"unsupported schema {schema!r}")
