"""What the built-in templates share: settings and records assembled the same way.

The contract itself (`Template`, `QuestionSpec`) is `shared.templates`. Here:

* settings are built without a server (`sdk_client`), each Argilla question from its
  `QuestionSpec` (`argilla_question`), so the settings and `questions()` cannot disagree;
* every template accepts ``guidelines`` (markdown) to replace its default guidelines, which
  are package data: ``guidelines/<template name>.md``;
* every record carries the metadata ``flow``, ``source`` (``metadata.source``, default
  "app"), ``models`` (the response models), ``tags``, ``judge_margin`` (when a judgment has
  one) and, as extra metadata that is not a declared property, ``loopline_record``: the whole
  Loopline record as JSON (`shared.argilla_metadata`). Argilla shows extra metadata to owners
  and workspace admins only, not to annotators;
* suggestions carry the judge model as agent and, as score, the judge's agreement across
  repeated judgments (0..1) when the flow judged more than once, else no score. Agent names
  are reduced to the characters Argilla accepts (letters, digits, ``-_:./`` and spaces).

A value a template cannot use raises `PluginOptionsError` naming the template; unknown
options are refused by the shared checker before a template is built.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from importlib.resources import files
from typing import Any

import argilla as rg

from shared.argilla_metadata import RECORD_METADATA_KEY
from shared.events import Record
from shared.plugins import PluginOptionsError
from shared.templates import QuestionSpec, Template

DEFAULT_SOURCE = "app"

# Limits of the Argilla server (2.8) that settings must respect.
MAX_GUIDELINES_CHARS = 10_000
MAX_RANKED_RESPONSES = 50
MAX_LABEL_VALUE_CHARS = 200
MAX_LABEL_TEXT_CHARS = 500


class _Unbound:
    """Stands in for `rg.Argilla` while settings are built without a server.

    The SDK's field, question and metadata classes ask for a client on construction and fall
    back to a default one, which cannot be created without reaching the server. The settings
    a template builds are only a description: `rg.Dataset(..., settings=...)` copies them and
    binds the copies to its own client, so no request is ever made through this stand-in.
    """

    class _Api:
        fields = questions = metadata = vectors = None

    api = _Api()


_UNBOUND: Any = _Unbound()


def sdk_client() -> Any:
    """The client to build settings objects with: the default one if any, else a stand-in."""
    default = rg.Argilla._default_client
    return default if default is not None else _UNBOUND


def default_guidelines(name: str) -> str:
    """The guidelines (markdown) shipped for template `name`."""
    return (files(__package__) / "guidelines" / f"{name}.md").read_text(encoding="utf-8")


def check_guidelines(template: str, guidelines: Any) -> str:
    if not isinstance(guidelines, str) or not guidelines.strip():
        raise PluginOptionsError(f"template {template!r}: guidelines must be a non-empty string")
    if len(guidelines) > MAX_GUIDELINES_CHARS:
        raise PluginOptionsError(
            f"template {template!r}: guidelines have {len(guidelines)} characters; "
            f"Argilla accepts at most {MAX_GUIDELINES_CHARS}"
        )
    return guidelines


def prompt_markdown(record: Record) -> str:
    """The prompt as markdown: the instruction and its context, or the conversation's turns."""
    if record.messages:
        body = "\n\n".join(
            f"**{message.role.value.capitalize()}**\n\n{message.content}"
            for message in record.messages
        )
    else:
        body = record.instruction or ""
    if record.context:
        body = f"{body}\n\n---\n\n**Context**\n\n{record.context}"
    return body


def record_metadata(record: Record) -> dict[str, Any]:
    """The metadata every template gives a record, `loopline_record` included."""
    models = list(dict.fromkeys(r.model for r in record.responses))
    source = record.metadata.get("source")
    metadata: dict[str, Any] = {
        "flow": record.flow,
        "source": str(source) if source not in (None, "") else DEFAULT_SOURCE,
        "models": models,
        "tags": list(record.tags),
        RECORD_METADATA_KEY: record.model_dump_json(),
    }
    margin = next(
        (j.margin for j in record.judgments if j.status == "ok" and j.margin is not None), None
    )
    if margin is not None and math.isfinite(margin):
        metadata["judge_margin"] = float(margin)
    return metadata


def _metadata_properties() -> list[Any]:
    client = sdk_client()
    return [
        rg.TermsMetadataProperty(name="flow", title="Flow", client=client),
        rg.TermsMetadataProperty(name="source", title="Source", client=client),
        rg.TermsMetadataProperty(name="models", title="Models", client=client),
        rg.TermsMetadataProperty(name="tags", title="Tags", client=client),
        rg.FloatMetadataProperty(name="judge_margin", title="Judge margin", client=client),
    ]


def suggestion(question: str, value: Any, agent: str, score: Any = None) -> Any:
    return rg.Suggestion(question_name=question, value=value, score=score, agent=agent)


def text_field(name: str, title: str, *, required: bool = True, markdown: bool = True) -> Any:
    return rg.TextField(
        name=name, title=title, use_markdown=markdown, required=required, client=sdk_client()
    )


def argilla_question(
    spec: QuestionSpec,
    title: str,
    *,
    description: str | None = None,
    required: bool = True,
    markdown: bool = False,
    label_texts: Mapping[str, str] | None = None,
) -> Any:
    """The Argilla question `spec` declares: its kind, name and options (labels, scale).

    `label_texts` gives the text shown for a label or ranked value (default: the value).
    """
    common: dict[str, Any] = {
        "name": spec.name,
        "title": title,
        "description": description,
        "required": required,
        "client": sdk_client(),
    }
    options = {value: (label_texts or {}).get(value, value) for value in spec.labels}
    if spec.kind == "rating":
        return rg.RatingQuestion(values=list(spec.scale), **common)
    if spec.kind == "label":
        return rg.LabelQuestion(labels=options, **common)
    if spec.kind == "multi_label":
        return rg.MultiLabelQuestion(labels=options, **common)
    if spec.kind == "ranking":
        return rg.RankingQuestion(values=options, **common)
    return rg.TextQuestion(use_markdown=markdown, **common)


class BuiltinTemplate(Template):
    """The built-ins' common ground: the guidelines option, settings and record assembly."""

    def __init__(self, guidelines: str | None = None) -> None:
        self.guidelines = check_guidelines(
            self.name, self._default_guidelines() if guidelines is None else guidelines
        )

    def _default_guidelines(self) -> str:
        return default_guidelines(self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @abstractmethod
    def _fields(self) -> list[Any]:
        """The Argilla fields of the dataset."""

    @abstractmethod
    def _questions(self) -> list[Any]:
        """The Argilla questions, one per `questions()` spec (see `argilla_question`)."""

    @abstractmethod
    def _record_fields(self, record: Record) -> dict[str, str]:
        """The field values of `record` (raises `TemplateRecordError` when it cannot)."""

    @abstractmethod
    def _suggestions(self, record: Record) -> list[Any]:
        """The judge's verdicts on `record` as suggestions, where a question matches."""

    def settings(self, min_submitted: int) -> rg.Settings:
        if isinstance(min_submitted, bool) or not isinstance(min_submitted, int):
            raise TypeError("min_submitted must be an integer")
        if min_submitted < 1:
            raise ValueError(f"min_submitted must be at least 1, got {min_submitted}")
        return rg.Settings(
            fields=self._fields(),
            questions=self._questions(),
            metadata=_metadata_properties(),
            guidelines=self.guidelines,
            allow_extra_metadata=True,
            distribution=rg.TaskDistribution(min_submitted=min_submitted),
        )

    def to_record(self, record: Record) -> rg.Record:
        return rg.Record(
            id=record.record_id,
            fields=self._record_fields(record),
            metadata=record_metadata(record),
            suggestions=self._suggestions(record),
        )
