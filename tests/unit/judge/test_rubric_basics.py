"""What every rubric shares: unknown or malformed options are named at construction, and
each built-in rubric satisfies the Rubric protocol."""

import pytest

from services.judge.rubrics.additive import AdditiveRubric
from services.judge.rubrics.base import Rubric, RubricConfigError
from services.judge.rubrics.custom import CustomRubric
from services.judge.rubrics.multi_aspect import MultiAspectRubric
from services.judge.rubrics.pairwise import PairwiseRubric
from tests.unit.judge.scripted_judge import build_rubric


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
