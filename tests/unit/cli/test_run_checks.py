"""`loopline run` checks its settings before it reaches for the broker or Argilla, and the
`loopline` command gives the local stack's Argilla key only to an Argilla on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.options import settings_with
from devstack.config import LOCAL_ARGILLA_API_KEY

runner = CliRunner()
# Nothing listens here: a service that got past its checks would fail on the broker instead.
NO_BROKER = "127.0.0.1:9"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "LOOPLINE_ARGILLA__API_URL",
        "LOOPLINE_ARGILLA__API_KEY",
        "LOOPLINE_INGEST__HOST",
        "LOOPLINE_INGEST__API_KEYS",
        "LOOPLINE_INGEST__ALLOW_OPEN",
        "LOOPLINE_FEEDBACK__PUBLIC_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOOPLINE_KAFKA__BOOTSTRAP_SERVERS", NO_BROKER)
    monkeypatch.chdir(tmp_path)


def test_run_refuses_a_service_with_no_argilla_key_for_an_argilla_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOPLINE_ARGILLA__API_URL", "http://argilla:6900")
    result = runner.invoke(app, ["run", "argilla-publisher"])
    assert result.exit_code == 2, result.output
    assert "LOOPLINE_ARGILLA__API_KEY" in result.output


def test_run_refuses_the_local_stacks_key_for_an_argilla_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOPLINE_ARGILLA__API_URL", "https://argilla.example.com")
    monkeypatch.setenv("LOOPLINE_ARGILLA__API_KEY", LOCAL_ARGILLA_API_KEY)
    result = runner.invoke(app, ["run", "feedback-collector"])
    assert result.exit_code == 2, result.output
    assert "well-known" in result.output and "LOOPLINE_ARGILLA__API_KEY" in result.output


def test_run_refuses_an_open_ingester_beyond_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_INGEST__HOST", "0.0.0.0")
    result = runner.invoke(app, ["run", "ingester"])
    assert result.exit_code == 2, result.output
    assert "LOOPLINE_INGEST__API_KEYS" in result.output


def test_the_command_uses_the_local_stacks_key_only_for_an_argilla_on_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = settings_with().argilla
    assert local.api_url.startswith("http://127.0.0.1:")
    assert local.api_key_value() == LOCAL_ARGILLA_API_KEY
    monkeypatch.setenv("LOOPLINE_ARGILLA__API_URL", "http://argilla:6900")
    assert settings_with().argilla.api_key is None
    monkeypatch.setenv("LOOPLINE_ARGILLA__API_KEY", "my-own-key")
    assert settings_with().argilla.api_key_value() == "my-own-key"
