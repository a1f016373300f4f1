"""Mapping a source row's columns to the fields of a record: presets, `Mapping`, converters.

The batch importer turns each row that `services.ingester.sources.readers` read into the raw
input of a `Record` with `Mapping.to_record_input`, and validates it: a row without a usable
prompt fails validation, so the importer can report it by row number and go on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.chat import normalise_role

METADATA_PREFIX = "metadata."
FIELDS: tuple[str, ...] = (
    "record_id",
    "instruction",
    "context",
    "system",
    "messages",
    "response",
    "chosen",
    "rejected",
    "tags",
    "category",
)
_FIELDS_HELP = ", ".join((*FIELDS, f"{METADATA_PREFIX}<name>"))

# column -> field. Auto-detection takes the preset with the most columns all present.
PRESETS: dict[str, dict[str, str]] = {
    # databricks/databricks-dolly-15k
    "dolly": {
        "instruction": "instruction",
        "context": "context",
        "response": "response",
        "category": "category",
    },
    # Intel/orca_dpo_pairs
    "orca_dpo": {
        "system": "system",
        "question": "instruction",
        "chosen": "chosen",
        "rejected": "rejected",
    },
    # tatsu-lab/alpaca and its many copies
    "alpaca": {"instruction": "instruction", "input": "context", "output": "response"},
    # TRL's preference format (chosen/rejected as text or as chats), e.g. ultrafeedback_binarized
    "dpo": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"},
    "prompt_completion": {"prompt": "instruction", "completion": "response"},
    # chat format: a list of {role, content}
    "messages": {"messages": "messages"},
    # ShareGPT: a list of {from: human|gpt|system, value}
    "sharegpt": {"conversations": "messages"},
}


def _check_field(name: str, spec: str) -> str:
    if name in FIELDS:
        return name
    if name.startswith(METADATA_PREFIX) and name[len(METADATA_PREFIX) :].strip():
        return METADATA_PREFIX + name[len(METADATA_PREFIX) :].strip()
    raise ValueError(f"unknown field {name!r} in --map {spec!r}; valid fields: {_FIELDS_HELP}")


def _preset_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return key


def detect_preset(columns: Sequence[str]) -> str | None:
    """The preset whose columns are all in `columns`, the one matching the most of them."""
    present = set(columns)
    best: str | None = None
    for name, preset in PRESETS.items():
        if set(preset) <= present and (best is None or len(preset) > len(PRESETS[best])):
            best = name
    return best


@dataclass(frozen=True)
class Mapping:
    """Which source column fills which record field (`fields`: field -> column)."""

    fields: dict[str, str] = field(default_factory=dict)
    preset: str | None = None

    @classmethod
    def from_options(
        cls,
        preset: str | None = None,
        maps: Sequence[str] = (),
        columns: Sequence[str] | None = None,
    ) -> Mapping:
        """A mapping from a preset and `--map column=field` options that override or extend it.

        With neither, the preset is detected from the source's `columns`.
        """
        user: dict[str, str] = {}
        for spec in maps:
            column, sep, name = spec.rpartition("=")
            column = column.strip()
            if not sep or not column:
                raise ValueError(
                    f"--map {spec!r} is not `column=field`; valid fields: {_FIELDS_HELP}"
                )
            target = _check_field(name.strip(), spec)
            if target in user and user[target] != column:
                raise ValueError(
                    f"field {target!r} is mapped from two columns: {user[target]!r} and {column!r}"
                )
            user[target] = column

        if preset is not None:
            preset = _preset_name(preset)
        elif not user:
            if columns is None:
                raise ValueError(
                    "cannot detect a preset without the source's columns; "
                    f"choose a preset ({', '.join(PRESETS)}) or map columns with --map"
                )
            preset = detect_preset(columns)
            if preset is None:
                raise ValueError(
                    f"no preset fits the columns {', '.join(columns) or '(none)'}; choose a "
                    f"preset ({', '.join(PRESETS)}) or map columns with --map column=field "
                    f"(fields: {_FIELDS_HELP})"
                )

        fields: dict[str, str] = {}
        if preset is not None:
            user_columns = set(user.values())
            for column, target in PRESETS[preset].items():
                # A --map of the same column or to the same field replaces the preset's entry.
                if column not in user_columns and target not in user:
                    fields[target] = column
        fields.update(user)
        return cls(fields=fields, preset=preset)

    @property
    def columns(self) -> list[str]:
        """The source columns this mapping reads."""
        return list(dict.fromkeys(self.fields.values()))

    def to_record_input(self, data: dict[str, Any], flow: str, source_name: str) -> dict[str, Any]:
        """The raw input of `Record.model_validate` for one row. Never raises on missing
        values: validating the result reports a row without a prompt."""
        values = {f: data[c] for f, c in self.fields.items() if data.get(c) is not None}

        record_id = _text(values.get("record_id"))
        instruction = _text(values.get("instruction"))
        context = _text(values.get("context"))
        system = _text(values.get("system"))
        messages = _chat(values.get("messages"))

        chosen = _response_text(values.get("chosen"))
        rejected = _response_text(values.get("rejected"))
        response = _response_text(values.get("response"))

        if isinstance(messages, list):
            if system is not None and not (messages and _role(messages[0]) == "system"):
                messages = [{"role": "system", "content": system}, *messages]
            if (
                response is None
                and chosen is None
                and rejected is None
                and messages
                and _role(messages[-1]) == "assistant"
                and isinstance(messages[-1].get("content"), str)
            ):
                response = _text(messages[-1]["content"])
                messages = messages[:-1]
        elif messages is None and system is not None and instruction is not None:
            # The same user turn Record.prompt_messages builds from instruction and context.
            user_text = instruction if context is None else f"{instruction}\n\n{context}"
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": user_text},
            ]
            instruction = None

        responses: list[dict[str, Any]] = []
        preference: dict[str, int] = {}
        for kind, text in (("chosen", chosen), ("rejected", rejected), ("response", response)):
            if text is None:
                continue
            if kind != "response":
                preference[kind] = len(responses)
            responses.append({"text": text, "model": source_name, "source": "dataset"})

        metadata: dict[str, Any] = {}
        category = _text(values.get("category"))
        if category is not None:
            metadata["category"] = category
        for target, value in values.items():
            if target.startswith(METADATA_PREFIX) and not (
                isinstance(value, str) and not value.strip()
            ):
                metadata[target[len(METADATA_PREFIX) :]] = value
        metadata.setdefault("source", source_name)
        if preference:
            metadata["preference"] = preference

        record: dict[str, Any] = {"flow": flow}
        if record_id is not None:
            record["record_id"] = record_id
        if instruction is not None:
            record["instruction"] = instruction
        if messages is not None:
            record["messages"] = messages
        if context is not None:
            record["context"] = context
        if responses:
            record["responses"] = responses
        record["metadata"] = metadata
        tags = _tags(values.get("tags"))
        if tags:
            record["tags"] = tags
        return record


def _text(value: Any) -> str | None:
    """A string field's value: None for missing or blank, str() of anything else."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, dict) else None


def _chat(value: Any) -> Any:
    """A chat as a list of {role, content}, from {role, content} or ShareGPT {from, value}
    items, or a JSON string of either. What cannot be read is returned as it is, for `Record`
    validation to reject."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if not isinstance(value, list | tuple):
        return value
    messages: list[Any] = []
    for item in value:
        if not isinstance(item, dict):
            messages.append(item)
            continue
        role = item.get("role", item.get("from"))
        if isinstance(role, str):
            role = normalise_role(role) or role
        content = item.get("content", item.get("value"))
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            texts = [p.get("text") for p in content if isinstance(p, dict)]
            if all(isinstance(t, str) for t in texts):
                content = "\n".join(t for t in texts if t)
        messages.append({"role": role, "content": content})
    return messages


def _looks_like_chat(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(
            isinstance(m, dict)
            and ("role" in m or "from" in m)
            and ("content" in m or "value" in m)
            for m in value
        )
    )


def _response_text(value: Any) -> str | None:
    """A response's text: the value itself, or the last assistant turn of a chat."""
    if isinstance(value, str) and value.lstrip().startswith("[") and value.rstrip().endswith("]"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if _looks_like_chat(parsed):
            value = parsed
    if _looks_like_chat(value):
        for message in reversed(_chat(value)):
            if message.get("role") == "assistant":
                return _text(message.get("content"))
        return None
    return _text(value)


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                parsed = json.loads(stripped)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                return _tags(parsed)
        items: Sequence[Any] = stripped.split(",")
    elif isinstance(value, list | tuple | set):
        items = list(value)
    else:
        items = [value]
    tags = (str(t).strip() for t in items if t is not None)
    return list(dict.fromkeys(t for t in tags if t))
