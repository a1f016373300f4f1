"""One rule for configuration: a flag over the environment over the default, for every command.

Each test reproduces a surprise found by trying the code: `services up` ignored
LOOPLINE_FLOWS_FILE, a custom state dir installed the servers and models again, and services
started with a custom state dir wrote their exports under the working directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.stack import stack_config
from devstack.services import service_env
from shared.settings import Settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LOOPLINE_FLOWS_FILE", "LOOPLINE_STACK_DIR", "LOOPLINE_INSTALL_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_services_take_the_flows_file_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    flows = tmp_path / "elsewhere.yaml"
    monkeypatch.setenv("LOOPLINE_FLOWS_FILE", str(flows))
    config = stack_config(None)
    env = service_env(config, Settings().flows_file)
    assert env["LOOPLINE_FLOWS_FILE"] == str(flows.resolve())


def test_services_take_the_flow_sets_topic_and_group_prefixes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Services started by `loopline services up` (and `loopline demo`) are in the flow set
    the environment names."""
    monkeypatch.setenv("LOOPLINE_KAFKA__TOPIC_PREFIX", "team-a.")
    monkeypatch.setenv("LOOPLINE_KAFKA__GROUP_PREFIX", "team-a")
    env = service_env(stack_config(None), Path("flows.yaml"))
    assert env["LOOPLINE_KAFKA__TOPIC_PREFIX"] == "team-a."
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    kafka = Settings().kafka
    assert (kafka.topic("records.judged"), kafka.group_prefix) == (
        "team-a.records.judged",
        "team-a",
    )


def test_services_up_flag_beats_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`--flows-file` is optional: without it the environment decides, with it the flag."""
    seen: list[Path] = []
    for name in ("from-env.yaml", "flag.yaml"):  # no split flow: no Argilla accounts needed
        (tmp_path / name).write_text("flows: {one: {route: {plugin: all}}}\n")
    monkeypatch.setenv("LOOPLINE_FLOWS_FILE", str(tmp_path / "from-env.yaml"))
    monkeypatch.setattr("cli.stack.local_services.up", lambda c, f, progress: seen.append(f) or [])
    assert runner.invoke(app, ["services", "up"]).exit_code == 0
    assert runner.invoke(app, ["services", "up", "--flows-file", "flag.yaml"]).exit_code == 0
    assert seen == [tmp_path / "from-env.yaml", Path("flag.yaml")]


def test_a_custom_state_dir_shares_the_downloads(tmp_path: Path) -> None:
    default = stack_config(None)
    custom = stack_config(tmp_path / "custom-state")
    assert custom.installs == default.installs == (tmp_path / ".loopline" / "install").resolve()
    assert custom.run_dir == (tmp_path / "custom-state" / "run").resolve()


def test_the_install_dir_follows_flag_then_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOOPLINE_INSTALL_DIR", str(tmp_path / "env-install"))
    assert stack_config(None).installs == (tmp_path / "env-install").resolve()
    flagged = stack_config(None, install_dir=tmp_path / "flag-install")
    assert flagged.installs == (tmp_path / "flag-install").resolve()


def test_services_write_under_the_state_dir_they_were_started_with(tmp_path: Path) -> None:
    config = stack_config(tmp_path / "custom-state")
    env = service_env(config, Path("flows.yaml"))
    settings = Settings(_env_file=None, stack_dir=Path(env["LOOPLINE_STACK_DIR"]))  # type: ignore[call-arg]
    assert settings.export_dir == (tmp_path / "custom-state").resolve() / "exports"


@pytest.mark.parametrize(
    "command",
    [
        ["run", "judge"],
        ["ingest", "data.jsonl", "--flow", "default"],
        ["export", "--flow", "default"],
        ["check-flows"],
    ],
)
def test_every_command_takes_the_flows_file_from_the_environment_unless_flagged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list[str]
) -> None:
    """A command reads the flows named by its flag, else by LOOPLINE_FLOWS_FILE (both missing
    here, so the error names the one that was read)."""
    monkeypatch.setenv("LOOPLINE_FLOWS_FILE", str(tmp_path / "from-env.yaml"))
    from_env = runner.invoke(app, command)
    assert from_env.exit_code == 2
    assert "from-env.yaml" in from_env.output
    flag = ["--flows-file", str(tmp_path / "from-flag.yaml")]
    flagged = runner.invoke(
        app, command + ([str(tmp_path / "from-flag.yaml")] if command == ["check-flows"] else flag)
    )
    assert flagged.exit_code == 2
    assert "from-flag.yaml" in flagged.output and "from-env.yaml" not in flagged.output
