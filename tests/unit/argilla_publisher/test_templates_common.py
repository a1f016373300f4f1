"""What every Argilla template shares, without a server: entry points, common settings and
metadata, options and guidelines checked, the full record kept in the metadata, prompt
rendering, and suggestion scores and agents as Argilla accepts them."""

from __future__ import annotations

import tomllib
from importlib import import_module
from pathlib import Path
from typing import Any

import argilla as rg
import pytest

from services.argilla_publisher.dataset_settings import settings_shape
from services.argilla_publisher.templates import TEMPLATES
from services.argilla_publisher.templates.base import (
    DEFAULT_SOURCE,
    MAX_GUIDELINES_CHARS,
    default_guidelines,
    prompt_markdown,
)
from services.argilla_publisher.templates.preference import PreferenceTemplate
from services.argilla_publisher.templates.thumbs import ThumbsTemplate
from shared.argilla_metadata import RECORD_METADATA_KEY, record_from_metadata
from shared.events import Record
from shared.plugins import PluginKind, PluginOptionsError, PluginRegistry
from shared.verdict import to_five_point
from tests.unit.argilla_publisher.template_records import make, rated, suggestions

REPO = Path(__file__).resolve().parents[3]


def test_entry_points_in_pyproject_name_these_classes() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    entry_points = pyproject["project"]["entry-points"]["loopline.templates"]
    assert set(entry_points) == set(TEMPLATES)
    for name, target in entry_points.items():
        module, attribute = target.split(":")
        cls = getattr(import_module(module), attribute)
        assert cls is TEMPLATES[name] and cls.name == name


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_has_common_settings(name: str) -> None:
    template = TEMPLATES[name]()
    settings = template.settings(3)
    assert settings.distribution.min_submitted == 3
    assert settings.allow_extra_metadata is True
    assert settings_shape(settings)["metadata properties"] == {
        "flow": {"type": "terms"},
        "source": {"type": "terms"},
        "models": {"type": "terms"},
        "tags": {"type": "terms"},
        "judge_margin": {"type": "float"},
    }
    assert settings.guidelines.startswith("# ") and len(settings.guidelines) < MAX_GUIDELINES_CHARS
    assert any(q.required for q in settings.questions)  # Argilla refuses to publish otherwise
    custom = TEMPLATES[name](guidelines="Just **do** it.")
    assert custom.settings(1).guidelines == "Just **do** it."


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_unknown_options_are_named(name: str) -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour', 'size'\]") as caught:
        PluginRegistry().build(PluginKind.templates, name, {"colour": "red", "size": 3})
    assert isinstance(caught.value, PluginOptionsError)
    assert "guidelines" in str(caught.value)  # the accepted options are listed


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_default_guidelines_load_from_the_package(name: str) -> None:
    shipped = default_guidelines(name)
    assert shipped.startswith("# ") and shipped.endswith("\n")
    guidelines = TEMPLATES[name]().guidelines
    assert "{criteria}" not in guidelines
    # The shipped text is the default, whole (code-scoring fills in its criteria).
    head, _, tail = shipped.partition("{criteria}")
    assert guidelines.startswith(head) and guidelines.endswith(tail)


@pytest.mark.parametrize("bad", ["", "   ", 42, "x" * (MAX_GUIDELINES_CHARS + 1)])
def test_bad_guidelines_are_refused(bad: Any) -> None:
    with pytest.raises(PluginOptionsError, match="guidelines"):
        ThumbsTemplate(guidelines=bad)


def test_min_submitted_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PreferenceTemplate().settings(0)


def test_building_settings_needs_no_server_and_sets_no_default_client() -> None:
    before = rg.Argilla._default_client
    for template in TEMPLATES.values():
        template().settings(1)
    assert rg.Argilla._default_client is before


def test_metadata_and_full_record_round_trip() -> None:
    record = make(
        judgments=[
            {"rubric": "x", "judge_model": "j", "status": "failed", "margin": 9.0},
            rated(2, 5),
        ],
        tags=["prod", "eu"],
        metadata={"source": "import", "category": "coding"},
        responses=[
            {"text": "a", "model": "m1"},
            {"text": "b", "model": "m1"},
        ],
    )
    out = PreferenceTemplate().to_record(record)
    assert out.id == "rec-1"
    metadata = dict(out.metadata)
    assert metadata["flow"] == "support"
    assert metadata["source"] == "import"
    assert metadata["models"] == ["m1"]  # each model once
    assert metadata["tags"] == ["prod", "eu"]
    assert metadata["judge_margin"] == 3.0 and isinstance(metadata["judge_margin"], float)
    assert record_from_metadata(metadata) == record
    assert Record.model_validate_json(metadata[RECORD_METADATA_KEY]) == record


def test_metadata_defaults() -> None:
    metadata = dict(PreferenceTemplate().to_record(make()).metadata)
    assert metadata["source"] == DEFAULT_SOURCE
    assert metadata["tags"] == []
    assert "judge_margin" not in metadata  # no judgment: nothing Argilla would have to index
    with pytest.raises(KeyError, match=RECORD_METADATA_KEY):
        record_from_metadata({"flow": "x"})


def test_prompt_rendering() -> None:
    assert prompt_markdown(make(context="Lists are mutable.")) == (
        "How do I reverse a list in Python?\n\n---\n\n**Context**\n\nLists are mutable."
    )
    chat = make(
        instruction=None,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Reverse [1, 2]"},
        ],
    )
    assert prompt_markdown(chat) == (
        "**System**\n\nBe brief.\n\n**User**\n\nHi\n\n**Assistant**\n\nHello!\n\n"
        "**User**\n\nReverse [1, 2]"
    )


def test_five_point_rounding() -> None:
    assert [to_five_point(s) for s in (0, 1.4, 2.5, 3.5, 4.49, 7)] == [1, 1, 3, 4, 4, 5]


def test_agent_is_reduced_to_what_argilla_accepts() -> None:
    record = make(judgments=[rated(4, 2, judge="org/model@v1+q4 (local)")])
    agents = {agent for _, _, agent in suggestions(PreferenceTemplate().to_record(record)).values()}
    assert agents == {"org/model-v1-q4 -local-"}
