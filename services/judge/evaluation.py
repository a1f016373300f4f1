"""Judgments reported as OpenTelemetry `gen_ai.evaluation.result` events (GenAI conventions).

Each judgment (one repeat of one rubric over a record's responses) is a span, `judge {rubric}`,
in the record's trace: the judge's LLM calls for it (the structured call, its fallback and
repair) are its children, and it carries one `gen_ai.evaluation.result` event per response
and criterion judged. The conventions want the event parented to the span of the operation
evaluated, or else naming that operation's `gen_ai.response.id`: the responses were generated
in another process (the generator's spans ended long before), so the events name the
candidate's `response_id` when the generator recorded one.

Event attributes:

- `gen_ai.evaluation.name`: the criterion, the rating's aspect (`helpfulness`, `overall`, an
  additive rubric's scale); for pairwise, the rubric (`pairwise`);
- `gen_ai.evaluation.score.value`: the rating's score; pairwise 1 for the preferred response,
  0 for the other, 0.5 each for a tie;
- `gen_ai.evaluation.score.label`: pairwise `preferred` / `rejected` / `tie`;
- `gen_ai.evaluation.explanation`: the judge's rationale (at most `MAX_EXPLANATION` characters),
  only with content capture on (`LOOPLINE_TELEMETRY__CAPTURE_CONTENT`: a rationale quotes the
  prompt and the responses); a failed judgment's error is always there;
- `gen_ai.response.id`: the judged candidate's completion id, when known;
- `error.type` for a failed judgment (`rubric_refused`, `invalid_output`, or the LLM error's
  type such as `400`), with the error as the explanation and no score;
- `loopline.response.index` / `loopline.response.model`: which of the record's responses,
  `loopline.judge.rubric` / `loopline.judge.repeat`: which judgment.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import Span, Tracer

from shared.events import Judgment, Record

EVENT_NAME = "gen_ai.evaluation.result"
EVALUATION_NAME = "gen_ai.evaluation.name"
SCORE_VALUE = "gen_ai.evaluation.score.value"
SCORE_LABEL = "gen_ai.evaluation.score.label"
EXPLANATION = "gen_ai.evaluation.explanation"
RESPONSE_ID = "gen_ai.response.id"
ERROR_TYPE = "error.type"
RESPONSE_INDEX = "loopline.response.index"
RESPONSE_MODEL = "loopline.response.model"
RUBRIC = "loopline.judge.rubric"
REPEAT = "loopline.judge.repeat"
STATUS = "loopline.judge.status"
RECORD_ID = "loopline.record_id"
MAX_EXPLANATION = 2000

# Why a judgment failed, as `error.type` (an LLM error names its own type).
RUBRIC_REFUSED = "rubric_refused"
INVALID_OUTPUT = "invalid_output"


@contextmanager
def judgment_span(tracer: Tracer, record: Record, rubric: str, repeat: int) -> Iterator[Span]:
    """The span of one judgment, current inside the block (the LLM calls become children)."""
    attributes: dict[str, Any] = {
        RECORD_ID: record.record_id,
        RUBRIC: rubric,
        REPEAT: repeat,
        "openinference.span.kind": "EVALUATOR",  # how Phoenix shows it
    }
    with tracer.start_as_current_span(f"judge {rubric}", attributes=attributes) as span:
        yield span


def report(
    span: Span,
    record: Record,
    judgment: Judgment,
    error_type: str | None,
    capture_content: bool = False,
) -> None:
    """Add `judgment`'s evaluation events to `span`."""
    span.set_attribute(STATUS, judgment.status)
    if error_type is not None:
        span.set_attribute(ERROR_TYPE, error_type)
    for attributes in evaluation_results(record, judgment, error_type, capture_content):
        span.add_event(EVENT_NAME, attributes)


def evaluation_results(
    record: Record,
    judgment: Judgment,
    error_type: str | None = None,
    capture_content: bool = False,
) -> list[dict[str, Any]]:
    """The attributes of each `gen_ai.evaluation.result` event of one judgment (rationales
    only with `capture_content`)."""
    results: list[dict[str, Any]] = []
    if judgment.status != "ok":
        explanation = judgment.error or "the judgment failed"
        for index in range(len(record.responses)):
            results.append(
                _about(record, judgment, index, judgment.rubric, explanation)
                | {ERROR_TYPE: error_type or INVALID_OUTPUT}
            )
        return results

    def content(text: str) -> str:
        return text if capture_content else ""

    for index, ratings in enumerate(judgment.ratings):
        for rating in ratings:
            explained = content(rating.rationale or judgment.rationale)
            result = _about(record, judgment, index, rating.aspect, explained)
            results.append(result | {SCORE_VALUE: rating.score})
    if not judgment.ratings and (judgment.preferred is not None or judgment.tie):
        for index in range(len(record.responses)):
            if judgment.tie:
                score, label = 0.5, "tie"
            elif judgment.preferred == index:
                score, label = 1.0, "preferred"
            else:
                score, label = 0.0, "rejected"
            result = _about(record, judgment, index, judgment.rubric, content(judgment.rationale))
            results.append(result | {SCORE_VALUE: score, SCORE_LABEL: label})
    return results


def _about(
    record: Record, judgment: Judgment, index: int, name: str, explanation: str
) -> dict[str, Any]:
    response = record.responses[index]
    attributes: dict[str, Any] = {
        EVALUATION_NAME: name,
        RESPONSE_INDEX: index,
        RESPONSE_MODEL: response.model,
        RUBRIC: judgment.rubric,
        REPEAT: judgment.repeat,
    }
    if explanation:
        attributes[EXPLANATION] = explanation[:MAX_EXPLANATION]
    if response.response_id:
        attributes[RESPONSE_ID] = response.response_id
    return attributes
