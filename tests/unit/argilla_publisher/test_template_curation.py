"""The curation template: people correct a dataset row's category, instruction, context and
response, each prefilled with the original; missing parts are left out."""

from __future__ import annotations

from services.argilla_publisher.templates.curation import CurationTemplate
from tests.unit.argilla_publisher.template_records import make, questions, suggestions


def test_curation_settings() -> None:
    settings = CurationTemplate().settings(1)
    assert [(f.name, f.required) for f in settings.fields] == [
        ("category", False),
        ("instruction", True),
        ("context", False),
        ("response", False),
    ]
    assert questions(settings) == {
        "final_category": ("text", True),
        "final_instruction": ("text", True),
        "final_context": ("text", False),
        "final_response": ("text", True),
    }


def test_curation_prefills_the_originals() -> None:
    record = make(
        ["Use reversed() or slicing.", "other"],
        context="Python 3",
        metadata={"category": "open_qa"},
    )
    out = CurationTemplate().to_record(record)
    assert dict(out.fields) == {
        "category": "open_qa",
        "instruction": "How do I reverse a list in Python?",
        "context": "Python 3",
        "response": "Use reversed() or slicing.",
    }
    assert suggestions(out) == {
        "final_category": ("open_qa", None, "original"),
        "final_instruction": ("How do I reverse a list in Python?", None, "original"),
        "final_context": ("Python 3", None, "original"),
        "final_response": ("Use reversed() or slicing.", None, "original"),
    }


def test_curation_leaves_out_what_is_missing() -> None:
    record = make([], instruction=None, messages=[{"role": "user", "content": "Hi there"}])
    out = CurationTemplate().to_record(record)
    assert dict(out.fields) == {"instruction": "[user]\nHi there"}
    assert set(suggestions(out)) == {"final_instruction"}
