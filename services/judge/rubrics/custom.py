"""The `custom` rubric: a prompt template and the JSON schema of the answer, from the flow file."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from services.judge.rubrics.base import (
    FAIRNESS_NOTE,
    INJECTION_NOTE,
    JudgmentFields,
    Rubric,
    RubricConfigError,
    RubricError,
    check_response_count,
    tagged_responses,
    transcript,
)
from services.judge.rubrics.json_schema import (
    check_keywords,
    object_fields,
    property_kind,
    schema_error,
)
from services.judge.structured import schema_text
from shared.events import CandidateResponse, ChatMessage, Rating, Record, Role

PLACEHOLDERS = ("instruction", "context", "responses")
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_template(template: str, values: dict[str, str]) -> str:
    """Substitute ``{name}`` placeholders in one pass; ``{{``/``}}`` become ``{``/``}``.

    Any other brace is left as it is, and substituted text is never scanned again, so braces
    in the record's text or in a JSON example inside the template cannot break it.
    """

    def substitute(found: re.Match[str]) -> str:
        name = found.group(1)
        if name is None:
            return found.group(0)[0]
        return values.get(name, found.group(0))

    return _TEMPLATE_TOKEN.sub(substitute, template)


def _check_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise RubricConfigError("rubric 'custom': option `prompt` (a template) is required")
    used = {m.group(1) for m in _TEMPLATE_TOKEN.finditer(prompt) if m.group(1)}
    strangers = sorted(used - set(PLACEHOLDERS))
    if strangers:
        raise RubricConfigError(
            f"rubric 'custom': prompt has unknown placeholder(s) {strangers}; "
            f"known: {', '.join(PLACEHOLDERS)} (write {{{{ and }}}} for literal braces)"
        )
    if "responses" not in used:
        raise RubricConfigError("rubric 'custom': prompt must contain {responses}")
    return prompt


class CustomRubric(Rubric):
    """A rubric written in the flow file: a prompt template and the JSON schema of the answer.

    ``prompt`` is a template with ``{instruction}`` (the instruction, or the conversation as a
    transcript), ``{context}`` and ``{responses}`` (the responses, tagged
    ``<response id="A">...</response>`` in the order shown; required). ``{{`` and ``}}`` stand
    for literal braces; any other brace is kept as written.

    ``output_schema`` is a flat JSON object schema: properties of type string, integer, number,
    boolean, enum, or arrays of those, with ``required``. It must have a ``ratings`` property:
    an array of objects with a numeric score (the ``score_field`` property, ``score`` by
    default; always required) and optionally a string ``rationale`` and other scalar
    properties, one per response in the order shown; the array's length is set to the number of
    responses whatever the schema says. A top-level string ``rationale``, if any, becomes the
    judgment's rationale. Each response gets one `Rating` named ``aspect``.
    """

    name = "custom"

    def __init__(
        self,
        prompt: str | None = None,
        output_schema: dict[str, Any] | None = None,
        score_field: str | None = None,
        aspect: str = "custom",
    ) -> None:
        self.prompt = _check_prompt(prompt)
        if not isinstance(output_schema, dict):
            raise RubricConfigError(
                "rubric 'custom': option `output_schema` (an object) is required"
            )
        if not isinstance(aspect, str) or not aspect.strip():
            raise RubricConfigError("rubric 'custom': aspect must be a non-empty string")
        self.output_schema = output_schema
        self.score_field = score_field or "score"
        self.aspect = aspect.strip()
        self._top_fields, self._top_names, self._item_model = self._parse_schema(output_schema)
        self._models: dict[int, type[BaseModel]] = {}

    def _parse_schema(
        self, schema: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str], type[BaseModel]]:
        if schema.get("type") != "object":
            raise schema_error("", "the top level must be {type: object, properties: ...}")
        properties = schema.get("properties")
        ratings = properties.get("ratings") if isinstance(properties, dict) else None
        if not isinstance(ratings, dict):
            raise schema_error(
                ".properties", "needs a `ratings` array (one object with a score per response)"
            )
        if ratings.get("type") != "array" or not isinstance(ratings.get("items"), dict):
            raise schema_error(".properties.ratings", "must be an array of objects")
        check_keywords(ratings, "array", ".properties.ratings")
        items = ratings["items"]
        if items.get("type") != "object":
            raise schema_error(".properties.ratings.items", "must be an object")
        item_properties = items.get("properties")
        score_prop = (
            item_properties.get(self.score_field) if isinstance(item_properties, dict) else None
        )
        if not isinstance(score_prop, dict) or score_prop.get("type") not in ("integer", "number"):
            raise schema_error(
                f".properties.ratings.items.properties.{self.score_field}",
                "is needed, of type integer or number",
            )
        rationale_prop = (
            item_properties.get("rationale") if isinstance(item_properties, dict) else None
        )
        if rationale_prop is not None and property_kind(rationale_prop, "") != "string":
            raise schema_error(".properties.ratings.items.properties.rationale", "must be a string")
        # The score is never optional: a missing score is a failed judgment, not an invented one.
        item_fields, _ = object_fields(
            items,
            ".properties.ratings.items",
            always_required=frozenset({self.score_field}),
        )
        item_model = create_model(
            "CustomRating", __config__=ConfigDict(extra="forbid"), **item_fields
        )
        top_fields, top_names = object_fields(schema, "", skip=frozenset({"ratings"}))
        if "rationale" in top_names and schema["properties"]["rationale"].get("type") != "string":
            raise schema_error(".properties.rationale", "must be a string")
        return top_fields, top_names, item_model

    def output_model(self, n_responses: int) -> type[BaseModel]:
        check_response_count(self.name, n_responses)
        if n_responses not in self._models:
            ratings = (
                list[self._item_model],  # type: ignore[name-defined]
                Field(min_length=n_responses, max_length=n_responses),
            )
            self._models[n_responses] = create_model(
                "CustomJudgment",
                __config__=ConfigDict(extra="forbid"),
                ratings=ratings,
                **self._top_fields,
            )
        return self._models[n_responses]

    def messages(self, record: Record, shown: list[CandidateResponse]) -> list[ChatMessage]:
        schema = schema_text(self.output_model(len(shown)))
        system = (
            "You are an impartial reviewer of answers written by AI assistants. "
            f"{FAIRNESS_NOTE} {INJECTION_NOTE}\n\n"
            "Answer with a single JSON object and nothing else, valid against this JSON schema; "
            f"`ratings` has one entry per response, in the order shown:\n{schema}"
        )
        user = fill_template(
            self.prompt,
            {
                "instruction": transcript(record),
                "context": record.context or "",
                "responses": tagged_responses(shown),
            },
        )
        return [
            ChatMessage(role=Role.system, content=system),
            ChatMessage(role=Role.user, content=user),
        ]

    def to_judgment_fields(self, output: BaseModel, n: int) -> JudgmentFields:
        data = output.model_dump(by_alias=True)
        items = data["ratings"]
        if len(items) != n:
            raise RubricError(f"judge rated {len(items)} responses, expected {n}")
        ratings = [
            [
                Rating(
                    aspect=self.aspect,
                    score=float(item[self.score_field]),
                    rationale=item.get("rationale") or "",
                )
            ]
            for item in items
        ]
        rationale = data.get("rationale")
        return {
            "ratings": ratings,
            "preferred": None,
            "tie": False,
            "rationale": rationale if isinstance(rationale, str) else "",
        }
