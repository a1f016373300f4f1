"""Template plugins (`loopline.templates`): how a flow's records look in Argilla.

A template is built from the flow file as ``Template(**options)``; unknown options raise a
`TemplateConfigError` (a `ValueError`) that names them. Every template accepts ``guidelines``
(markdown) to replace its default annotation guidelines. A template gives:

* ``name``: its plugin name;
* ``settings(min_submitted)``: the Argilla dataset settings (fields, questions, metadata
  properties, guidelines, ``TaskDistribution(min_submitted)``, extra metadata allowed);
* ``to_record(record)``: the Argilla record of a Loopline `Record`: external id = the record
  id, the fields, metadata, and the judge's verdicts as suggestions wherever a question
  matches. A record the template cannot show (say, one response for a two-response
  comparison) raises `TemplateRecordError` (a `ValueError`) with the reason.

Every record carries the metadata ``flow``, ``source`` (``metadata.source``, default "app"),
``models`` (the response models), ``tags``, ``judge_margin`` (when a judgment has one) and,
as extra metadata that is not a declared property, ``loopline_record``: the whole Loopline
record as JSON, so the feedback collector can rebuild it (`record_from_metadata`). Argilla
shows extra metadata to owners and workspace admins only, not to annotators.

Suggestions carry the judge model as agent and, as score, the judge's agreement across
repeated judgments (0..1) when the flow judged more than once, else no score. Agent names are
reduced to the characters Argilla accepts (letters, digits, ``-_:./`` and spaces).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import argilla as rg

from shared.argilla_metadata import RECORD_METADATA_KEY
from shared.criteria import parse_criterion
from shared.events import Record
from shared.verdict import agent_name, first_group, is_checklist, judge_verdict, to_five_point

DEFAULT_SOURCE = "app"
ORIGINAL_AGENT = "original"

# Limits of the Argilla server (2.8) that settings must respect.
MAX_GUIDELINES_CHARS = 10_000
MAX_RANKED_RESPONSES = 50
MAX_LABEL_VALUE_CHARS = 200
MAX_LABEL_TEXT_CHARS = 500


class TemplateConfigError(ValueError):
    """A template's options from the flow file are unusable; the message says which and why."""


class TemplateRecordError(ValueError):
    """A record that this template cannot show (e.g. the wrong number of responses)."""


# --- the API client the settings objects are built with ------------------------------------------


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


def _client() -> Any:
    default = rg.Argilla._default_client
    return default if default is not None else _UNBOUND


# --- option checks --------------------------------------------------------------------------------


def _reject_unknown(template: str, unknown: Mapping[str, Any], accepted: Sequence[str]) -> None:
    if unknown:
        raise TemplateConfigError(
            f"template {template!r}: unknown option(s) {sorted(unknown)}; "
            f"accepted: {', '.join(accepted)}"
        )


def _check_guidelines(template: str, guidelines: Any) -> str:
    if not isinstance(guidelines, str) or not guidelines.strip():
        raise TemplateConfigError(f"template {template!r}: guidelines must be a non-empty string")
    if len(guidelines) > MAX_GUIDELINES_CHARS:
        raise TemplateConfigError(
            f"template {template!r}: guidelines have {len(guidelines)} characters; "
            f"Argilla accepts at most {MAX_GUIDELINES_CHARS}"
        )
    return guidelines


NONE_LABEL = "none"


def _check_criteria(template: str, criteria: Any) -> list[tuple[str, str]]:
    if isinstance(criteria, str) or not isinstance(criteria, Sequence) or not criteria:
        raise TemplateConfigError(f"template {template!r}: criteria must be a non-empty list")
    if not all(isinstance(c, str) and c.strip() for c in criteria):
        raise TemplateConfigError(f"template {template!r}: criteria must be non-empty strings")
    parsed = [parse_criterion(c.strip()) for c in criteria]
    ids = [cid for cid, _ in parsed]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise TemplateConfigError(f"template {template!r}: criterion ids repeat: {repeated}")
    if NONE_LABEL in ids:
        raise TemplateConfigError(
            f"template {template!r}: {NONE_LABEL!r} is reserved for 'meets none of the criteria'"
        )
    for cid, description in parsed:
        if len(description) > MAX_LABEL_TEXT_CHARS:
            raise TemplateConfigError(
                f"template {template!r}: criterion {cid!r} is longer than "
                f"{MAX_LABEL_TEXT_CHARS} characters"
            )
    return parsed


# --- rendering ------------------------------------------------------------------------------------


def render_prompt(record: Record) -> str:
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


def render_instruction(record: Record) -> str:
    """The instruction, or the conversation as a plain transcript (for curation)."""
    if record.messages:
        return "\n\n".join(f"[{m.role.value}]\n{m.content}" for m in record.messages)
    return record.instruction or ""


def curation_originals(record: Record) -> dict[str, str]:
    """What the curation template shows annotators: category, instruction, context, response."""
    category = record.metadata.get("category")
    return {
        "category": str(category).strip() if category is not None else "",
        "instruction": render_instruction(record),
        "context": record.context or "",
        "response": record.responses[0].text if record.responses else "",
    }


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
    client = _client()
    return [
        rg.TermsMetadataProperty(name="flow", title="Flow", client=client),
        rg.TermsMetadataProperty(name="source", title="Source", client=client),
        rg.TermsMetadataProperty(name="models", title="Models", client=client),
        rg.TermsMetadataProperty(name="tags", title="Tags", client=client),
        rg.FloatMetadataProperty(name="judge_margin", title="Judge margin", client=client),
    ]


# --- reading the judgments ------------------------------------------------------------------------


def _suggestion(question: str, value: Any, agent: str, score: Any = None) -> Any:
    return rg.Suggestion(question_name=question, value=value, score=score, agent=agent)


# --- templates ------------------------------------------------------------------------------------


class _Template:
    """Common ground of the templates: options, settings assembly, record assembly."""

    name: ClassVar[str]
    default_guidelines: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ("guidelines",)

    def __init__(self, guidelines: str | None = None, **unknown: Any) -> None:
        _reject_unknown(self.name, unknown, self.options)
        self.guidelines = _check_guidelines(
            self.name, self._default_guidelines() if guidelines is None else guidelines
        )

    def _default_guidelines(self) -> str:
        return self.default_guidelines

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _fields(self) -> list[Any]:
        raise NotImplementedError

    def _questions(self) -> list[Any]:
        raise NotImplementedError

    def _record_fields(self, record: Record) -> dict[str, str]:
        raise NotImplementedError

    def _suggestions(self, record: Record) -> list[Any]:
        raise NotImplementedError

    def settings(self, min_submitted: int) -> rg.Settings:
        """The dataset settings; each record is complete after `min_submitted` submissions."""
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
        """The Argilla record of `record` (external id = the Loopline record id)."""
        return rg.Record(
            id=record.record_id,
            fields=self._record_fields(record),
            metadata=record_metadata(record),
            suggestions=self._suggestions(record),
        )


def _text_field(name: str, title: str, *, required: bool = True, markdown: bool = True) -> Any:
    return rg.TextField(
        name=name, title=title, use_markdown=markdown, required=required, client=_client()
    )


# --- preference -----------------------------------------------------------------------------------

PREFERENCE_GUIDELINES = """\
# Comparing responses

Each record shows a **prompt** (an instruction, possibly with context, or a conversation) and
several candidate **responses** to it. The responses come from different models or settings;
their order is arbitrary and says nothing about their quality.

## What to judge
Read the prompt first and decide what a good answer must do. Then judge each response on:
- **Correctness**: facts, reasoning and code are right; nothing is made up.
- **Following the request**: it does what was asked, in the form and scope asked.
- **Helpfulness**: it solves the user's actual problem at a sensible level of detail.
- **Honesty and safety**: it admits uncertainty, refuses only what should be refused.

Do not reward length, confidence or polish for their own sake.

## Rating each response (1-5)
| Score | Meaning |
|---|---|
| 5 | Excellent: correct and complete; you would not change anything important. |
| 4 | Good: correct, with minor gaps or style issues. |
| 3 | Acceptable: usable, but with clear flaws or omissions. |
| 2 | Poor: significant errors, or misses much of the request. |
| 1 | Bad: wrong, harmful, off-topic or empty. |

Two responses may get the same rating.

## Ranking
Order the responses from best (top) to worst. The ranking must agree with your ratings: a
response rated higher must not be ranked below one rated lower. Between equally rated
responses, rank the one you would rather give to the user first.

## Corrected response (optional)
If even the best response has a fixable problem, write an improved version of it. Leave the
box empty if the best response is already good.

## Suggestions
Pre-filled ratings and ranking come from an AI judge. Check them; never accept them without
reading the responses.

## When to discard
Discard the record if the prompt is unintelligible, is not a real request, contains personal
or confidential data that should not be there, or if you cannot judge it (e.g. it needs
expertise you lack). Discarded records are left out of the training data.
"""


class PreferenceTemplate(_Template):
    """N responses side by side: a 1-5 rating for each, a ranking, an optional correction.

    ``responses`` (default 2) is the number of responses per record. A record with a
    different number of responses is refused (`TemplateRecordError`) rather than padded with
    empty responses: an empty candidate would have to be ranked like a real one.

    Suggestions: each response's overall judge score (mean over repeats; the mean of the
    aspects without an ``overall`` one), rounded half up to 1..5, as its rating; the responses
    by descending score (or the pairwise winner first) as the ranking. Checklist counts from
    the ``additive`` rubric only order the ranking: they are not 1-5 ratings.
    """

    name = "preference"
    default_guidelines = PREFERENCE_GUIDELINES
    options = ("responses", "guidelines")

    def __init__(self, responses: int = 2, guidelines: str | None = None, **unknown: Any) -> None:
        _reject_unknown(self.name, unknown, self.options)
        if isinstance(responses, bool) or not isinstance(responses, int):
            raise TemplateConfigError(f"template {self.name!r}: responses must be an integer")
        if not 2 <= responses <= MAX_RANKED_RESPONSES:
            raise TemplateConfigError(
                f"template {self.name!r}: responses must be between 2 and "
                f"{MAX_RANKED_RESPONSES}, got {responses}"
            )
        self.responses = responses
        super().__init__(guidelines)

    def __repr__(self) -> str:
        return f"PreferenceTemplate(responses={self.responses})"

    def _fields(self) -> list[Any]:
        return [
            _text_field("prompt", "Prompt"),
            *(_text_field(f"response_{i}", f"Response {i}") for i in self._numbers()),
        ]

    def _numbers(self) -> range:
        return range(1, self.responses + 1)

    def _questions(self) -> list[Any]:
        client = _client()
        ratings = [
            rg.RatingQuestion(
                name=f"rating_response_{i}",
                title=f"Rate response {i}",
                description="1 = bad, 3 = acceptable, 5 = excellent",
                values=[1, 2, 3, 4, 5],
                required=True,
                client=client,
            )
            for i in self._numbers()
        ]
        ranking = rg.RankingQuestion(
            name="ranking",
            title="Rank the responses, best first",
            values={f"response_{i}": f"Response {i}" for i in self._numbers()},
            required=True,
            client=client,
        )
        corrected = rg.TextQuestion(
            name="corrected_response",
            title="Corrected response (optional)",
            description="An improved version of the best response, if it needs fixing",
            required=False,
            use_markdown=True,
            client=client,
        )
        return [*ratings, ranking, corrected]

    def _check(self, record: Record) -> None:
        if len(record.responses) != self.responses:
            raise TemplateRecordError(
                f"template {self.name!r} is set up for {self.responses} responses per record; "
                f"record {record.record_id} has {len(record.responses)}. Generate "
                f"{self.responses} candidates per record for this flow or set the template's "
                "`responses` option"
            )

    def _record_fields(self, record: Record) -> dict[str, str]:
        self._check(record)
        fields = {"prompt": render_prompt(record)}
        fields.update({f"response_{i + 1}": r.text for i, r in enumerate(record.responses)})
        return fields

    def _suggestions(self, record: Record) -> list[Any]:
        verdict = judge_verdict(record)
        if verdict is None:
            return []
        suggestions = [
            _suggestion(
                f"rating_response_{i + 1}", to_five_point(score), verdict.agent, verdict.confidence
            )
            for i, score in enumerate(verdict.scores)
            if score is not None and verdict.five_point
        ]
        if verdict.order is not None:
            values = [f"response_{i + 1}" for i in verdict.order]
            score = None if verdict.confidence is None else [verdict.confidence] * len(values)
            suggestions.append(_suggestion("ranking", values, verdict.agent, score))
        return suggestions


# --- sft-demonstration ----------------------------------------------------------------------------

SFT_GUIDELINES = """\
# Writing ideal responses

Each record shows a **prompt**: an instruction (possibly with context) or a conversation whose
next assistant turn is missing. Your task is to write the response you would want an
excellent assistant to give. What you write is used as training data, so it should be the
best answer you can produce, not just an acceptable one.

## A good demonstration
- Answers exactly what was asked, completely, and nothing off-topic.
- Is correct: check facts, numbers and code (run the code if you can).
- Uses context given with the prompt and does not contradict it.
- Is as long as it needs to be and no longer; uses markdown (lists, code blocks) where it
  helps the reader.
- Says so plainly when something cannot be known or should not be done, and why.
- Matches the language and tone of the prompt.

## The pre-filled text
The box may be pre-filled with the best existing response (chosen by an AI judge) or with
the production app's answer. Treat it as a draft: fix errors, fill gaps, cut padding. If it
is already ideal you may submit it unchanged, but read it fully first.

## When to discard
Discard the record if the prompt is unintelligible or not a real request, if it contains
personal or confidential data that should not be there, or if you cannot write a reliable
answer (for example, it needs expertise or information you do not have).
"""


class SFTDemonstrationTemplate(_Template):
    """The prompt alone; the annotator writes the ideal response (pre-filled with a draft)."""

    name = "sft-demonstration"
    default_guidelines = SFT_GUIDELINES

    def __init__(self, guidelines: str | None = None, **unknown: Any) -> None:
        _reject_unknown(self.name, unknown, self.options)
        super().__init__(guidelines)

    def _fields(self) -> list[Any]:
        return [_text_field("prompt", "Prompt")]

    def _questions(self) -> list[Any]:
        return [
            rg.TextQuestion(
                name="ideal_response",
                title="Write the ideal response",
                description="Edit the draft, if any, into the best possible answer",
                required=True,
                use_markdown=True,
                client=_client(),
            )
        ]

    def _record_fields(self, record: Record) -> dict[str, str]:
        return {"prompt": render_prompt(record)}

    def _suggestions(self, record: Record) -> list[Any]:
        verdict = judge_verdict(record)
        if verdict is not None and verdict.best is not None:
            text = record.responses[verdict.best].text
            if text.strip():
                return [_suggestion("ideal_response", text, verdict.agent, verdict.confidence)]
        app = next((r for r in record.responses if r.source == "app" and r.text.strip()), None)
        if app is not None:
            return [_suggestion("ideal_response", app.text, agent_name(app.model))]
        return []


# --- curation -------------------------------------------------------------------------------------

CURATION_GUIDELINES = """\
# Curating instruction data

Each record is one example of an instruction dataset: a **category**, an **instruction**, an
optional **context** (reference text the instruction is about) and a **response**. The
answer boxes start with the original values. Your job is to leave every example correct,
clear and self-contained.

## For each part
- **Category**: the kind of task, e.g. `open_qa`, `closed_qa`, `classification`,
  `information_extraction`, `summarization`, `brainstorming`, `creative_writing`,
  `general_qa`. Correct it if it does not fit the instruction.
- **Instruction**: one clear request a person could act on. Fix typos and ambiguity; keep
  the intent. It must not rely on anything that is not in the record.
- **Context**: only text the instruction needs (for closed QA, extraction and summarization).
  Empty it when the instruction does not use it. Leave the box empty when there is none.
- **Response**: a correct, complete answer to the instruction, based on the context where
  there is one. Rewrite it when it is wrong, incomplete, padded or off-topic.

Change only what needs changing: if a part is fine, submit it as it is.

## When to discard
Discard the example if it cannot be repaired with reasonable effort: the instruction is
meaningless, harmful or a duplicate of another record; it contains personal or
confidential data; or a correct response would need information nobody can know.
"""


class CurationTemplate(_Template):
    """Dolly-style review: category, instruction, context and response, each editable.

    The fields come from ``metadata.category``, the instruction (a conversation as a plain
    transcript), the context and the first response. Each ``final_*`` question is pre-filled
    with the original (agent "original"). Rejecting an example is Argilla's discard action.
    """

    name = "curation"
    default_guidelines = CURATION_GUIDELINES

    def __init__(self, guidelines: str | None = None, **unknown: Any) -> None:
        _reject_unknown(self.name, unknown, self.options)
        super().__init__(guidelines)

    def _fields(self) -> list[Any]:
        return [
            _text_field("category", "Category", required=False, markdown=False),
            _text_field("instruction", "Instruction", markdown=False),
            _text_field("context", "Context", required=False, markdown=False),
            _text_field("response", "Response", required=False, markdown=False),
        ]

    def _questions(self) -> list[Any]:
        client = _client()

        def text(name: str, title: str, required: bool = True) -> Any:
            return rg.TextQuestion(name=name, title=title, required=required, client=client)

        return [
            text("final_category", "Category"),
            text("final_instruction", "Instruction"),
            text("final_context", "Context (leave empty if none)", required=False),
            text("final_response", "Response"),
        ]

    @staticmethod
    def _originals(record: Record) -> dict[str, str]:
        return {name: value for name, value in curation_originals(record).items() if value.strip()}

    def _record_fields(self, record: Record) -> dict[str, str]:
        return self._originals(record)

    def _suggestions(self, record: Record) -> list[Any]:
        return [
            _suggestion(f"final_{name}", value, ORIGINAL_AGENT)
            for name, value in self._originals(record).items()
        ]


# --- code-scoring ---------------------------------------------------------------------------------

DEFAULT_CODE_CRITERIA = (
    "correct: Correct: does what was asked and would run without errors",
    "edge_cases: Handles edge cases and bad input (empty, boundary, invalid values)",
    "idiomatic: Idiomatic, readable code for its language, without needless complexity",
    "explained: Explains the approach or key decisions clearly and briefly",
)

CODE_GUIDELINES_HEAD = """\
# Scoring code responses

Each record shows a programming **prompt** and two **responses**. For each response, tick
every criterion it fully meets. Judge each response on its own; the two are scored
independently and their order means nothing.

## Criteria
"""

CODE_GUIDELINES_TAIL = """
Tick **None of the criteria** when a response meets none of them, and never together with
another criterion.

## How strict to be
- A criterion counts only if it is **fully** met. Partly met is not met; when in doubt,
  leave it unticked.
- Check correctness by reading carefully and, where you can, by running the code on a few
  inputs, including awkward ones.
- A response that is not code where code was asked for meets none of the code criteria.
- Do not credit length or confident wording.

## Suggestions
Pre-ticked criteria come from an AI judge's checklist. Verify each one.

## When to discard
Discard the record if the prompt is not a programming task, is unintelligible, contains
secrets or personal data, or needs a language or domain you cannot assess.
"""


class CodeScoringTemplate(_Template):
    """Two code responses, each with a checklist (multi-label) of the criteria it meets.

    ``criteria`` entries are ``"id: description"`` like the ``additive`` rubric's (whose
    ``criteria_met`` ids become the suggested labels); the default checks correctness, edge
    cases, idiom and explanation. Each checklist also has a ``none`` label, since Argilla
    cannot submit an empty multi-label answer. A record needs exactly two responses.
    """

    name = "code-scoring"
    options = ("criteria", "guidelines")
    responses = 2

    def __init__(
        self,
        criteria: Sequence[str] = DEFAULT_CODE_CRITERIA,
        guidelines: str | None = None,
        **unknown: Any,
    ) -> None:
        _reject_unknown(self.name, unknown, self.options)
        self.criteria = _check_criteria(self.name, criteria)
        super().__init__(guidelines)

    def _default_guidelines(self) -> str:
        checklist = "\n".join(f"- **{cid}**: {text}" for cid, text in self.criteria)
        return f"{CODE_GUIDELINES_HEAD}{checklist}\n{CODE_GUIDELINES_TAIL}"

    def __repr__(self) -> str:
        return f"CodeScoringTemplate(criteria={[cid for cid, _ in self.criteria]})"

    def _labels(self) -> dict[str, str]:
        labels = dict(self.criteria)
        labels[NONE_LABEL] = "None of the criteria"
        return labels

    def _fields(self) -> list[Any]:
        return [
            _text_field("prompt", "Prompt"),
            _text_field("response_1", "Response 1"),
            _text_field("response_2", "Response 2"),
        ]

    def _questions(self) -> list[Any]:
        return [
            rg.MultiLabelQuestion(
                name=f"criteria_response_{i}",
                title=f"Criteria response {i} fully meets",
                labels=self._labels(),
                required=True,
                client=_client(),
            )
            for i in (1, 2)
        ]

    def _record_fields(self, record: Record) -> dict[str, str]:
        if len(record.responses) != self.responses:
            raise TemplateRecordError(
                f"template {self.name!r} shows exactly {self.responses} responses; record "
                f"{record.record_id} has {len(record.responses)}"
            )
        return {
            "prompt": render_prompt(record),
            "response_1": record.responses[0].text,
            "response_2": record.responses[1].text,
        }

    def _suggestions(self, record: Record) -> list[Any]:
        n = len(record.responses)
        checked = first_group(
            [
                j
                for j in record.judgments
                if j.status == "ok" and len(j.ratings) == n and is_checklist(j)
            ]
        )
        if not checked:
            return []
        agent = agent_name(checked[0].judge_model)
        suggestions = []
        for i in range(min(n, self.responses)):
            votes: Counter[str] = Counter()
            for judgment in checked:
                met = {c for rating in judgment.ratings[i] for c in rating.criteria_met}
                votes.update(met if met else {NONE_LABEL})
            majority = [label for label, count in votes.items() if count * 2 > len(checked)]
            labels = [cid for cid, _ in self.criteria if cid in majority]
            if not labels and NONE_LABEL in majority:
                labels = [NONE_LABEL]
            if not labels:
                continue
            score = [votes[label] / len(checked) for label in labels] if len(checked) > 1 else None
            suggestions.append(_suggestion(f"criteria_response_{i + 1}", labels, agent, score))
        return suggestions


# --- thumbs ---------------------------------------------------------------------------------------

THUMBS_GUIDELINES = """\
# Good or bad?

Each record shows a **prompt** and one **response** (usually the production app's answer).
Decide whether the response is good enough to show to a user as it is.

## Verdict
- **good**: correct, does what was asked, and a user would be satisfied. Small stylistic
  imperfections are fine.
- **bad**: wrong in any way that matters, misses part of the request, is unsafe, evasive
  without reason, or would confuse or mislead the user.

If you hesitate, ask yourself whether you would be comfortable if this exact answer went to
a customer. If not, choose **bad**.

## Comment (optional)
For a **bad** verdict, say briefly what is wrong (e.g. "wrong formula", "ignores the second
question"). Comments make the data far more useful for fixing the app.

## Suggestions
A pre-selected verdict comes from an AI judge's score. Read the response before accepting it.

## When to discard
Discard the record if the prompt is unintelligible or not a real request, contains personal
or confidential data that should not be there, or you cannot judge the answer.
"""


class ThumbsTemplate(_Template):
    """One response (the app's, else the first): good or bad, and an optional comment."""

    name = "thumbs"
    default_guidelines = THUMBS_GUIDELINES

    def __init__(self, guidelines: str | None = None, **unknown: Any) -> None:
        _reject_unknown(self.name, unknown, self.options)
        super().__init__(guidelines)

    def _fields(self) -> list[Any]:
        return [_text_field("prompt", "Prompt"), _text_field("response", "Response")]

    def _questions(self) -> list[Any]:
        client = _client()
        return [
            rg.LabelQuestion(
                name="verdict",
                title="Is this response good?",
                labels={"good": "good", "bad": "bad"},
                required=True,
                client=client,
            ),
            rg.TextQuestion(
                name="comment",
                title="Comment (optional)",
                description="What is wrong or missing?",
                required=False,
                client=client,
            ),
        ]

    @staticmethod
    def shown_index(record: Record) -> int:
        """The index of the response the record shows: the app's, else the first."""
        if not record.responses:
            raise TemplateRecordError(
                f"template 'thumbs' needs a response to judge; record {record.record_id} has none"
            )
        return next((i for i, r in enumerate(record.responses) if r.source == "app"), 0)

    def _record_fields(self, record: Record) -> dict[str, str]:
        return {
            "prompt": render_prompt(record),
            "response": record.responses[self.shown_index(record)].text,
        }

    def _suggestions(self, record: Record) -> list[Any]:
        verdict = judge_verdict(record)
        if verdict is None or not verdict.five_point:
            return []
        score = verdict.scores[self.shown_index(record)]
        if score is None:
            return []
        if score >= 4:
            label = "good"
        elif score <= 2:
            label = "bad"
        else:
            return []
        return [_suggestion("verdict", label, verdict.agent, verdict.confidence)]


TEMPLATES: dict[str, type[_Template]] = {
    template.name: template
    for template in (
        PreferenceTemplate,
        SFTDemonstrationTemplate,
        CurationTemplate,
        CodeScoringTemplate,
        ThumbsTemplate,
    )
}
