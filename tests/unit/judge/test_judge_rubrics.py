import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from services.judge.judging import agreement_of, judge_record, shuffled_order
from services.judge.rubrics.additive import AdditiveRubric
from services.judge.rubrics.base import Rubric, RubricConfigError
from services.judge.rubrics.custom import CustomRubric, fill_template
from services.judge.rubrics.multi_aspect import MultiAspectRubric
from services.judge.rubrics.pairwise import PairwiseRubric
from services.judge.structured import REPAIR_SEPARATOR, extract_json_object, structured_call
from shared.events import CandidateResponse, ChatMessage, Judgment, Record, Role
from shared.llm.base import ChatCompletion, LLMError
from shared.plugins import PluginKind, PluginRegistry

# --- a scripted judge ---------------------------------------------------------------------------

Reply = str | Exception
Script = Callable[["Call"], Reply]
RESPONSE_TAG = re.compile(r'<response id="([A-Z])">\n(.*?)\n</response>', re.DOTALL)


class Call:
    """One request the fake judge received."""

    def __init__(
        self, messages: list[ChatMessage], response_format: dict[str, Any] | None, index: int
    ) -> None:
        self.messages = messages
        self.response_format = response_format
        self.index = index

    def shown(self) -> list[tuple[str, str]]:
        """(label, text) of the responses in the first message that lists them."""
        for message in self.messages:
            found = RESPONSE_TAG.findall(message.content)
            if found:
                return found
        raise AssertionError("no responses in the prompt")


class ScriptedLLM:
    """Answers each chat request with whatever the script computes from it; no network."""

    model = "scripted-judge"

    def __init__(self, script: Script, finish_reason: str = "stop") -> None:
        self.script = script
        self.finish_reason = finish_reason
        self.calls: list[Call] = []

    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        response_format: dict[str, Any] | None = None,
        **params: Any,
    ) -> ChatCompletion:
        call = Call(list(messages), response_format, len(self.calls))
        self.calls.append(call)
        reply = self.script(call)
        if isinstance(reply, Exception):
            raise reply
        return ChatCompletion(
            text=reply,
            model=self.model,
            finish_reason=self.finish_reason,
            usage=None,
            latency_ms=1.0,
        )


def record(texts: list[str], **fields: Any) -> Record:
    fields.setdefault("instruction", "Write a function that reverses a string.")
    return Record(
        flow="test",
        responses=[CandidateResponse(text=t, model=f"gen-{i}") for i, t in enumerate(texts)],
        **fields,
    )


def texts_with_mark(n: int, mark: int) -> list[str]:
    return [f"answer {i} MARK" if i == mark else f"answer {i}" for i in range(n)]


ASPECTS = ["helpfulness", "honesty", "instruction_following", "truthfulness", "overall"]


def multi_aspect_marker(call: Call, aspects: list[str] = ASPECTS, per_aspect: bool = False) -> str:
    """5 on every aspect for the response with MARK in it, 1 for the others."""
    entries = []
    for label, text in call.shown():
        score = 5 if "MARK" in text else 1
        entry: dict[str, Any] = {"response": label}
        if per_aspect:
            entry.update({a: {"rationale": f"{a} of {label}", "score": score} for a in aspects})
        else:
            entry["rationale"] = f"all about {label}"
            entry.update({a: score for a in aspects})
        entries.append(entry)
    return json.dumps({"responses": entries})


def pairwise_marker(call: Call) -> str:
    winner = next(label for label, text in call.shown() if "MARK" in text)
    return json.dumps({"rationale": "the marked one is better", "winner": winner})


# --- multi-aspect ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 4])
async def test_multi_aspect_ratings_follow_the_responses_through_the_shuffle(n: int) -> None:
    orders: set[tuple[int, ...]] = set()
    for mark in range(n):
        for seed in ["s1", "s2", "s3", None]:
            llm = ScriptedLLM(multi_aspect_marker)
            judgments = await judge_record(
                record(texts_with_mark(n, mark)), MultiAspectRubric(), llm, repeats=2, seed=seed
            )
            assert len(judgments) == 2
            for r, judgment in enumerate(judgments):
                assert judgment.status == "ok", judgment.error
                assert judgment.repeat == r
                assert sorted(judgment.order) == list(range(n))
                orders.add(tuple(judgment.order))
                assert len(judgment.ratings) == n
                for i, ratings in enumerate(judgment.ratings):
                    assert [x.aspect for x in ratings] == ASPECTS
                    assert {x.score for x in ratings} == ({5.0} if i == mark else {1.0})
                assert judgment.margin == 4.0
                assert judgment.agreement == 1.0
                assert judgment.rubric == "multi-aspect"
                assert judgment.judge_model == "scripted-judge"
                assert judgment.raw_output is not None and "responses" in judgment.raw_output
    assert len(orders) > 1  # the responses really were shown in different orders


async def test_multi_aspect_prompt_and_schema() -> None:
    rubric = MultiAspectRubric(aspects=["helpfulness", "overall"])
    rec = record(["one", "two"], context="Use Python 3.")
    messages = rubric.messages(rec, list(reversed(rec.responses)))
    assert [m.role for m in messages] == [Role.system, Role.user]
    assert "helpfulness" in messages[0].content and "overall" in messages[0].content
    assert '"rationale": "...", "helpfulness": 1-5, "overall": 1-5' in messages[0].content
    user = messages[1].content
    assert "reverses a string" in user and "Use Python 3." in user
    assert RESPONSE_TAG.findall(user) == [("A", "two"), ("B", "one")]

    model = rubric.output_model(2)
    schema = model.model_json_schema()
    assert schema["properties"]["responses"]["minItems"] == 2
    assert schema["properties"]["responses"]["maxItems"] == 2
    good = {"rationale": "ok", "helpfulness": 3, "overall": 4}
    with pytest.raises(ValidationError):  # rationale too long
        model.model_validate({"responses": [{**good, "response": "A", "rationale": "x" * 401}]})
    with pytest.raises(ValidationError):  # score out of range
        model.model_validate({"responses": [{**good, "response": "A", "overall": 6}]})
    with pytest.raises(ValidationError, match="labelled"):  # entries out of order
        model.model_validate({"responses": [{**good, "response": "B"}, {**good, "response": "A"}]})


async def test_multi_aspect_per_aspect_rationales() -> None:
    rubric = MultiAspectRubric(aspects=["helpfulness", "overall"], rationale="per-aspect")
    rec = record(["one", "two"])
    system = rubric.messages(rec, list(rec.responses))[0].content
    assert '"helpfulness": {"rationale": "...", "score": 1-5}' in system
    model = rubric.output_model(2)
    entry = {"rationale": "x" * 201, "score": 3}
    with pytest.raises(ValidationError):  # rationale too long
        model.model_validate({"responses": [{"response": "A", "helpfulness": entry}]})

    llm = ScriptedLLM(lambda c: multi_aspect_marker(c, ["helpfulness", "overall"], True))
    [judgment] = await judge_record(record(["a", "b MARK"]), rubric, llm)
    assert judgment.status == "ok", judgment.error
    assert [[(r.aspect, r.score) for r in rs] for rs in judgment.ratings] == [
        [("helpfulness", 1.0), ("overall", 1.0)],
        [("helpfulness", 5.0), ("overall", 5.0)],
    ]
    shown = {rs[0].rationale for rs in judgment.ratings}
    assert shown == {"helpfulness of A", "helpfulness of B"}


async def test_multi_aspect_shared_rationale_on_every_rating() -> None:
    llm = ScriptedLLM(multi_aspect_marker)
    [judgment] = await judge_record(record(["a MARK", "b"]), MultiAspectRubric(), llm)
    for ratings in judgment.ratings:
        assert len({r.rationale for r in ratings}) == 1
        assert ratings[0].rationale.startswith("all about ")
    with pytest.raises(RubricConfigError, match="rationale must be one of"):
        MultiAspectRubric(rationale="none")


async def test_conversation_records_are_rendered() -> None:
    rec = Record(
        flow="test",
        messages=[
            ChatMessage(role=Role.system, content="be terse"),
            ChatMessage(role=Role.user, content="what is 2+2?"),
        ],
        responses=[CandidateResponse(text="4", model="m")],
    )
    user = MultiAspectRubric().messages(rec, list(rec.responses))[1].content
    assert "[system]\nbe terse" in user and "[user]\nwhat is 2+2?" in user


async def test_one_response_has_margin_zero_and_mean_without_overall() -> None:
    llm = ScriptedLLM(lambda c: multi_aspect_marker(c, ["helpfulness", "honesty"]))
    rubric = MultiAspectRubric(aspects=["helpfulness", "honesty"])
    [judgment] = await judge_record(record(["only MARK"]), rubric, llm)
    assert judgment.status == "ok" and judgment.order == [0]
    assert judgment.margin == 0.0
    assert judgment.agreement is None  # one repeat

    [judgment] = await judge_record(record(["a MARK", "b"]), rubric, ScriptedLLM(llm.script))
    assert judgment.margin == 4.0  # the mean of the aspects stands in for "overall"


async def test_no_responses_nothing_to_judge() -> None:
    llm = ScriptedLLM(multi_aspect_marker)
    assert await judge_record(record([]), MultiAspectRubric(), llm) == []
    assert llm.calls == []


def build_rubric(name: str, **options: Any) -> Rubric:
    """A rubric built as a flow builds it (the unknown-option check lives in the registry)."""
    rubric: Rubric = PluginRegistry().build(PluginKind.rubrics, name, options)
    return rubric


def test_unknown_options_are_named() -> None:
    with pytest.raises(RubricConfigError, match=r"\['aspect', 'scale'\]"):
        build_rubric("multi-aspect", aspect=["x"], scale=5)
    with pytest.raises(RubricConfigError, match="unknown option"):
        build_rubric("pairwise", aspects=["x"])
    with pytest.raises(RubricConfigError, match="critera"):
        build_rubric("additive", critera=["x"])
    with pytest.raises(RubricConfigError, match="list of strings"):
        MultiAspectRubric(aspects="helpfulness")
    with pytest.raises(RubricConfigError, match="repeats"):
        MultiAspectRubric(aspects=["a", "a"])


def test_rubrics_satisfy_the_protocol() -> None:
    schema = {
        "type": "object",
        "properties": {
            "ratings": {
                "type": "array",
                "items": {"type": "object", "properties": {"score": {"type": "number"}}},
            }
        },
    }
    rubrics: list[Rubric] = [
        MultiAspectRubric(),
        AdditiveRubric(),
        PairwiseRubric(),
        CustomRubric(prompt="{responses}", output_schema=schema),
    ]
    assert [r.name for r in rubrics] == ["multi-aspect", "additive", "pairwise", "custom"]
    assert all(isinstance(r, Rubric) for r in rubrics)


# --- pairwise ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mark", [0, 1])
async def test_pairwise_prefers_the_marked_response_whatever_the_order(mark: int) -> None:
    for seed in ["a", "b", "c", "d", "e"]:
        llm = ScriptedLLM(pairwise_marker)
        judgments = await judge_record(
            record(texts_with_mark(2, mark)), PairwiseRubric(), llm, repeats=2, seed=seed
        )
        # Two repeats of two responses: both orders are shown, once each.
        assert sorted(tuple(j.order) for j in judgments) == [(0, 1), (1, 0)]
        for judgment in judgments:
            assert judgment.status == "ok"
            assert judgment.preferred == mark and not judgment.tie
            assert judgment.ratings == [] and judgment.margin is None
            assert judgment.rationale == "the marked one is better"
            assert judgment.agreement == 1.0


async def test_pairwise_tie_and_position_bias() -> None:
    tie = ScriptedLLM(lambda c: json.dumps({"rationale": "same", "winner": "tie"}))
    [judgment] = await judge_record(record(["x", "y"]), PairwiseRubric(), tie)
    assert judgment.tie and judgment.preferred is None and judgment.status == "ok"

    # A judge that always picks whatever is shown first disagrees with itself across orders.
    first = ScriptedLLM(lambda c: json.dumps({"rationale": "first", "winner": "A"}))
    judgments = await judge_record(record(["x", "y"]), PairwiseRubric(), first, repeats=2)
    assert {j.preferred for j in judgments} == {0, 1}
    assert all(j.agreement == 0.5 for j in judgments)


async def test_pairwise_needs_two_responses() -> None:
    llm = ScriptedLLM(pairwise_marker)
    judgments = await judge_record(record(["a", "b", "c"]), PairwiseRubric(), llm, repeats=2)
    assert [j.status for j in judgments] == ["failed", "failed"]
    assert "exactly 2" in (judgments[0].error or "")
    assert judgments[0].ratings == [] and llm.calls == []


# --- additive ----------------------------------------------------------------------------------


async def test_additive_criteria_met_and_sum() -> None:
    rubric = AdditiveRubric()
    assert [cid for cid, _ in rubric.criteria] == [
        "correct",
        "edge_cases",
        "idiomatic",
        "explained",
    ]

    def judge(call: Call) -> str:
        entries = [
            {
                "response": label,
                "rationale": f"checked {label}",
                "criteria": {cid: cid in text.split() for cid, _ in rubric.criteria},
            }
            for label, text in call.shown()
        ]
        return json.dumps({"responses": entries})

    texts = ["correct idiomatic", "nothing", "correct edge_cases idiomatic explained"]
    judgments = await judge_record(record(texts), rubric, ScriptedLLM(judge), repeats=3)
    for judgment in judgments:
        assert judgment.status == "ok"
        [[first], [second], [third]] = judgment.ratings
        assert first.aspect == "additive"
        assert (first.score, first.criteria_met) == (2.0, ["correct", "idiomatic"])
        assert (second.score, second.criteria_met) == (0.0, [])
        assert third.score == 4.0 and third.criteria_met == [c for c, _ in rubric.criteria]
        assert judgment.margin == 4.0 and judgment.agreement == 1.0
    assert sorted(tuple(j.order) for j in judgments) != [(0, 1, 2)] * 3  # rotations


def test_additive_custom_criteria_and_scale() -> None:
    rubric = AdditiveRubric(
        criteria=["cites: cites a source", "Is polite to the user"], scale_name="quality"
    )
    assert rubric.criteria == [
        ("cites", "cites a source"),
        ("is_polite_to_the_user", "Is polite to the user"),
    ]
    model = rubric.output_model(1)
    output = model.model_validate(
        {
            "responses": [
                {
                    "response": "A",
                    "rationale": "polite, no source",
                    "criteria": {"cites": False, "is_polite_to_the_user": True},
                }
            ]
        }
    )
    [[rating]] = rubric.to_judgment_fields(output, 1)["ratings"]
    assert (rating.aspect, rating.score, rating.criteria_met) == (
        "quality",
        1.0,
        ["is_polite_to_the_user"],
    )
    with pytest.raises(RubricConfigError, match="repeat"):
        AdditiveRubric(criteria=["a: one", "a: two"])


# --- custom ------------------------------------------------------------------------------------

CUSTOM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "ratings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "rationale": {"type": "string", "maxLength": 300},
                    "score": {"type": "integer", "minimum": 1, "maximum": 10},
                    "flags": {"type": "array", "items": {"enum": ["unsafe", "off-topic"]}},
                },
                "required": ["rationale", "score"],
            },
        },
        "rationale": {"type": "string", "maxLength": 400},
        "confident": {"type": "boolean"},
    },
    "required": ["ratings", "rationale"],
}

TEMPLATE = (
    'Rate each answer 1-10, e.g. {"score": 7}, and a set like {{1, 2}}.\n'
    "Question: {instruction}\nContext: {context}\n{responses}"
)


def test_template_is_format_safe() -> None:
    filled = fill_template(
        TEMPLATE,
        {"instruction": "What does {x} mean in {0}?", "context": "{context}", "responses": "R"},
    )
    assert filled == (
        'Rate each answer 1-10, e.g. {"score": 7}, and a set like {1, 2}.\n'
        "Question: What does {x} mean in {0}?\nContext: {context}\nR"
    )


async def test_custom_rubric_end_to_end() -> None:
    rubric = CustomRubric(prompt=TEMPLATE, output_schema=CUSTOM_SCHEMA, aspect="accuracy")
    rec = record(
        ["uses {braces} MARK", "plain }{ text"],
        instruction="Explain {name} and {{this}} in f-strings",
        context="{unknown}",
    )

    def judge(call: Call) -> str:
        user = call.messages[1].content
        assert "Explain {name} and {{this}} in f-strings" in user
        assert "Context: {unknown}" in user
        assert 'e.g. {"score": 7}' in user
        ratings = [
            {"rationale": f"{label}", "score": 9 if "MARK" in text else 3}
            for label, text in call.shown()
        ]
        return json.dumps({"ratings": ratings, "rationale": "overall fine"})

    judgments = await judge_record(rec, rubric, ScriptedLLM(judge), repeats=2)
    for judgment in judgments:
        assert judgment.status == "ok", judgment.error
        assert [[(r.aspect, r.score) for r in rs] for rs in judgment.ratings] == [
            [("accuracy", 9.0)],
            [("accuracy", 3.0)],
        ]
        assert judgment.rationale == "overall fine"
        assert judgment.margin == 6.0


def test_custom_schema_becomes_a_model() -> None:
    rubric = CustomRubric(prompt="{responses}", output_schema=CUSTOM_SCHEMA)
    model = rubric.output_model(2)
    schema = model.model_json_schema()
    assert schema["properties"]["ratings"]["minItems"] == 2
    assert schema["properties"]["ratings"]["maxItems"] == 2
    assert set(schema["required"]) == {"ratings", "rationale"}
    good = {
        "ratings": [
            {"rationale": "a", "score": 1, "flags": ["unsafe"]},
            {"rationale": "b", "score": 10},
        ],
        "rationale": "r",
    }
    output = model.model_validate(good)
    assert output.model_dump(by_alias=True)["confident"] is None
    bad_cases: list[dict[str, Any]] = [
        {**good, "ratings": good["ratings"][:1]},  # one rating for two responses
        {**good, "ratings": [{"rationale": "a", "score": 11}, good["ratings"][1]]},  # > maximum
        {**good, "ratings": [{"rationale": "a", "score": 5, "flags": ["x"]}, good["ratings"][1]]},
        {**good, "ratings": [{"rationale": "a"}, good["ratings"][1]]},  # no score
        {**good, "extra": 1},  # not in the schema
    ]
    for bad in bad_cases:
        with pytest.raises(ValidationError):
            model.model_validate(bad)


def test_custom_score_is_always_required_and_score_field_renames_it() -> None:
    schema = {
        "type": "object",
        "properties": {
            "ratings": {
                "type": "array",
                "items": {"type": "object", "properties": {"grade": {"type": "number"}}},
            }
        },
    }
    rubric = CustomRubric(prompt="{responses}", output_schema=schema, score_field="grade")
    model = rubric.output_model(1)
    with pytest.raises(ValidationError):
        model.model_validate({"ratings": [{}]})
    output = model.model_validate({"ratings": [{"grade": 2.5}]})
    [[rating]] = rubric.to_judgment_fields(output, 1)["ratings"]
    assert rating.score == 2.5 and rating.aspect == "custom"


def _with_ratings_items(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"ratings": {"type": "array", "items": items}}}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "array"}, "top level"),
        ({"type": "object", "properties": {"score": {"type": "integer"}}}, "ratings"),
        (_with_ratings_items({"type": "object", "properties": {"rationale": {}}}), "score"),
        (
            _with_ratings_items({"type": "object", "properties": {"score": {"type": "string"}}}),
            "integer or number",
        ),
        (
            _with_ratings_items(
                {
                    "type": "object",
                    "properties": {
                        "score": {"type": "number"},
                        "detail": {"type": "object", "properties": {}},
                    },
                }
            ),
            "nested",
        ),
        (
            {
                "type": "object",
                "properties": {
                    **_with_ratings_items(
                        {"type": "object", "properties": {"score": {"type": "number"}}}
                    )["properties"],
                    "when": {"type": "string", "format": "date-time"},
                },
            },
            "format",
        ),
        (
            {
                "type": "object",
                "properties": {
                    **_with_ratings_items(
                        {"type": "object", "properties": {"score": {"type": "number"}}}
                    )["properties"],
                    "pick": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                },
            },
            "not supported",
        ),
        (
            {
                "type": "object",
                "properties": {
                    **_with_ratings_items(
                        {"type": "object", "properties": {"score": {"type": "number"}}}
                    )["properties"],
                },
                "required": ["ratings", "verdict"],
            },
            "undefined",
        ),
    ],
)
def test_unsupported_schemas_are_rejected_at_construction(
    schema: dict[str, Any], message: str
) -> None:
    with pytest.raises(RubricConfigError, match=message) as caught:
        CustomRubric(prompt="{responses}", output_schema=schema)
    assert "output_schema" in str(caught.value)


def test_custom_prompt_errors() -> None:
    schema = CUSTOM_SCHEMA
    with pytest.raises(RubricConfigError, match="must contain"):
        CustomRubric(prompt="no responses here", output_schema=schema)
    with pytest.raises(RubricConfigError, match="question"):
        CustomRubric(prompt="{question} {responses}", output_schema=schema)
    with pytest.raises(RubricConfigError, match="prompt"):
        CustomRubric(output_schema=schema)
    with pytest.raises(RubricConfigError, match="templat"):
        build_rubric("custom", prompt="{responses}", output_schema=schema, templat="x")


# --- structured output -------------------------------------------------------------------------


class Verdict(BaseModel):
    score: int


def test_extract_json_object() -> None:
    assert extract_json_object('Sure! Here it is:\n```json\n{"a": {"b": 1}}\n```\nBye') == (
        '{"a": {"b": 1}}'
    )
    assert extract_json_object('Thinking {not json} then {"a": 1} and {"b": 2}') == '{"a": 1}'
    assert extract_json_object("no object [1, 2]") is None


async def test_code_fenced_json_is_accepted() -> None:
    llm = ScriptedLLM(lambda c: 'My verdict:\n```json\n{"score": 4}\n```')
    result = await structured_call(llm, [ChatMessage(role=Role.user, content="rate")], Verdict)
    assert result.value == Verdict(score=4) and not result.repaired and result.error is None
    [call] = llm.calls
    assert call.response_format is not None
    assert call.response_format["type"] == "json_schema"
    assert call.response_format["json_schema"]["schema"] == Verdict.model_json_schema()
    assert call.response_format["json_schema"]["strict"] is True


async def test_invalid_output_is_repaired_once() -> None:
    replies = iter(['{"score": "great"', '{"score": 5}'])
    llm = ScriptedLLM(lambda c: next(replies))
    messages = [ChatMessage(role=Role.user, content="rate")]
    result = await structured_call(llm, messages, Verdict, max_tokens=50)
    assert result.value == Verdict(score=5) and result.repaired
    assert result.raw == '{"score": 5}'
    assert len(llm.calls) == 2
    repair = llm.calls[1].messages
    assert [m.role for m in repair] == [Role.user, Role.assistant, Role.user]
    assert repair[1].content == '{"score": "great"'
    assert "no JSON object" in repair[2].content
    assert '"score"' in repair[2].content  # the schema is quoted
    assert llm.calls[1].response_format == llm.calls[0].response_format


async def test_validation_error_is_quoted_in_the_repair() -> None:
    replies = iter(['{"score": "great"}', '{"score": 3}'])
    llm = ScriptedLLM(lambda c: next(replies))
    result = await structured_call(llm, [ChatMessage(role=Role.user, content="rate")], Verdict)
    assert result.repaired and result.value == Verdict(score=3)
    assert "score: Input should be a valid integer" in llm.calls[1].messages[-1].content


async def test_still_invalid_gives_a_failed_judgment_with_the_raw_text() -> None:
    llm = ScriptedLLM(lambda c: "I think A is better." if c.index == 0 else '{"responses": []}')
    [judgment] = await judge_record(record(["a", "b"]), MultiAspectRubric(), llm)
    assert judgment.status == "failed"
    assert judgment.ratings == [] and judgment.margin is None
    assert judgment.raw_output == f'I think A is better.{REPAIR_SEPARATOR}{{"responses": []}}'
    assert judgment.error is not None and "after one repair" in judgment.error
    assert len(llm.calls) == 2


async def test_cut_off_output_is_reported() -> None:
    llm = ScriptedLLM(lambda c: '{"score": ', finish_reason="length")
    result = await structured_call(llm, [ChatMessage(role=Role.user, content="rate")], Verdict)
    assert result.value is None and result.error is not None
    assert "cut off at max_tokens" in result.error


async def test_endpoint_rejecting_response_format_is_asked_without_it() -> None:
    def script(call: Call) -> Reply:
        if call.response_format is not None:
            return LLMError("http://x: HTTP 400: 'response_format' is not supported", 400)
        return '{"score": 2}'

    llm = ScriptedLLM(script)
    result = await structured_call(llm, [ChatMessage(role=Role.user, content="rate")], Verdict)
    assert result.value == Verdict(score=2) and not result.used_response_format
    assert [c.response_format is None for c in llm.calls] == [False, True]
    assert "JSON schema" in llm.calls[1].messages[-1].content  # the schema moved into the prompt


async def test_other_bad_requests_are_not_mistaken_for_a_rejected_format() -> None:
    llm = ScriptedLLM(lambda c: LLMError("HTTP 400: context length exceeded", 400))
    with pytest.raises(LLMError):
        await structured_call(llm, [ChatMessage(role=Role.user, content="rate")], Verdict)
    assert len(llm.calls) == 1


# --- repeats, determinism, errors --------------------------------------------------------------


def test_shuffle_is_deterministic() -> None:
    assert shuffled_order(5, "seed", 3) == shuffled_order(5, "seed", 3)
    by_seed = {tuple(shuffled_order(5, f"seed-{i}", 0)) for i in range(20)}
    assert len(by_seed) > 1
    for repeat in range(12):
        assert sorted(shuffled_order(4, "k", repeat)) == [0, 1, 2, 3]
    # Each block of n repeats shows every response in every position once.
    block = [shuffled_order(3, "k", r) for r in range(3)]
    assert all(sorted(column) == [0, 1, 2] for column in zip(*block, strict=True))


async def test_same_seed_same_orders() -> None:
    rec = record(texts_with_mark(4, 2))
    first = await judge_record(
        rec, MultiAspectRubric(), ScriptedLLM(multi_aspect_marker), repeats=3, seed="x"
    )
    again = await judge_record(
        rec, MultiAspectRubric(), ScriptedLLM(multi_aspect_marker), repeats=3, seed="x"
    )
    assert [j.order for j in first] == [j.order for j in again]
    by_id = await judge_record(
        rec, MultiAspectRubric(), ScriptedLLM(multi_aspect_marker), repeats=3
    )
    assert [j.order for j in by_id] == [shuffled_order(4, rec.record_id, r) for r in range(3)]


async def test_agreement_drops_when_the_judge_flips() -> None:
    def fickle(call: Call) -> str:
        if call.index == 2:  # the third repeat prefers an unmarked response
            flipped = [
                (label, "MARK" if "MARK" not in text else "") for label, text in call.shown()
            ]
            return pairwise_marker(_Shown(flipped))
        return pairwise_marker(call)

    judgments = await judge_record(
        record(texts_with_mark(2, 0)), PairwiseRubric(), ScriptedLLM(fickle), repeats=3
    )
    assert [j.preferred for j in judgments] == [0, 0, 1]
    assert all(j.agreement == pytest.approx(2 / 3) for j in judgments)

    def flip_scores(call: Call) -> str:
        if call.index % 2 == 0:
            return multi_aspect_marker(call)
        # every other repeat rates the marked response worst
        flipped = [(label, "MARK" if "MARK" not in text else "") for label, text in call.shown()]
        return multi_aspect_marker(_Shown(flipped))

    judgments = await judge_record(
        record(texts_with_mark(3, 1)), MultiAspectRubric(), ScriptedLLM(flip_scores), repeats=4
    )
    assert all(j.agreement is not None and j.agreement < 1 for j in judgments)


class _Shown(Call):
    def __init__(self, shown: list[tuple[str, str]]) -> None:
        super().__init__([], None, 0)
        self._shown = shown

    def shown(self) -> list[tuple[str, str]]:
        return self._shown


def test_agreement_ignores_failed_repeats() -> None:
    ok = Judgment(rubric="pairwise", judge_model="m", preferred=1)
    failed = Judgment(rubric="pairwise", judge_model="m", status="failed", error="x")
    assert agreement_of([ok, failed, ok]) == 1.0
    assert agreement_of([failed]) is None


async def test_non_retryable_llm_error_gives_a_failed_judgment() -> None:
    llm = ScriptedLLM(lambda c: LLMError("HTTP 401: bad key", status_code=401))
    judgments = await judge_record(record(["a", "b"]), MultiAspectRubric(), llm, repeats=2)
    assert [j.status for j in judgments] == ["failed", "failed"]
    assert all("HTTP 401: bad key" in (j.error or "") for j in judgments)
    assert all(j.ratings == [] and j.agreement is None for j in judgments)


@pytest.mark.parametrize("status", [503, 429, None])
async def test_retryable_llm_error_propagates(status: int | None) -> None:
    llm = ScriptedLLM(lambda c: LLMError("server busy", status_code=status))
    with pytest.raises(LLMError):
        await judge_record(record(["a", "b"]), MultiAspectRubric(), llm)


async def test_params_and_max_tokens_reach_the_llm() -> None:
    seen: list[dict[str, Any]] = []

    class Recording(ScriptedLLM):
        async def chat(
            self,
            messages: list[ChatMessage],
            *,
            response_format: dict[str, Any] | None = None,
            **params: Any,
        ) -> ChatCompletion:
            seen.append(params)
            return await super().chat(messages, response_format=response_format, **params)

    llm = Recording(pairwise_marker)
    await judge_record(
        record(["a MARK", "b"]), PairwiseRubric(), llm, max_tokens=123, temperature=0
    )
    assert seen == [{"max_tokens": 123, "temperature": 0}]
