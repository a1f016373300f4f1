"""Aggregation of annotators' responses: votes, ties, discards, disagreement, one annotator."""

from devstack.sample_records import completed, preference, record, response
from services.argilla_publisher.templates.code_scoring import CodeScoringTemplate
from services.argilla_publisher.templates.curation import CurationTemplate
from services.argilla_publisher.templates.preference import PreferenceTemplate
from services.argilla_publisher.templates.thumbs import ThumbsTemplate
from services.exporter.aggregate import (
    HUMAN_MODEL,
    Questions,
    aggregate_completed,
    aggregate_judged,
    auto_accepts,
)
from shared.events import ResponseStatus
from shared.flows import AutoAccept

PREF = Questions.of(PreferenceTemplate())
THUMBS = Questions.of(ThumbsTemplate())


def test_question_kinds_come_from_the_template() -> None:
    assert PREF.kinds == {
        "rating_response_1": "rating",
        "rating_response_2": "rating",
        "ranking": "ranking",
        "corrected_response": "text",
    }
    assert THUMBS.kinds["verdict"] == "label"
    assert THUMBS.labels["verdict"] == ["good", "bad"]
    assert Questions.of(CodeScoringTemplate()).kinds["criteria_response_1"] == "multi_label"


def test_ratings_mean_and_median_and_ranking_order_the_candidates() -> None:
    rec = record()
    agg = aggregate_completed(
        completed(
            rec,
            response(rec, "ann1", preference(5, 2, best=1)),
            response(rec, "ann2", preference(4, 1, best=1)),
            response(rec, "ann3", preference(3, 3, best=2)),
        ),
        PREF,
    )
    assert agg.submitted == 3 and agg.annotators == ("ann1", "ann2", "ann3")
    assert agg.ratings["rating_response_1"] == (4.0, 4.0)
    assert agg.ratings["rating_response_2"] == (2.0, 2.0)
    assert agg.ranking == (0, 1)
    assert [(c.model, c.score) for c in agg.candidates] == [("model-a", 4.0), ("model-b", 2.0)]
    assert agg.candidates[0].acceptable is True and agg.candidates[1].acceptable is False
    # ann1 and ann3 are 2 points apart on both ratings; first choices differ.
    assert set(agg.disagreement) == {"rating_response_1", "rating_response_2", "ranking"}


def test_label_tie_breaks_to_the_first_listed_label_and_is_flagged() -> None:
    rec = record(responses=(("hi", "m"),))
    agg = aggregate_completed(
        completed(
            rec,
            response(rec, "ann1", {"verdict": "bad"}),
            response(rec, "ann2", {"verdict": "good"}),
        ),
        THUMBS,
    )
    assert agg.labels["verdict"] == "good"  # the thumbs question lists good, then bad
    assert agg.disagreement == ("verdict",)
    majority = aggregate_completed(
        completed(
            rec,
            response(rec, "ann1", {"verdict": "bad"}),
            response(rec, "ann2", {"verdict": "good"}),
            response(rec, "ann3", {"verdict": "bad"}),
        ),
        THUMBS,
    )
    assert majority.labels["verdict"] == "bad"
    assert majority.candidates[0].acceptable is False


def test_discarded_and_drafts_are_excluded_and_counted() -> None:
    rec = record()
    agg = aggregate_completed(
        completed(
            rec,
            response(rec, "ann1", {}, status=ResponseStatus.discarded),
            response(rec, "ann2", preference(1, 5, best=2), status=ResponseStatus.draft),
            response(rec, "ann3", preference(2, 4, best=2)),
        ),
        PREF,
    )
    assert (agg.submitted, agg.discarded, agg.drafts) == (1, 1, 1)
    assert agg.ratings["rating_response_1"] == (2.0, 2.0)  # the draft's 1 is not counted
    assert not agg.excluded and agg.disagreement == ()

    everyone_discarded = aggregate_completed(
        completed(
            rec,
            response(rec, "ann1", {}, status=ResponseStatus.discarded),
            response(rec, "ann2", {}, status=ResponseStatus.discarded),
        ),
        PREF,
    )
    assert everyone_discarded.excluded and everyone_discarded.discarded == 2


def test_one_annotator_corrected_response_comes_first() -> None:
    rec = record()
    agg = aggregate_completed(
        completed(rec, response(rec, "solo", preference(4, 2, corrected="return s[::-1]"))),
        PREF,
    )
    assert agg.disagreement == ()
    first = agg.candidates[0]
    assert (first.model, first.text, first.index) == (HUMAN_MODEL, "return s[::-1]", None)
    assert [c.model for c in agg.candidates[1:]] == ["model-a", "model-b"]


def test_curation_final_texts_and_changed_fields() -> None:
    rec = record(context="", metadata={"category": "open_qa"})
    questions = Questions.of(CurationTemplate())
    final = {
        "final_category": "open_qa",
        "final_instruction": "Reverse a string in Python 3.",
        "final_response": "Use slicing: s[::-1]",
    }
    agg = aggregate_completed(
        completed(
            rec,
            response(rec, "ann1", final, minute=1),
            response(rec, "ann2", {**final, "final_response": "s[::-1]"}, minute=2),
        ),
        questions,
    )
    # A tie between two texts goes to the latest response: ann2's (unchanged) response.
    assert agg.texts["final_response"] == "s[::-1]"
    assert agg.changed == ("instruction",)
    assert "final_response" in agg.disagreement
    assert agg.prompt_text() == "Reverse a string in Python 3."


def test_code_criteria_majority() -> None:
    rec = record()
    questions = Questions.of(CodeScoringTemplate())
    agg = aggregate_completed(
        completed(
            rec,
            response(
                rec,
                "a",
                {"criteria_response_1": ["correct", "idiomatic"], "criteria_response_2": ["none"]},
            ),
            response(
                rec, "b", {"criteria_response_1": ["correct"], "criteria_response_2": ["none"]}
            ),
        ),
        questions,
    )
    assert agg.multi_labels["criteria_response_1"] == ["correct"]  # 1 of 2 is not a majority
    assert [(c.index, c.score) for c in agg.candidates] == [(0, 1.0), (1, 0.0)]
    assert agg.disagreement == ("criteria_response_1",)


def test_auto_accept_rule_and_judge_scores() -> None:
    rec = record(judge_scores=(2.0, 5.0))
    assert auto_accepts(rec, AutoAccept(min_margin=3.0))
    assert not auto_accepts(rec, AutoAccept(min_margin=3.5))
    assert not auto_accepts(rec, AutoAccept(min_repeats=2))
    assert not auto_accepts(record(), AutoAccept())  # never judged
    agg = aggregate_judged(rec)
    assert agg.auto_accepted and not agg.excluded
    assert [(c.model, c.score, c.acceptable) for c in agg.candidates] == [
        ("model-b", 5.0, True),
        ("model-a", 2.0, False),
    ]


def test_thumbs_verdict_is_about_the_response_shown() -> None:
    # The thumbs template shows the app's response, here the second one.
    rec = record(responses=(("generated", "model-a"), ("from the app", "app-model")))
    app = rec.responses[1].model_copy(update={"source": "app"})
    rec = rec.model_copy(update={"responses": [rec.responses[0], app]})
    agg = aggregate_completed(completed(rec, response(rec, "ann1", {"verdict": "bad"})), THUMBS)
    by_model = {c.model: (c.score, c.acceptable) for c in agg.candidates}
    assert by_model == {"app-model": (0.0, False), "model-a": (None, None)}
