"""Choosing how columns map to record fields: presets detected from the columns, `--map`
overriding and extending them, and bad maps or unknown presets refused with what to do."""

from __future__ import annotations

import pytest

from services.ingester.sources.mapping import FIELDS, PRESETS, Mapping
from shared.events import Record


def test_presets_map_to_known_fields() -> None:
    assert {"dolly", "orca_dpo", "prompt_completion", "messages", "sharegpt"} <= set(PRESETS)
    for preset in PRESETS.values():
        assert set(preset.values()) <= set(FIELDS)


@pytest.mark.parametrize(
    ("columns", "preset"),
    [
        (["instruction", "context", "response", "category"], "dolly"),
        (["system", "question", "chosen", "rejected", "id"], "orca_dpo"),
        (["prompt", "completion"], "prompt_completion"),
        (["messages"], "messages"),
        (["id", "conversations"], "sharegpt"),
        (["instruction", "input", "output"], "alpaca"),
        # ultrafeedback_binarized: prompt/chosen/rejected beats the 1-column `messages`
        (["prompt", "prompt_id", "chosen", "rejected", "messages"], "dpo"),
    ],
)
def test_preset_is_detected_from_columns(columns: list[str], preset: str) -> None:
    mapping = Mapping.from_options(None, [], columns)
    assert mapping.preset == preset
    assert mapping.fields == {f: c for c, f in PRESETS[preset].items()}


def test_detection_failures_explain_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"no preset fits the columns a, b.*--map"):
        Mapping.from_options(None, [], ["a", "b"])
    with pytest.raises(ValueError, match="without the source's columns"):
        Mapping.from_options(None, [], None)


def test_maps_override_and_extend_the_preset() -> None:
    mapping = Mapping.from_options(
        "dolly", ["output=response", "context=metadata.background", "uid=record_id"], None
    )
    assert mapping.fields == {
        "instruction": "instruction",
        "category": "category",
        "response": "output",  # replaces the preset's response column
        "metadata.background": "context",  # the preset's context column goes elsewhere
        "record_id": "uid",
    }
    raw = mapping.to_record_input(
        {"instruction": "i", "context": "bg", "response": "old", "output": "new", "uid": "u1"},
        "f",
        "s",
    )
    record = Record.model_validate(raw)
    assert [r.text for r in record.responses] == ["new"]
    assert record.context is None and record.metadata["background"] == "bg"


def test_maps_alone_skip_detection() -> None:
    mapping = Mapping.from_options(None, ["text=instruction"], ["text", "messages"])
    assert mapping.preset is None and mapping.fields == {"instruction": "text"}


@pytest.mark.parametrize(
    ("maps", "message"),
    [
        (["instruction"], r"not `column=field`.*valid fields: record_id, instruction"),
        (["=instruction"], "not `column=field`"),
        (["q=question"], r"unknown field 'question'.*metadata\.<name>"),
        (["q=metadata."], "unknown field 'metadata.'"),
        (["a=instruction", "b=instruction"], "mapped from two columns"),
    ],
)
def test_bad_maps_are_value_errors(maps: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Mapping.from_options(None, maps, None)


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ValueError, match="unknown preset 'alpacca'; presets: dolly"):
        Mapping.from_options("alpacca", [], None)
    assert Mapping.from_options("orca-dpo", [], None).preset == "orca_dpo"
