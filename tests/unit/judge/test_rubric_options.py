"""Rubric options from a flow: typos and bad values fail at check time, naming what is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.judge.rubrics.additive import AdditiveRubric
from shared.flows import FlowFileError, check_plugins, load_flows
from shared.plugins import PluginKind, PluginOptionsError, PluginRegistry


@pytest.mark.parametrize("typo", ["criterias", "criterion"])
def test_a_typo_in_rubric_options_is_refused_with_the_accepted_list(typo: str) -> None:
    with pytest.raises(PluginOptionsError) as caught:
        PluginRegistry().build(PluginKind.rubrics, "additive", {typo: ["correct: it works"]})
    message = str(caught.value)
    assert f"rubrics plugin 'additive': unknown option(s) ['{typo}']" in message
    assert message.endswith("accepted: criteria, scale_name")


def test_the_options_are_the_constructor_parameters() -> None:
    assert AdditiveRubric.accepted_options() == ["criteria", "scale_name"]
    registry = PluginRegistry()
    assert registry.load(PluginKind.rubrics, "pairwise").accepted_options() == []
    rubric = registry.build(PluginKind.rubrics, "additive", {"criteria": ["cites: cites"]})
    assert isinstance(rubric, AdditiveRubric) and rubric.criteria == [("cites", "cites")]


def test_a_bad_value_is_refused_by_the_rubric_with_its_reason() -> None:
    with pytest.raises(PluginOptionsError, match="rationale must be one of"):
        PluginRegistry().build(PluginKind.rubrics, "multi-aspect", {"rationale": "none"})
    with pytest.raises(PluginOptionsError, match="prompt` \\(a template\\) is required"):
        PluginRegistry().build(PluginKind.rubrics, "custom", {})


def test_check_plugins_names_the_file_the_key_and_the_accepted_options(tmp_path: Path) -> None:
    path = tmp_path / "flows.yaml"
    path.write_text(
        "flows:\n"
        "  code:\n"
        "    judge:\n"
        "      plugin: additive\n"
        "      options: {criterias: ['correct: it works']}\n"
        "      llm: {plugin: openai, options: {temprature: 0.2}}\n"
    )
    with pytest.raises(FlowFileError) as caught:
        check_plugins(load_flows(path), PluginRegistry(), str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert (
        "flows.code.judge.options: rubrics plugin 'additive': unknown option(s) ['criterias']; "
        "accepted: criteria, scale_name" in message
    )
    llm_problem = message.split("; flows.code.judge.llm.options: ", 1)[1]
    assert llm_problem.startswith("llms plugin 'openai': unknown option(s) ['temprature']")
    assert "temperature" in llm_problem.split("accepted: ", 1)[1]
