"""Arize Phoenix as a part of the local stack: installed on demand into its own virtualenv,
started by our launcher (HTTP only, on loopback, telemetry and assistant off), and the
services' traces pointed at it."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.app import app
from devstack import StackConfig, StackPorts
from devstack import phoenix_server as launcher
from devstack.component import Component, process_env
from devstack.components import INSTALLED_BY, PHOENIX_SCRIPT, stack_components
from devstack.errors import ComponentStatus
from devstack.installer import PHOENIX_REQUIREMENTS, InstallPaths, _Installer, install
from devstack.lifecycle import _with_dependencies
from devstack.services import service_env
from devstack.testing import config_for_tests
from shared.settings import Settings
from shared.telemetry import build_tracer_provider

runner = CliRunner()


def phoenix_of(config: StackConfig) -> Component:
    return {c.name: c for c in stack_components(config)}["phoenix"]


def test_phoenix_listens_on_loopback_on_its_own_port() -> None:
    config = StackConfig()
    phoenix = phoenix_of(config)
    assert StackPorts().phoenix == 6006
    assert phoenix.ports == (6006,)
    assert phoenix.url == config.phoenix_url == "http://127.0.0.1:6006"
    assert phoenix.env["PHOENIX_HOST"] == "127.0.0.1"
    assert phoenix.env["PHOENIX_PORT"] == "6006"
    others = [port for c in stack_components(config) if c.name != "phoenix" for port in c.ports]
    assert 6006 not in others


def test_phoenix_runs_our_launcher_with_the_phoenix_virtualenv(tmp_path: Path) -> None:
    config = StackConfig(state_dir=tmp_path / "state", install_dir=tmp_path / "install")
    phoenix = phoenix_of(config)
    paths = InstallPaths(config.installs)
    assert phoenix.command == [str(paths.phoenix_python), str(PHOENIX_SCRIPT)]
    assert paths.phoenix_python == config.installs / "venvs" / "phoenix" / "bin" / "python"
    assert PHOENIX_SCRIPT.name == "phoenix_server.py" and PHOENIX_SCRIPT.is_file()
    assert phoenix.after == ()  # it needs no other part


def test_phoenix_keeps_its_data_under_the_state_dir_with_telemetry_and_assistant_off(
    tmp_path: Path,
) -> None:
    config = StackConfig(state_dir=tmp_path / "state")
    env = phoenix_of(config).env
    data = (tmp_path / "state" / "data" / "phoenix").resolve()
    assert env["PHOENIX_WORKING_DIR"] == str(data)
    assert phoenix_of(config).cwd == data
    assert env["PHOENIX_TELEMETRY_ENABLED"] == "false"
    assert env["PHOENIX_ALLOW_EXTERNAL_RESOURCES"] == "false"
    assert env["PHOENIX_DISABLE_AGENT_ASSISTANT"] == "true"
    assert env["PHOENIX_AGENTS_DISABLE_BASH"] == "true"


def test_the_callers_phoenix_settings_do_not_reach_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A PHOENIX_GRPC_PORT or PHOENIX_ENABLE_PROMETHEUS in the shell would open more ports."""
    monkeypatch.setenv("PHOENIX_ENABLE_PROMETHEUS", "true")
    monkeypatch.setenv("PHOENIX_HOST", "0.0.0.0")
    env = process_env(phoenix_of(StackConfig()).env)
    assert "PHOENIX_ENABLE_PROMETHEUS" not in env
    assert env["PHOENIX_HOST"] == "127.0.0.1"


def test_the_test_stack_runs_phoenix_on_a_free_port(tmp_path: Path) -> None:
    config = config_for_tests(tmp_path, tmp_path / "install")
    assert config.ports.phoenix != 6006
    assert phoenix_of(config).ports == (config.ports.phoenix,)


def test_phoenix_is_installed_only_when_a_started_part_needs_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = StackConfig(state_dir=tmp_path / "state", install_dir=tmp_path / "install")
    venvs: list[tuple[str, Path, tuple[str, ...]]] = []

    def fake_venv(self: _Installer, component: str, venv: Path, requirements: Any) -> None:
        venvs.append((component, venv, tuple(requirements)))

    monkeypatch.setattr(_Installer, "venv", fake_venv)
    monkeypatch.setattr(_Installer, "binary", lambda *args: None)
    monkeypatch.setattr(_Installer, "model", lambda *args: None)
    monkeypatch.setattr("devstack.installer.install_viewer", lambda *args: False)
    components = stack_components(config)
    assert INSTALLED_BY["phoenix"] == "phoenix"
    needed = {INSTALLED_BY[c.name] for c in _with_dependencies(components, ["kafka", "argilla"])}
    install(config, components=needed)
    assert [component for component, _, _ in venvs] == ["argilla"]
    install(config, components={INSTALLED_BY[c.name] for c in components})
    assert venvs[-1] == ("phoenix", config.installs / "venvs" / "phoenix", PHOENIX_REQUIREMENTS)
    assert PHOENIX_REQUIREMENTS == ("arize-phoenix==20.26.1",)
    venvs.clear()
    install(config)  # everything, as `loopline stack install` does
    assert "phoenix" in [component for component, _, _ in venvs]


# The launcher, against stand-ins for the two Phoenix modules it touches.


class FakeGrpcServer:
    def __init__(self, enqueue_span: Any, port: int, disabled: bool = False, **kwargs: Any):
        self.port = port
        self.disabled = disabled
        constructed.append(self)


constructed: list[FakeGrpcServer] = []
PHOENIX_MODULES = ("phoenix", "phoenix.server", "phoenix.server.app", "phoenix.server.grpc_server")


@pytest.fixture()
def fake_phoenix(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """`phoenix.server.app` building its receiver from `phoenix.server.grpc_server`."""
    modules = {name: types.ModuleType(name) for name in PHOENIX_MODULES}
    modules["phoenix.server.grpc_server"].GrpcServer = FakeGrpcServer  # type: ignore[attr-defined]
    modules["phoenix.server.app"].GrpcServer = FakeGrpcServer  # type: ignore[attr-defined]
    modules["phoenix"].server = modules["phoenix.server"]  # type: ignore[attr-defined]
    modules["phoenix.server"].app = modules["phoenix.server.app"]  # type: ignore[attr-defined]
    modules["phoenix.server"].grpc_server = modules["phoenix.server.grpc_server"]  # type: ignore[attr-defined]
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    constructed.clear()
    yield modules["phoenix.server.app"]


def test_the_launcher_disables_every_grpc_receiver_phoenix_builds(
    fake_phoenix: types.ModuleType,
) -> None:
    launcher.disable_grpc()
    # As phoenix.server.app does, whatever it passes for `disabled` (read-only mode only).
    fake_phoenix.GrpcServer(lambda span, project: None, port=4317, disabled=False)
    sys.modules["phoenix.server.grpc_server"].GrpcServer(None, port=4317)
    assert [server.disabled for server in constructed] == [True, True]


def test_the_launcher_refuses_to_start_if_it_cannot_disable_grpc(
    fake_phoenix: types.ModuleType,
) -> None:
    del fake_phoenix.GrpcServer  # a Phoenix that builds its receiver elsewhere
    with pytest.raises(RuntimeError, match="cannot disable gRPC"):
        launcher.disable_grpc()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.5", "example.com"])
def test_the_launcher_refuses_a_host_other_than_loopback(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv("PHOENIX_HOST", host)
    monkeypatch.setattr(launcher, "disable_grpc", lambda: pytest.fail("must not start"))
    assert launcher.main() == 2


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_hosts(host: str) -> None:
    assert launcher.loopback(host)


# The services' traces.


def test_the_services_export_to_phoenix_under_the_loopline_project(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("LOOPLINE_TELEMETRY__OTLP_ENDPOINT", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    config = config_for_tests(tmp_path, tmp_path / "install")
    env = service_env(config, tmp_path / "flows")
    assert env["LOOPLINE_TELEMETRY__OTLP_ENDPOINT"] == config.phoenix_url
    for name, value in env.items():
        if name.startswith(("LOOPLINE_", "OTEL_")):
            monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.telemetry.otlp_endpoint == config.phoenix_url
    provider = build_tracer_provider("judge", settings.telemetry)
    try:
        attributes = provider.resource.attributes
        assert attributes["openinference.project.name"] == "loopline"
        assert attributes["service.name"] == "loopline-judge"
    finally:
        provider.shutdown()


def test_the_callers_endpoint_and_project_win(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = config_for_tests(tmp_path, tmp_path / "install")
    monkeypatch.setenv("LOOPLINE_TELEMETRY__OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=dev")
    env = service_env(config, tmp_path / "flows")
    assert env["LOOPLINE_TELEMETRY__OTLP_ENDPOINT"] == "http://collector:4318"
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == (
        "deployment.environment=dev,openinference.project.name=loopline"
    )
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "openinference.project.name=mine")
    env = service_env(config, tmp_path / "flows")
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == "openinference.project.name=mine"


def test_stack_status_shows_phoenix_and_where_to_export(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("LOOPLINE_STACK_DIR", "LOOPLINE_INSTALL_DIR"):
        monkeypatch.delenv(name, raising=False)
    phoenix = ComponentStatus(
        name="phoenix", healthy=True, url="http://127.0.0.1:6006", pid=42, detail="running"
    )
    monkeypatch.setattr("cli.stack.devstack.status", lambda config: [phoenix])
    result = runner.invoke(app, ["stack", "status"])
    assert result.exit_code == 0, result.output
    assert "phoenix" in result.output and "http://127.0.0.1:6006" in result.output
    assert "Traces: http://127.0.0.1:6006" in result.output
    assert "LOOPLINE_TELEMETRY__OTLP_ENDPOINT=http://127.0.0.1:6006" in result.output
