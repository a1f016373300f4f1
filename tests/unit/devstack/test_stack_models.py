"""The local stack's two models: one llama.cpp server per model name, each on its own port.

`model` is the default one (component `llm`, LOOPLINE_LLM__*); the other size runs as `llm-2`.
Tests serve both names on the 0.5B weights (`weights`), which must not change the names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.stack import stack_config
from devstack import StackConfig
from devstack.components import stack_components
from devstack.errors import ComponentStatus
from devstack.installer import InstallPaths
from devstack.services import llm_settings, service_env
from devstack.testing import config_for_tests
from shared.flows import PluginRef
from shared.llm.build import build_llm
from shared.plugins import PluginRegistry
from shared.settings import Settings

SMALL, LARGE = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"
runner = CliRunner()


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def served(config: StackConfig) -> list[tuple[str, str, str, int]]:
    return [(s.component, s.model_name, s.weights, s.port) for s in config.llm_servers]


def test_the_default_stack_serves_both_models_each_with_its_own_weights() -> None:
    assert served(StackConfig()) == [("llm", LARGE, "1.5b", 8080), ("llm-2", SMALL, "0.5b", 8081)]
    assert served(StackConfig(model="0.5b")) == [
        ("llm", SMALL, "0.5b", 8080),
        ("llm-2", LARGE, "1.5b", 8081),
    ]
    assert StackConfig().llm_endpoints == {
        LARGE: "http://127.0.0.1:8080/v1",
        SMALL: "http://127.0.0.1:8081/v1",
    }


def test_the_test_stack_serves_the_small_model_by_default_and_both_on_their_weights(
    tmp_path: Path,
) -> None:
    config = config_for_tests(tmp_path, tmp_path / "install")
    assert [(name, weights) for _, name, weights, _ in served(config)] == [
        (SMALL, "0.5b"),
        (LARGE, "1.5b"),
    ]


def test_one_size_of_weights_can_serve_both_names(tmp_path: Path) -> None:
    config = config_for_tests(tmp_path, tmp_path / "install").model_copy(update={"weights": "0.5b"})
    assert [(name, weights) for _, name, weights, _ in served(config)] == [
        (SMALL, "0.5b"),
        (LARGE, "0.5b"),
    ]
    assert config.ports.llm != config.ports.llm_2
    by_name = {c.name: c for c in stack_components(config)}
    small_file = str(InstallPaths(config.installs).model("0.5b"))
    for component, alias in (("llm", SMALL), ("llm-2", LARGE)):
        assert option(by_name[component].command, "--model") == small_file
        assert option(by_name[component].command, "--alias") == alias
    assert "on the 0.5b weights" in by_name["llm-2"].purpose
    assert "weights" not in by_name["llm"].purpose


def test_each_model_gets_its_own_server_component() -> None:
    by_name = {c.name: c for c in stack_components(StackConfig())}
    assert by_name["llm"].url == "http://127.0.0.1:8080/v1"
    assert by_name["llm-2"].url == "http://127.0.0.1:8081/v1"
    assert by_name["llm"].ports == (8080,) and by_name["llm-2"].ports == (8081,)
    assert by_name["llm"].fingerprint != by_name["llm-2"].fingerprint
    assert option(by_name["llm"].command, "--model").endswith(f"{LARGE}.gguf")
    assert option(by_name["llm-2"].command, "--model").endswith(f"{SMALL}.gguf")


def test_services_reach_each_model_by_its_name_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A flow names the model (`model:`); the environment says where it answers."""
    config = config_for_tests(tmp_path, tmp_path / "install")
    env = service_env(config, tmp_path / "flows")
    assert json.loads(env["LOOPLINE_LLM__ENDPOINTS"]) == config.llm_endpoints
    for name, value in env.items():
        if name.startswith("LOOPLINE_"):
            monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.llm == llm_settings(config)
    assert settings.llm.model == SMALL
    registry = PluginRegistry()
    for server in config.llm_servers:
        ref = PluginRef(plugin="openai", options={"model": server.model_name})
        llm = build_llm(ref, settings.llm, registry)
        assert (llm.model, llm.base_url) == (server.model_name, server.base_url)  # type: ignore[attr-defined]
    default = build_llm(None, settings.llm, registry)
    assert default.base_url == config.llm_base_url == config.llm_servers[0].base_url  # type: ignore[attr-defined]


@pytest.fixture()
def in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("LOOPLINE_STACK_DIR", "LOOPLINE_INSTALL_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_stack_up_names_both_models_and_remembers_the_weights(
    monkeypatch: pytest.MonkeyPatch, in_tmp: Path
) -> None:
    seen: list[StackConfig] = []

    def fake_up(config: StackConfig, progress: object) -> list[ComponentStatus]:
        seen.append(config)
        return []

    monkeypatch.setattr("cli.stack.devstack.up", fake_up)
    result = runner.invoke(app, ["stack", "up", "--weights", "0.5b"])
    assert result.exit_code == 0, result.output
    assert seen[0].weights == "0.5b"
    assert f"http://127.0.0.1:8080/v1  model {LARGE} (default" in result.output
    assert f"http://127.0.0.1:8081/v1  model {SMALL}" in result.output
    assert "LOOPLINE_LLM__ENDPOINTS=" in result.output
    assert stack_config(None).weights == "0.5b"  # remembered for status, services up...
    assert runner.invoke(app, ["stack", "up", "--weights", "each"]).exit_code == 0
    assert stack_config(None).weights is None


def test_unknown_weights_are_refused(in_tmp: Path) -> None:
    result = runner.invoke(app, ["stack", "install", "--weights", "7b"])
    assert result.exit_code == 2
    assert "--weights must be 0.5b, 1.5b or each" in result.output
