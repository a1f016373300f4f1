"""A version goes to the Hub as one commit holding only what the repo lacks: the shards of the
buckets it rewrote, its manifest and the repo's card. Offline: `HfApi`'s few calls go to an
in-memory Hub (`FakeHub`); what it holds loads with real `datasets` through the card."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml
from datasets import load_dataset
from huggingface_hub import CommitOperationAdd
from pydantic import SecretStr

from devstack.sample_records import completed, preference, record, response
from services.exporter import hub
from services.exporter.export import ExportResult, accept, export_versions, store_path
from services.exporter.manifests import manifest_files
from services.exporter.reading import read_version_manifest
from services.exporter.store import ExportStore
from shared.events import RECORDS_COMPLETED
from shared.flows import FlowsConfig, HubTarget
from shared.settings import ExportSettings, Settings

REPO = "my-org/support"
TOKEN = "hf_secret"


@dataclass
class FakeHub:
    """The Hub as `hub.HubApi` sees it: repos of files; each commit keeps the paths it
    uploaded. `failures` are raised by the next commits, one each."""

    files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    private: dict[str, bool | None] = field(default_factory=dict)
    commits: list[tuple[str, list[str]]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    def connect(self, token: str) -> FakeHub:
        self.tokens.append(token)
        return self

    def create_repo(
        self, repo_id: str, *, repo_type: str | None, private: bool | None, exist_ok: bool
    ) -> str:
        assert repo_type == "dataset" and exist_ok
        self.files.setdefault(repo_id, {})
        self.private.setdefault(repo_id, private)
        return repo_id

    def list_repo_files(self, repo_id: str, *, repo_type: str | None) -> list[str]:
        assert repo_type == "dataset"
        return sorted(self.files[repo_id])

    def create_commit(
        self, repo_id: str, operations: Any, *, commit_message: str, repo_type: str | None
    ) -> None:
        assert repo_type == "dataset"
        if self.failures:
            raise self.failures.pop(0)
        added: dict[str, bytes] = {}
        for op in operations:
            assert isinstance(op, CommitOperationAdd)
            source = op.path_or_fileobj
            added[op.path_in_repo] = (
                source if isinstance(source, bytes) else Path(str(source)).read_bytes()
            )
        self.files[repo_id].update(added)
        self.commits.append((commit_message, sorted(added)))

    def snapshot(self, repo_id: str, into: Path) -> Path:
        """The repo's files in a local directory, as `snapshot_download` would leave them."""
        for name, data in self.files[repo_id].items():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            (into / name).write_bytes(data)
        return into


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub()
    monkeypatch.setattr(hub, "connect", fake.connect)
    return fake


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def flows_config(*formats: str) -> FlowsConfig:
    return FlowsConfig.model_validate(
        {
            "flows": {
                "support": {
                    "publish": {"plugin": "preference"},
                    "export": {"formats": [{"plugin": f} for f in formats], "test_size": 0.25},
                }
            }
        }
    )


def answered(i: int, best: int = 1, minute: int = 0) -> bytes:
    rec = record(
        instruction=f"task {i}",
        responses=((f"good answer {i}", "model-a"), (f"weak answer {i}", "model-b")),
    )
    answers = [response(rec, "ann1", preference(5, 2, best=best), minute=minute)]
    return completed(rec, *answers, minute=minute).to_bytes()


class Flow:
    """A flow's store and exports in a test directory, 8 buckets a format."""

    def __init__(self, tmp_path: Path, *formats: str) -> None:
        export = ExportSettings(buckets=8, hf_token=SecretStr(TOKEN))
        self.settings = Settings(stack_dir=tmp_path, export=export)
        self.flows = flows_config(*formats)
        self.offset = 0

    def keep(self, bodies: list[bytes]) -> None:
        formats = [ref.plugin for ref in self.flows.flows["support"].export.formats]
        with ExportStore(store_path(self.settings, "support")) as store:
            events = []
            for body in bodies:
                kept = accept(self.flows, RECORDS_COMPLETED, 0, self.offset, body)
                assert kept is not None
                events.append(kept[1])
                self.offset += 1
            store.add(events, formats)

    def export(self) -> dict[str, ExportResult]:
        flow = self.flows.flows["support"]
        with ExportStore(store_path(self.settings, "support")) as store:
            results = export_versions(self.settings, "support", flow, flow.export.formats, store)
        assert all(r.created for r in results)
        return {r.format: r for r in results}

    def push(self, result: ExportResult) -> bool:
        return hub.push_version(self.settings, HubTarget(repo_id=REPO), result)


def shard_paths(result: ExportResult) -> set[str]:
    """The version's Parquet files, relative to its format's directory."""
    found = manifest_files(read_version_manifest(result.path))
    return {path for paths in found.values() for path in paths}


def in_repo(result: ExportResult, paths: set[str]) -> set[str]:
    return {f"{result.format}/{path}" for path in paths}


def test_a_second_version_uploads_only_its_new_shards_its_manifest_and_the_card(
    tmp_path: Path, fake_hub: FakeHub
) -> None:
    flow = Flow(tmp_path, "sft")
    flow.keep([answered(i) for i in range(40)])
    v1 = flow.export()["sft"]
    assert flow.push(v1)
    first = shard_paths(v1)
    assert len(first) > 2  # several buckets: what the second commit leaves out
    assert fake_hub.commits == [
        (
            "Loopline support/sft v1",
            sorted({"README.md", "sft/v1/manifest.json"} | in_repo(v1, first)),
        )
    ]
    assert fake_hub.tokens == [TOKEN] and fake_hub.private == {REPO: True}

    flow.keep([answered(7, best=2, minute=5)])  # one record answered again
    v2 = flow.export()["sft"]
    assert v2.version == 2 and flow.push(v2)
    new = shard_paths(v2) - first
    assert len(new) == 1  # the changed record's bucket, in its split
    message, uploaded = fake_hub.commits[-1]
    assert message == "Loopline support/sft v2"
    assert uploaded == sorted({"README.md", "sft/v2/manifest.json"} | in_repo(v2, new))
    # What the repo holds is the export directory's bytes.
    format_dir = v2.path.parent if isinstance(v2.path, Path) else None
    assert format_dir is not None
    for path in in_repo(v2, shard_paths(v2)) | {"sft/v1/manifest.json", "sft/v2/manifest.json"}:
        assert fake_hub.files[REPO][path] == (format_dir.parent / path).read_bytes()


def test_the_repo_loads_each_version_by_its_configuration_with_datasets(
    tmp_path: Path, fake_hub: FakeHub
) -> None:
    flow = Flow(tmp_path, "sft")
    flow.keep([answered(i) for i in range(12)])
    assert flow.push(flow.export()["sft"])
    flow.keep([answered(12)])  # a new record
    assert flow.push(flow.export()["sft"])
    repo = fake_hub.snapshot(REPO, tmp_path / "repo")
    v1 = load_dataset(str(repo), "sft-v1")
    v2 = load_dataset(str(repo), "sft-v2")
    latest = load_dataset(str(repo))  # one format: its latest is the default
    count = {
        name: sum(d.num_rows for d in found.values())
        for name, found in {"v1": v1, "v2": v2, "latest": latest}.items()
    }
    assert count == {"v1": 12, "v2": 13, "latest": 13}
    ids = sorted(row["record_id"] for split in v2.values() for row in split)
    assert len(set(ids)) == 13


def test_formats_of_one_flow_share_the_repo_each_in_its_folder(
    tmp_path: Path, fake_hub: FakeHub
) -> None:
    flow = Flow(tmp_path, "sft", "dpo")
    flow.keep([answered(i) for i in range(10)])
    results = flow.export()
    assert flow.push(results["sft"]) and flow.push(results["dpo"])
    front = yaml.safe_load(fake_hub.files[REPO]["README.md"].decode().split("---\n")[1])
    names = [c["config_name"] for c in front["configs"]]
    assert names == ["dpo", "dpo-v1", "sft", "sft-v1"]  # two formats: no default
    _, second = fake_hub.commits[-1]
    assert second == sorted(
        {"README.md", "dpo/v1/manifest.json"} | in_repo(results["dpo"], shard_paths(results["dpo"]))
    )
    repo = fake_hub.snapshot(REPO, tmp_path / "repo")
    dpo = load_dataset(str(repo), "dpo-v1")
    assert sum(d.num_rows for d in dpo.values()) == 10


def test_a_version_the_hub_missed_is_caught_up_by_the_next_push(
    tmp_path: Path, fake_hub: FakeHub
) -> None:
    flow = Flow(tmp_path, "sft")
    flow.keep([answered(i) for i in range(20)])
    v1 = flow.export()["sft"]  # never pushed (say the flow turned push_to_hub on later)
    flow.keep([answered(3, best=2, minute=5)])
    v2 = flow.export()["sft"]
    assert flow.push(v2)
    [(_, uploaded)] = fake_hub.commits
    manifests = {"sft/v1/manifest.json", "sft/v2/manifest.json"}
    both = in_repo(v1, shard_paths(v1) | shard_paths(v2))
    assert uploaded == sorted({"README.md"} | manifests | both)

    assert flow.push(v2)  # again (a retry after a lost answer): the card, nothing else
    assert fake_hub.commits[-1] == ("Loopline support/sft v2", ["README.md"])


def test_a_url_export_directory_is_pushed_from_its_files(tmp_path: Path, fake_hub: FakeHub) -> None:
    import fsspec  # type: ignore[import-untyped]

    flow = Flow(tmp_path, "sft")
    url = f"memory://hub-push-{tmp_path.name}"
    flow.settings = flow.settings.model_copy(
        update={"export": flow.settings.export.model_copy(update={"dir": url})}
    )
    flow.keep([answered(i) for i in range(10)])
    v1 = flow.export()["sft"]
    assert isinstance(v1.path, str) and flow.push(v1)
    [(_, uploaded)] = fake_hub.commits
    fs = fsspec.filesystem("memory")
    for path in uploaded:
        if path != "README.md":
            assert fake_hub.files[REPO][path] == fs.cat_file(f"{url}/support/{path}")
