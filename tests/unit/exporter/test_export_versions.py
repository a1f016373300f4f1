"""Exported versions: every format loads both ways (`load_version`, and `load_dataset` through the
format's card) with TRL's columns; replays are byte-identical; a crash mid-export leaves the
previous version intact and the next run completes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset, DatasetDict, Features, Value, load_dataset

from devstack.sample_records import completed, preference, record, response
from services.exporter.export import accept, export_versions, format_dir, store_path
from services.exporter.reading import load_version, read_version_manifest, version_files
from services.exporter.store import ExportStore
from services.exporter.versions import versions
from shared.events import RECORDS_COMPLETED, RECORDS_JUDGED
from shared.flows import FlowsConfig, PluginRef
from shared.settings import Settings

STRING = Value("string")
MESSAGES = [{"role": STRING, "content": STRING}]
COMMON = {"record_id": STRING, "auto_accepted": Value("bool"), "disagreement": Value("bool")}
FLOAT = Value("float64")

EXPECTED: dict[str, dict[str, dict[str, Any]]] = {
    "sft": {"train": {"messages": MESSAGES, **COMMON}},
    "dpo": {
        "train": {
            "prompt": STRING,
            "chosen": STRING,
            "rejected": STRING,
            "score_chosen": FLOAT,
            "score_rejected": FLOAT,
            **COMMON,
        }
    },
    "reward": {
        "train": {"prompt": STRING, "chosen": STRING, "rejected": STRING, "margin": FLOAT, **COMMON}
    },
    "kto": {"train": {"prompt": STRING, "completion": STRING, "label": Value("bool"), **COMMON}},
    "eval": {
        "scores": {
            "record_id": STRING,
            "prompt": STRING,
            "model": STRING,
            "response": STRING,
            "score": FLOAT,
            "judge_score": FLOAT,
            "rank": Value("int32"),
            "auto_accepted": Value("bool"),
            "disagreement": Value("bool"),
        },
        "win_rates": {
            "model_a": STRING,
            "model_b": STRING,
            "wins": Value("int64"),
            "losses": Value("int64"),
            "ties": Value("int64"),
            "win_rate": FLOAT,
        },
    },
}


def flows_config(**export: Any) -> FlowsConfig:
    return FlowsConfig.model_validate(
        {
            "flows": {
                "support": {
                    "publish": {"plugin": "preference"},
                    "export": {
                        "formats": [{"plugin": name} for name in EXPECTED],
                        "test_size": 0.25,
                        "auto_accept": {"min_margin": 2.0},
                        **export,
                    },
                }
            }
        }
    )


def messages(n: int) -> list[tuple[str, bytes]]:
    """n records people answered (two annotators) and two judged ones (one auto-accepted)."""
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        rec = record(
            instruction=f"task {i}",
            responses=((f"good answer {i}", "model-a"), (f"weak answer {i}", "model-b")),
        )
        answers = [
            response(rec, "ann1", preference(5, 2, corrected="better" if i == 0 else None)),
            response(rec, "ann2", preference(4, 1 + i % 4, best=1 if i % 5 else 2)),
        ]
        out.append((RECORDS_COMPLETED, completed(rec, *answers).to_bytes()))
    confident = record(instruction="judged, confident", judge_scores=(5.0, 1.0))
    unsure = record(instruction="judged, unsure", judge_scores=(3.0, 3.0))
    out += [(RECORDS_JUDGED, confident.to_bytes()), (RECORDS_JUDGED, unsure.to_bytes())]
    return out


def fill(settings: Settings, flows: FlowsConfig, n: int = 40) -> None:
    with ExportStore(store_path(settings, "support")) as store:
        events = []
        for offset, (topic, body) in enumerate(messages(n)):
            kept = accept(flows, topic, 0, offset, body)
            if kept is not None:
                events.append(kept[1])
        store.add(events, list(EXPECTED))


def export_all(settings: Settings, flows: FlowsConfig) -> dict[str, Any]:
    flow = flows.flows["support"]
    with ExportStore(store_path(settings, "support")) as store:
        results = export_versions(settings, "support", flow, flow.export.formats, store)
    return {r.format: r for r in results}


def files_of(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def version_bytes(version: Path) -> dict[str, bytes]:
    """A version's own files (manifest, report) and the bytes of every shard it lists."""
    found = files_of(version)
    for files in version_files(version).values():
        found.update(
            {str(Path(f).relative_to(version.parent)): Path(f).read_bytes() for f in files}
        )
    return found


def test_every_format_loads_both_ways_with_the_documented_columns(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path)
    flows = flows_config()
    fill(settings, flows)
    results = export_all(settings, flows)
    for name, splits in EXPECTED.items():
        result = results[name]
        assert result.created and result.version == 1
        assert result.path == format_dir(settings, "support", name) / "v1"
        on_disk = load_version(result.path)
        assert isinstance(on_disk, DatasetDict)
        expected_splits = set(splits) | ({"test"} if "train" in splits else set())
        assert set(on_disk) == expected_splits
        for split, dataset in on_disk.items():
            columns = splits.get(split, splits.get("train"))
            assert dataset.features == Features(columns), (name, split)
            assert dataset.num_rows == result.rows[split]
            table = split not in ("train", "test")
            parquet = load_dataset(  # through the format's card: the version's configuration
                str(result.path.parent),
                f"v1-{split}" if table else "v1",
                split="train" if table else split,
            )
            assert isinstance(parquet, Dataset)
            assert parquet.features == Features(columns)
            assert parquet.to_list() == dataset.to_list()
    sft = load_version(results["sft"].path)
    train_and_test = sft["train"].num_rows + sft["test"].num_rows
    assert train_and_test == 41  # 40 answered + the confident judged record; the unsure one: no
    assert 0 < sft["test"].num_rows < sft["train"].num_rows
    rows = sft["train"].to_list() + sft["test"].to_list()
    auto = [r for r in rows if r["auto_accepted"]]
    assert len(auto) == 1 and auto[0]["messages"][0]["content"] == "judged, confident"
    corrected = next(r for r in rows if r["messages"][0]["content"] == "task 0")
    assert corrected["messages"][-1] == {"role": "assistant", "content": "better"}
    dpo = load_version(results["dpo"].path)
    first = next(
        r for r in dpo["train"].to_list() + dpo["test"].to_list() if r["prompt"] == "task 1"
    )
    assert (first["chosen"], first["rejected"]) == ("good answer 1", "weak answer 1")
    assert (first["score_chosen"], first["score_rejected"]) == (4.5, 2.0)
    assert first["disagreement"] is False
    win_rates = load_version(results["eval"].path)["win_rates"].to_list()
    assert [(w["model_a"], w["model_b"]) for w in win_rates] == [
        ("human", "model-a"),
        ("human", "model-b"),
        ("model-a", "model-b"),
    ]
    a_vs_b = win_rates[-1]
    assert a_vs_b["wins"] + a_vs_b["losses"] + a_vs_b["ties"] == 41
    assert a_vs_b["wins"] > a_vs_b["losses"]
    manifest = (results["dpo"].path / "manifest.json").read_text()
    assert '"source_offsets"' in manifest and '"records.completed"' in manifest
    assert (results["dpo"].path / "report.html").is_file()


def test_nothing_changed_no_new_version_and_a_replay_is_byte_identical(tmp_path: Path) -> None:
    first = Settings(stack_dir=tmp_path / "first")
    flows = flows_config()
    fill(first, flows)
    export_all(first, flows)
    again = export_all(first, flows)
    assert all(not r.created and r.version == 1 for r in again.values())

    replay = Settings(stack_dir=tmp_path / "replay")
    fill(replay, flows)
    fill(replay, flows)  # redelivered: the same events twice
    export_all(replay, flows)
    for name in EXPECTED:  # the version, its shards, the card
        a = files_of(format_dir(first, "support", name))
        b = files_of(format_dir(replay, "support", name))
        assert a.keys() == b.keys() and a == b, name
        assert versions(format_dir(replay, "support", name)) == [1]


CRASHING_EXPORT = """
import sys, time
from pathlib import Path
from services.exporter import versions
from services.exporter.export import export_versions
from services.exporter.store import ExportStore
from shared.flows import FlowsConfig
from shared.settings import Settings

from shared.settings import ExportSettings

slow_add = versions.VersionWriter.add
def add(self, split, table, bucket):
    slow_add(self, split, table, bucket)
    print("writing", flush=True)
    time.sleep(0.2)
versions.VersionWriter.add = add
settings = Settings(stack_dir=Path(sys.argv[1]), export=ExportSettings(batch_rows=4))
flows = FlowsConfig.model_validate_json(sys.argv[2])
flow = flows.flows["support"]
with ExportStore(settings.export_dir / "support" / "records.sqlite") as store:
    export_versions(settings, "support", flow, flow.export.formats, store)
"""


def test_a_crash_mid_export_leaves_the_previous_version_and_the_next_run_completes(
    tmp_path: Path,
) -> None:
    settings = Settings(stack_dir=tmp_path)
    flows = flows_config(formats=[{"plugin": "sft"}])
    fill(settings, flows, n=10)
    [v1] = export_all(settings, flows).values()
    before = version_bytes(v1.path)
    fill(settings, flows, n=40)  # more records: the next export differs

    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_EXPORT, str(tmp_path), flows.model_dump_json()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        for _ in range(5):  # killed in the middle of writing rows
            assert child.stdout.readline().strip() == "writing"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    target = format_dir(settings, "support", "sft")
    leftovers = [p for p in target.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers, "the killed export left its temporary directory"
    assert versions(target) == [1] and version_bytes(v1.path) == before
    with pytest.raises(FileNotFoundError):
        read_version_manifest(target / "v2")

    time.sleep(0.1)
    [v2] = export_all(settings, flows).values()
    assert v2.created and v2.version == 2
    assert not [p for p in target.iterdir() if p.name.startswith(".tmp-")]
    loaded = load_version(v2.path)
    assert loaded["train"].num_rows + loaded["test"].num_rows == 41
    assert version_bytes(v1.path) == before


def test_flow_file_export_options() -> None:
    flows = FlowsConfig.model_validate({"flows": {"f": {"export": [{"plugin": "dpo"}]}}})
    assert flows.flows["f"].export.formats == [PluginRef(plugin="dpo")]
    with pytest.raises(ValueError, match="more than once"):
        FlowsConfig.model_validate(
            {"flows": {"f": {"export": [{"plugin": "dpo"}, {"plugin": "dpo"}]}}}
        )


def test_push_to_hub_sends_the_version_with_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import SecretStr

    from services.exporter.hub import push_version
    from shared.flows import HubTarget
    from shared.settings import ExportSettings

    flows = flows_config(formats=[{"plugin": "kto"}])
    settings = Settings(stack_dir=tmp_path)
    fill(settings, flows, n=5)
    [result] = export_all(settings, flows).values()
    hub = HubTarget(repo_id="my-org/support-kto")
    assert push_version(settings, hub, result) is False  # no token: logged, not pushed

    from services.exporter import hub as hub_module
    from tests.unit.exporter.test_hub_push import FakeHub

    fake = FakeHub()
    monkeypatch.setattr(hub_module, "connect", fake.connect)
    with_token = settings.model_copy(
        update={"export": ExportSettings(hf_token=SecretStr("hf_secret"))}
    )
    assert push_version(with_token, hub, result) is True
    [(message, uploaded)] = fake.commits
    assert fake.tokens == ["hf_secret"] and fake.private == {"my-org/support-kto": True}
    assert message == "Loopline support/kto v1" and "kto/v1/manifest.json" in uploaded
    pushed = fake.files["my-org/support-kto"]["kto/v1/manifest.json"]
    assert pushed == (result.path / "manifest.json").read_bytes()
