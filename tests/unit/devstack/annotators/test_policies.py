"""The `agree` and `random` policies: an answer for every question role, seeded rates."""

from __future__ import annotations

import pytest

from devstack.annotators.agree import AgreePolicy
from devstack.annotators.answers import EDIT_SENTENCE
from devstack.annotators.base import Action, Answer, Task, check_answer
from devstack.annotators.random_answers import RandomPolicy
from devstack.annotators.tasks import offline_task
from shared.events import CandidateResponse, Judgment, Rating
from shared.plugins import PluginKind, PluginOptionsError, PluginRegistry
from tests.unit.devstack.annotators.records import checklist, rated, record, template

CRITERIA = ["correct", "edge_cases", "idiomatic", "explained"]


def answer(policy: AgreePolicy | RandomPolicy, task: Task) -> Answer:
    given = policy.answer(task)
    check_answer(given, task.questions, task.required)
    return given


def test_agree_takes_the_judges_ratings_and_ranking() -> None:
    task = offline_task(template("preference"), record(judgments=(rated(2, 5),)))
    given = answer(AgreePolicy(), task)
    assert given.action == Action.submit
    assert given.values["rating_response_1"] == 2
    assert given.values["rating_response_2"] == 5
    assert given.values["ranking"] == ["response_2", "response_1"]
    assert "corrected_response" not in given.values  # optional: left empty


def test_agree_without_suggestions_answers_plausibly_and_coherently() -> None:
    task = offline_task(template("preference", responses=3), record(responses=("a", "b", "c")))
    assert task.suggestions == {}
    given = answer(AgreePolicy(), task).values
    assert given["ranking"] == ["response_1", "response_2", "response_3"]
    ratings = [given[f"rating_response_{i}"] for i in (1, 2, 3)]
    assert ratings == sorted(ratings, reverse=True) and ratings[0] == 5 and ratings[-1] == 2


def test_agree_takes_the_judges_criteria_per_response() -> None:
    judged = record(judgments=(checklist(["correct", "idiomatic"], []),))
    given = answer(AgreePolicy(), offline_task(template("code-scoring"), judged)).values
    assert given["criteria_response_1"] == ["correct", "idiomatic"]
    assert given["criteria_response_2"] == ["none"]


def test_agree_without_a_checklist_gives_the_first_response_every_criterion() -> None:
    given = answer(AgreePolicy(), offline_task(template("code-scoring"), record())).values
    assert given["criteria_response_1"] == CRITERIA
    assert given["criteria_response_2"] == ["none"]


def test_disagreeing_flips_the_preference_the_criteria_and_the_verdict() -> None:
    always = AgreePolicy(disagree_rate=1.0)
    preference = answer(
        always, offline_task(template("preference"), record(judgments=(rated(2, 5),)))
    )
    assert preference.values["ranking"] == ["response_1", "response_2"]
    assert preference.values["rating_response_1"] > preference.values["rating_response_2"]
    judged = record(judgments=(checklist(["correct", "idiomatic"], []),))
    criteria = answer(always, offline_task(template("code-scoring"), judged)).values
    assert criteria["criteria_response_1"] == ["edge_cases", "explained"]
    assert criteria["criteria_response_2"] == CRITERIA
    thumbs = offline_task(template("thumbs"), record(responses=("x",), judgments=()))
    assert answer(AgreePolicy(), thumbs).values["verdict"] == "good"
    assert answer(always, thumbs).values["verdict"] == "bad"


def test_agree_takes_a_thumbs_suggestion() -> None:
    low = Judgment(
        rubric="multi-aspect",
        judge_model="judge-model",
        ratings=[[Rating(aspect="overall", score=1)]],
    )
    task = offline_task(template("thumbs"), record(responses=("x",), judgments=(low,)))
    assert task.suggestions == {"verdict": "bad"}
    assert answer(AgreePolicy(), task).values["verdict"] == "bad"


def test_curation_keeps_the_originals_and_edits_the_response_at_the_edit_rate() -> None:
    task = offline_task(template("curation"), record(responses=("The answer.",)))
    kept = answer(AgreePolicy(edit_rate=0.0), task).values
    assert kept == {
        "final_category": "coding",
        "final_instruction": "Write a function add(a, b) returning the sum.",
        "final_context": "Python 3.",
        "final_response": "The answer.",
    }
    edited = answer(AgreePolicy(edit_rate=1.0), task).values
    assert edited["final_response"] == f"The answer.\n\n{EDIT_SENTENCE}"
    assert edited["final_instruction"] == kept["final_instruction"]


def test_an_optional_part_without_an_original_stays_empty() -> None:
    bare = record(responses=("The answer.",)).model_copy(update={"context": None})
    given = answer(AgreePolicy(), offline_task(template("curation"), bare)).values
    assert "final_context" not in given


def test_written_responses_take_the_draft_else_the_best_response_else_the_prompt() -> None:
    sft = template("sft-demonstration")
    draft = CandidateResponse(text="Draft from the app.", model="app-model", source="app")
    app = record().model_copy(update={"responses": [draft]})
    assert answer(AgreePolicy(edit_rate=0), offline_task(sft, app)).values == {
        "ideal_response": "Draft from the app."
    }
    edited = answer(AgreePolicy(edit_rate=1), offline_task(sft, app)).values["ideal_response"]
    assert edited.endswith(EDIT_SENTENCE)
    bare = answer(AgreePolicy(edit_rate=0), offline_task(sft, record(responses=())))
    assert bare.values["ideal_response"].startswith("A careful answer to: Write a function")


def test_an_optional_correction_is_written_at_the_correct_rate() -> None:
    task = offline_task(template("preference"), record(judgments=(rated(2, 5),)))
    corrected = answer(AgreePolicy(correct_rate=1.0), task).values["corrected_response"]
    assert corrected == f"Second answer.\n\n{EDIT_SENTENCE}"


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_discard_rate_is_the_share_of_records_discarded(rate: float) -> None:
    policy = AgreePolicy(discard_rate=rate, seed=7)
    preference = template("preference")
    actions = [
        policy.answer(offline_task(preference, record(f"r{i}"), "bot-1")).action for i in range(300)
    ]
    share = actions.count(Action.discard) / len(actions)
    assert abs(share - rate) < 0.07


def test_answers_are_seeded_per_annotator_and_record() -> None:
    policy = RandomPolicy(seed=3)
    preference = template("preference", responses=4)
    four = ("a", "b", "c", "d")
    tasks = [offline_task(preference, record(f"r{i}", four), "bot-1") for i in range(20)]
    first = [policy.answer(task) for task in tasks]
    assert [policy.answer(task) for task in reversed(tasks)] == list(reversed(first))
    other = [offline_task(preference, record(f"r{i}", four), "bot-2") for i in range(20)]
    assert [policy.answer(task) for task in other] != first
    assert [RandomPolicy(seed=4).answer(task) for task in tasks] != first


@pytest.mark.parametrize(
    ("name", "responses"),
    [
        ("preference", 2),
        ("code-scoring", 2),
        ("thumbs", 1),
        ("curation", 1),
        ("sft-demonstration", 0),
    ],
)
def test_random_answers_are_valid_and_varied(name: str, responses: int) -> None:
    shown = template(name)
    texts = ("First answer.", "Second answer.")[:responses]
    answers = [
        answer(RandomPolicy(), offline_task(shown, record(f"r{i}", texts))) for i in range(40)
    ]
    assert all(a.action == Action.submit for a in answers)
    if name in ("preference", "code-scoring", "thumbs"):
        assert len({repr(sorted(a.values.items())) for a in answers}) > 1


@pytest.mark.parametrize(
    ("policy", "options", "problem"),
    [
        ("agree", {"disagree_rate": 1.5}, "disagree_rate must be between 0 and 1"),
        ("agree", {"seed": "x"}, "seed must be an integer"),
        ("random", {"discard_rate": -0.1}, "discard_rate must be between 0 and 1"),
        ("run-tests", {"timeout_s": 0}, "timeout_s > 0"),
    ],
)
def test_bad_option_values_are_refused_naming_the_policy(
    policy: str, options: dict[str, object], problem: str
) -> None:
    with pytest.raises(PluginOptionsError, match=problem) as caught:
        PluginRegistry().build(PluginKind.annotators, policy, options)
    assert policy in str(caught.value)
