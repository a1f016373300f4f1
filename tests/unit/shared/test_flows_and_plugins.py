from collections.abc import Iterable
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from services.ingester.routers.all import RouteAll
from shared.flows import FlowFileError, check_plugins, load_flows, parse_flows
from shared.llm.client import OpenAICompatibleLLM
from shared.plugins import PluginKind, PluginLoadError, PluginRegistry, UnknownPluginError

GOOD = """
flows:
  support:
    route: {plugin: all}
    generate:
      - {plugin: openai, generations: 2, options: {model: m}}
    judge: {plugin: multi-aspect, options: {aspects: [helpfulness]}}
    publish: {plugin: preference}
    export: [{plugin: dpo}, {plugin: sft}]
  bare:
    route: {plugin: all}
"""


def fake_registry(plugins: dict[str, dict[str, str]]) -> PluginRegistry:
    def lister(group: str) -> Iterable[EntryPoint]:
        kind = group.removeprefix("loopline.")
        return [EntryPoint(name, value, group) for name, value in plugins.get(kind, {}).items()]

    return PluginRegistry(lister)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flows.yaml"
    path.write_text(text)
    return path


def test_good_flow_file_loads(tmp_path: Path) -> None:
    flows = load_flows(write(tmp_path, GOOD))
    support = flows.get("support")
    assert support.generate[0].generations == 2
    assert support.generate[0].options == {"model": "m"}
    assert [ref.plugin for ref in support.export.formats] == ["dpo", "sft"]
    assert flows.get("bare").judge is None  # a stage left out is skipped
    keys = [key for key, _, _ in support.plugin_refs()]
    assert keys == [
        "route",
        "judge",
        "publish",
        "generate.0",
        "export.formats.0",
        "export.formats.1",
    ]


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "flows:\n  support:\n    judge: {plugin: x, optoins: {}}\n")
    with pytest.raises(FlowFileError) as caught:
        load_flows(path)
    message = str(caught.value)
    assert str(path) in message
    assert "flows.support.judge.optoins: unknown key" in message


def test_wrong_type_and_missing_key(tmp_path: Path) -> None:
    path = write(tmp_path, "flows:\n  a:\n    generate: [{generations: zero}]\n")
    with pytest.raises(FlowFileError) as caught:
        load_flows(path)
    assert "flows.a.generate.0.plugin: required key is missing" in str(caught.value)
    assert "flows.a.generate.0.generations" in str(caught.value)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(FlowFileError, match="cannot read flow file"):
        load_flows(tmp_path / "missing.yaml")
    with pytest.raises(FlowFileError, match="not valid YAML"):
        load_flows(write(tmp_path, "flows: [unclosed"))
    with pytest.raises(FlowFileError, match=r"flows: .*at least 1"):
        parse_flows({"flows": {}}, "inline")


def test_unknown_unknown_flow_name() -> None:
    flows = parse_flows({"flows": {"a": {}}}, "inline")
    with pytest.raises(KeyError, match="unknown flow 'b'; defined: a"):
        flows.get("b")


def test_unknown_plugin_lists_what_is_available(tmp_path: Path) -> None:
    registry = fake_registry(
        {
            "routers": {"all": "services.ingester.routers.all:RouteAll"},
            "llms": {"openai": "shared.llm.client:OpenAICompatibleLLM"},
            "rubrics": {"additive": "x:A", "pairwise": "x:P"},
            "templates": {"preference": "x:T"},
            "formats": {"dpo": "x:D"},
        }
    )
    flows = load_flows(write(tmp_path, GOOD))
    with pytest.raises(FlowFileError) as caught:
        check_plugins(flows, registry, "flows.yaml")
    message = str(caught.value)
    assert (
        "flows.support.judge.plugin: unknown rubrics plugin 'multi-aspect'; "
        "available: additive, pairwise" in message
    )
    assert (
        "flows.support.export.formats.1.plugin: unknown formats plugin 'sft'; available: dpo"
        in message
    )
    assert "route" not in message.replace("routers", "")


def test_registry_loads_and_reports() -> None:
    registry = fake_registry({"formats": {"broken": "no_such_module_xyz:Sink"}})
    assert registry.names(PluginKind.formats) == ["broken"]
    with pytest.raises(PluginLoadError, match="no_such_module_xyz"):
        registry.load(PluginKind.formats, "broken")
    with pytest.raises(UnknownPluginError, match="available: none installed"):
        registry.load(PluginKind.rubrics, "anything")


def test_builtins_register_through_real_entry_points() -> None:
    registry = PluginRegistry()  # the installed package's own entry points
    assert registry.load(PluginKind.llms, "openai") is OpenAICompatibleLLM
    assert registry.load(PluginKind.routers, "all") is RouteAll
    for kind in PluginKind:
        assert registry.names(kind) == sorted(registry.names(kind))


def test_repository_flow_file_is_valid() -> None:
    root = Path(__file__).resolve().parents[3]
    flows = load_flows(root / "flows")
    check_plugins(flows, PluginRegistry(), "flows")
    assert "default" in flows.flows


def test_a_flows_folder_holds_one_flow_per_file_named_after_it(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    (folder / "samples").mkdir(parents=True)
    (folder / "alpha.yaml").write_text("description: a\nsample: {path: samples/alpha.jsonl}\n")
    (folder / "samples" / "alpha.jsonl").write_text('{"instruction": "hi"}\n')
    (folder / "beta.yml").write_text("route: {plugin: all}\n")
    (folder / "notes.txt").write_text("not a flow")
    flows = load_flows(folder)
    assert sorted(flows.flows) == ["alpha", "beta"]
    assert flows.flows["alpha"].sample is not None
    assert flows.flows["alpha"].sample.path == str((folder / "samples" / "alpha.jsonl").resolve())


def test_a_bad_file_in_a_flows_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("route: {plugin: all}\n")
    (tmp_path / "bad.yaml").write_text("roote: {plugin: all}\n")
    with pytest.raises(FlowFileError, match=r"bad\.yaml: flows\.bad\.roote: unknown key"):
        load_flows(tmp_path)
    (tmp_path / "bad.yaml").write_text("flows: {x: {}}\n")
    with pytest.raises(FlowFileError, match="is one flow"):
        load_flows(tmp_path)


def test_an_empty_flows_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FlowFileError, match="at least one"):
        load_flows(tmp_path)


def test_a_missing_sample_is_named(tmp_path: Path) -> None:
    (tmp_path / "alpha.yaml").write_text("sample: {path: samples/missing.jsonl}\n")
    with pytest.raises(FlowFileError, match=r"alpha\.yaml: sample\.path: no such file"):
        load_flows(tmp_path)
