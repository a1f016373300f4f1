"""Structured output from a judge model: a JSON answer validated against a pydantic model.

The endpoint is asked to constrain its output to the model's JSON schema. An endpoint that
rejects that request is asked again without it (the schema then goes into the prompt). Text
that does not validate gets ONE repair round trip; if that fails too, the result has no value,
the error and the raw text: nothing is ever filled in or guessed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.events import ChatMessage, Role
from shared.llm.base import LLM, LLMError

REPAIR_SEPARATOR = "\n\n--- repair attempt ---\n\n"
_MAX_ERROR_CHARS = 1200
_FORMAT_REJECTED = re.compile(r"response.?format|json.?schema|grammar", re.IGNORECASE)
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class StructuredResult:
    """A validated answer (`value`), or None with `error`; `raw` is always the model's text.

    `raw` is the text the value was read from; when every attempt failed it is all attempts,
    joined by `REPAIR_SEPARATOR`.
    """

    value: BaseModel | None
    raw: str
    error: str | None
    repaired: bool = False
    attempts: tuple[str, ...] = field(default_factory=tuple)
    used_response_format: bool = True
    model: str | None = None  # the model the endpoint reports having served the last attempt


def rejects_response_format(error: LLMError) -> bool:
    """Whether the endpoint refused the constrained-output request itself."""
    return error.status_code in (400, 422) and bool(_FORMAT_REJECTED.search(str(error)))


def schema_name(output_model: type[BaseModel]) -> str:
    """A response_format name from the model's name (OpenAI allows [A-Za-z0-9_-]{1,64})."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", output_model.__name__)[:64] or "output"


@lru_cache(maxsize=256)  # bounded: a plugin rubric may make a new model for every call
def json_schema(output_model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema, built once per model (the rubrics keep theirs): read only."""
    return output_model.model_json_schema()


def response_format_for(output_model: type[BaseModel]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {
            "name": schema_name(output_model),
            "schema": json_schema(output_model),
            "strict": True,
        },
    }


def extract_json_object(text: str) -> str | None:
    """The first JSON object in `text`: inside code fences if there are any, else anywhere."""
    decoder = json.JSONDecoder()
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        start = candidate.find("{")
        while start != -1:
            try:
                value, end = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                pass
            else:
                if isinstance(value, dict):
                    return candidate[start:end]
            start = candidate.find("{", start + 1)
    return None


def _describe(error: ValidationError) -> str:
    problems = []
    for e in error.errors(include_url=False):
        location = ".".join(str(part) for part in e["loc"]) or "(top level)"
        problems.append(f"{location}: {e['msg']}")
    text = "; ".join(problems)
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def parse_output(
    text: str, output_model: type[BaseModel], finish_reason: str | None = None
) -> tuple[BaseModel | None, str | None]:
    """(value, None) when `text` holds a valid answer, else (None, why not)."""
    cut = " (the output was cut off at max_tokens)" if finish_reason == "length" else ""
    found = extract_json_object(text)
    if found is None:
        return None, f"no JSON object in the output{cut}"
    try:
        return output_model.model_validate_json(found), None
    except ValidationError as exc:
        return None, f"the JSON does not match the schema{cut}: {_describe(exc)}"


def schema_text(output_model: type[BaseModel]) -> str:
    return json.dumps(json_schema(output_model), separators=(",", ":"))


def with_schema_in_prompt(
    messages: list[ChatMessage], output_model: type[BaseModel]
) -> list[ChatMessage]:
    """The conversation with the schema spelled out, for endpoints that cannot enforce it."""
    hint = (
        "Reply with only a JSON object (no prose, no code fences) that is valid against this "
        f"JSON schema:\n{schema_text(output_model)}"
    )
    if messages and messages[-1].role == Role.user:
        last = messages[-1]
        return [*messages[:-1], ChatMessage(role=Role.user, content=f"{last.content}\n\n{hint}")]
    return [*messages, ChatMessage(role=Role.user, content=hint)]


def repair_messages(
    messages: list[ChatMessage], bad_text: str, error: str, output_model: type[BaseModel]
) -> list[ChatMessage]:
    """The conversation, the unusable answer, and a request to resend it as valid JSON."""
    request = (
        f"That reply cannot be used: {error}.\n\n"
        "Send your evaluation again as a single JSON object, valid against the JSON schema "
        "below, with nothing before or after it and no code fences. Keep your judgement; fix "
        "only the format, and keep free-text fields short so the object is complete.\n\n"
        f"{schema_text(output_model)}"
    )
    return [
        *messages,
        ChatMessage(role=Role.assistant, content=bad_text),
        ChatMessage(role=Role.user, content=request),
    ]


async def structured_call(
    llm: LLM,
    messages: list[ChatMessage],
    output_model: type[BaseModel],
    max_tokens: int = 700,
    **params: Any,
) -> StructuredResult:
    """Ask `llm` for an answer valid against `output_model`; see the module's docstring.

    `LLMError`s other than a rejected response_format propagate to the caller.
    """
    response_format: dict[str, Any] | None = response_format_for(output_model)
    try:
        completion = await llm.chat(
            messages, response_format=response_format, max_tokens=max_tokens, **params
        )
    except LLMError as exc:
        if not rejects_response_format(exc):
            raise
        response_format = None
        messages = with_schema_in_prompt(messages, output_model)
        completion = await llm.chat(messages, max_tokens=max_tokens, **params)
    used_format = response_format is not None

    value, error = parse_output(completion.text, output_model, completion.finish_reason)
    if value is not None:
        return StructuredResult(
            value, completion.text, None, False, (completion.text,), used_format, completion.model
        )

    first_text, first_error = completion.text, error or "invalid output"
    retry = repair_messages(messages, first_text, first_error, output_model)
    if response_format is None:
        completion = await llm.chat(retry, max_tokens=max_tokens, **params)
    else:
        completion = await llm.chat(
            retry, response_format=response_format, max_tokens=max_tokens, **params
        )
    attempts = (first_text, completion.text)
    value, error = parse_output(completion.text, output_model, completion.finish_reason)
    if value is not None:
        return StructuredResult(
            value, completion.text, None, True, attempts, used_format, completion.model
        )
    return StructuredResult(
        None,
        REPAIR_SEPARATOR.join(attempts),
        f"invalid output after one repair: {error} (first attempt: {first_error})",
        False,
        attempts,
        used_format,
        completion.model,
    )
