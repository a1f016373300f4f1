"""Message content of an LLM call, read from wherever the instrumentation put it.

The same reading serves spans and log records: `input_messages` and `output` take the call's
attributes (a span's, merged with those of a `gen_ai.client.inference.operation.details` log
event) and its content events (span events, or log-record events joined to the span), each a
`ContentEvent` of a name and plain attributes (a log record's body under `body`).

Prompt shapes, tried in order:

1. `gen_ai.input.messages` (current semconv: a JSON string on spans, a structured value on
   events) plus optional `gen_ai.system_instructions`;
2. events `gen_ai.{system,user,assistant,tool}.message` (older semconv);
3. `gen_ai.prompt.{i}.role` / `gen_ai.prompt.{i}.content` (OpenLLMetry legacy attributes).

The response comes from `gen_ai.output.messages`, a `gen_ai.choice` event or
`gen_ai.completion.0.content`, in that order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.ingester.otlp.wire import as_dicts
from shared.chat import normalise_role

__all__ = [
    "CHOICE_EVENT",
    "MESSAGE_EVENTS",
    "ContentEvent",
    "finish_reasons",
    "input_messages",
    "iso",
    "output",
    "params",
    "text_value",
    "usage",
]

MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
CHOICE_EVENT = "gen_ai.choice"
_REQUEST_PARAMS = ("temperature", "top_p", "max_tokens")
_LEGACY_PROMPT = re.compile(r"^gen_ai\.prompt\.(\d+)\.(role|content)$")


@dataclass(frozen=True)
class ContentEvent:
    """A span event or a log-record event: its name and its attributes as plain values."""

    name: str
    attrs: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Attribute values


def text_value(value: Any) -> str | None:
    """A non-empty string attribute, else None."""
    if isinstance(value, str) and value.strip():
        return value
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _json_value(value: Any) -> Any:
    """Attribute values that hold JSON arrive as strings; structured values pass through."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


def iso(unix_nano: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=unix_nano // 1000)
    return moment.isoformat()


# --------------------------------------------------------------------------------------------
# Message text


def _role(value: Any, default: str = "user") -> str:
    if not isinstance(value, str) or not value.strip():
        return default
    return normalise_role(value) or "user"


def _text(content: Any) -> str:
    """The text of message content: a string, a list of parts, or a single part."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [_part_text(part) for part in content]
        return "\n".join(text for text in texts if text)
    if isinstance(content, dict):
        return _part_text(content)
    return ""


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return ""
    kind = part.get("type")
    if kind is not None and kind != "text":
        return ""  # images, tool calls, tool results, reasoning...
    for key in ("content", "text"):
        if isinstance(part.get(key), str):
            return str(part[key])
    return ""


def _message_text(message: Mapping[str, Any]) -> str:
    """Text of a message object: semconv `parts`, else an OpenAI-style `content`."""
    if isinstance(message.get("parts"), list):
        return _text(message["parts"])
    return _text(message.get("content"))


def _message(role: str, text: str) -> dict[str, str] | None:
    return {"role": role, "content": text} if text.strip() else None


def _looks_like_parts(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and "type" in item for item in value)
    )


# --------------------------------------------------------------------------------------------
# Prompt shapes


def _system_instructions(attrs: Mapping[str, Any]) -> dict[str, str] | None:
    raw = attrs.get("gen_ai.system_instructions")
    if raw is None:
        return None
    parsed = _json_value(raw)
    if parsed is None and isinstance(raw, str):
        parsed = raw  # a plain string, not JSON
    return _message("system", _text(parsed))


def _messages_from_input_attribute(attrs: Mapping[str, Any]) -> list[dict[str, str]]:
    parsed = _json_value(attrs.get("gen_ai.input.messages"))
    if isinstance(parsed, dict):
        parsed = [parsed]
    messages = []
    for item in as_dicts(parsed):
        message = _message(_role(item.get("role")), _message_text(item))
        if message:
            messages.append(message)
    return messages


def _event_content(attrs: Mapping[str, Any]) -> tuple[str, str | None]:
    """(text, role given inside the event or None) of a message or choice event."""
    if "content" in attrs:
        return _text(attrs["content"]), None
    for key in ("gen_ai.event.content", "body"):
        if key not in attrs:
            continue
        raw = attrs[key]
        parsed = _json_value(raw)
        if isinstance(parsed, dict):
            role = parsed.get("role")
            inner = parsed.get("message")
            body = inner if isinstance(inner, dict) else parsed
            if isinstance(body, dict) and isinstance(body.get("role"), str):
                role = body["role"]
            return _message_text(body), role if isinstance(role, str) else None
        if parsed is None and isinstance(raw, str):
            return raw, None  # plain text that is not JSON
        return _text(parsed), None
    return "", None


def _messages_from_events(events: Iterable[ContentEvent]) -> list[dict[str, str]]:
    messages = []
    for event in events:
        default_role = MESSAGE_EVENTS.get(event.name)
        if default_role is None:
            continue
        attrs = event.attrs
        text, role = _event_content(attrs)
        message = _message(_role(role or attrs.get("role"), default_role), text)
        if message:
            messages.append(message)
    return messages


def _messages_from_legacy_attributes(attrs: Mapping[str, Any]) -> list[dict[str, str]]:
    indexed: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        match = _LEGACY_PROMPT.match(key)
        if match:
            indexed.setdefault(int(match.group(1)), {})[match.group(2)] = value
    messages = []
    for index in sorted(indexed):
        fields = indexed[index]
        message = _message(_role(fields.get("role")), _legacy_content(fields.get("content")))
        if message:
            messages.append(message)
    return messages


def _legacy_content(value: Any) -> str:
    # OpenLLMetry stores multi-part content as a JSON array of typed parts.
    if isinstance(value, str) and value.lstrip().startswith("["):
        parsed = _json_value(value)
        if _looks_like_parts(parsed):
            return _text(parsed)
    return _text(value)


def input_messages(
    attrs: Mapping[str, Any], events: Sequence[ContentEvent]
) -> list[dict[str, str]]:
    messages = (
        _messages_from_input_attribute(attrs)
        or _messages_from_events(events)
        or _messages_from_legacy_attributes(attrs)
    )
    system = _system_instructions(attrs)
    if system and not (messages and messages[0]["role"] == "system"):
        messages.insert(0, system)
    return messages


# --------------------------------------------------------------------------------------------
# Response


def output(attrs: Mapping[str, Any], events: Sequence[ContentEvent]) -> tuple[str, str | None]:
    """(response text, finish reason) from whichever output shape the span carries."""
    parsed = _json_value(attrs.get("gen_ai.output.messages"))
    if isinstance(parsed, dict):
        parsed = [parsed]
    outputs = as_dicts(parsed)
    if outputs:
        first = outputs[0]
        text = _message_text(first)
        if text.strip():
            return text, text_value(first.get("finish_reason"))

    choices = [event for event in events if event.name == CHOICE_EVENT]
    for event in sorted(choices, key=_choice_index):
        text, reason = _choice_event(event.attrs)
        if text.strip():
            return text, reason

    text = _legacy_content(attrs.get("gen_ai.completion.0.content"))
    if text.strip():
        return text, text_value(attrs.get("gen_ai.completion.0.finish_reason"))
    return "", None


def _choice_index(event: ContentEvent) -> int:
    attrs = event.attrs
    index = _int(attrs.get("index"))
    if index is None:
        body = _json_value(attrs.get("body"))
        index = _int(body.get("index")) if isinstance(body, dict) else None
    return index if index is not None else 0


def _choice_event(attrs: Mapping[str, Any]) -> tuple[str, str | None]:
    reason = text_value(attrs.get("finish_reason"))
    body = _json_value(attrs.get("body"))
    if reason is None and isinstance(body, dict):
        reason = text_value(body.get("finish_reason"))
    if "message" in attrs:
        message = _json_value(attrs["message"])
        if isinstance(message, dict):
            return _message_text(message), reason
        if message is None and isinstance(attrs["message"], str):
            return attrs["message"], reason
        return _text(message), reason
    text, _ = _event_content(attrs)
    return text, reason


def finish_reasons(attrs: Mapping[str, Any]) -> str | None:
    value = attrs.get("gen_ai.response.finish_reasons")
    if isinstance(value, list):
        return next((item for item in value if text_value(item)), None)
    return text_value(value)


def usage(attrs: Mapping[str, Any]) -> dict[str, int] | None:
    def first(*keys: str) -> int | None:
        for key in keys:
            value = _int(attrs.get(key))
            if value is not None and value >= 0:
                return value
        return None

    prompt = first("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
    completion = first("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
    if prompt is None or completion is None:
        return None
    return {"prompt_tokens": prompt, "completion_tokens": completion}


def params(attrs: Mapping[str, Any]) -> dict[str, Any]:
    params = {}
    for name in _REQUEST_PARAMS:
        value = attrs.get(f"gen_ai.request.{name}")
        if value is not None:
            params[name] = value
    return params
