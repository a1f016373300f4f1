"""`loopline annotate` and `loopline annotators`: what they refuse before reaching Argilla."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.annotate import parse_options
from cli.app import app

FLOWS = {
    "flows": {
        "judged": {"judge": {"plugin": "pairwise"}},
        "split": {"publish": {"plugin": "curation", "mode": "split", "annotators": ["al", "bo"]}},
        "people": {"publish": {"plugin": "preference"}},
    }
}


@pytest.fixture
def flows_file(tmp_path: Path) -> Path:
    path = tmp_path / "flows.yaml"
    path.write_text(yaml.safe_dump(FLOWS))
    return path


def test_policy_options_are_key_value_pairs_read_as_yaml() -> None:
    assert parse_options(["disagree_rate=0.1", "seed=3", "criterion=correct"]) == {
        "disagree_rate": 0.1,
        "seed": 3,
        "criterion": "correct",
    }
    with pytest.raises(ValueError, match="expected key=value"):
        parse_options(["disagree_rate"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["annotate", "--flow", "nope"], "unknown flow 'nope'"),
        (["annotate", "--flow", "judged"], "flow 'judged' has no `publish` stage"),
        (["annotate", "--flow", "people", "--policy", "lazy"], "unknown annotators plugin 'lazy'"),
        (
            ["annotate", "--flow", "people", "--option", "disagre_rate=0.1"],
            "unknown option(s) ['disagre_rate']",
        ),
        (["annotate", "--flow", "people", "--option", "seed"], "expected key=value"),
        (["annotate", "--flow", "people", "--annotators", "0"], "at least 1"),
        (["annotators", "add", "--flow", "split", "cy"], "'cy' is not one of them"),
        (["annotators", "list", "--flow", "judged"], "has no `publish` stage"),
    ],
)
def test_bad_requests_fail_with_the_reason_before_any_request(
    flows_file: Path, args: list[str], message: str
) -> None:
    # An unreachable Argilla: a command that got as far as calling it would fail otherwise.
    env = {"LOOPLINE_ARGILLA__API_URL": "http://127.0.0.1:9"}
    result = CliRunner(env=env).invoke(app, [*args, "--flows-file", str(flows_file)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
