"""Versions written before shards were shared stay readable (issue 16): a format whose v1 has its
own files (`v1/data/`) gets a v2 in shards, read from every record, and the card lists both."""

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Features, Value, load_dataset

from services.exporter.card import CARD, card_configs
from services.exporter.export import format_dir
from services.exporter.reading import load_version, version_files
from services.exporter.shards import file_sha256
from shared.settings import ExportSettings, Settings
from tests.unit.exporter.test_export_incremental import answered, export, flows_config, keep

SFT = Features(
    {
        "messages": [{"role": Value("string"), "content": Value("string")}],
        "record_id": Value("string"),
        "auto_accepted": Value("bool"),
        "disagreement": Value("bool"),
    }
)


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def old_version(root: Path) -> None:
    """A v1 as the exporter wrote it before issue 16: its Parquet files in v1/data/."""
    rows = [
        {
            "messages": [{"role": "user", "content": "old"}, {"role": "assistant", "content": "a"}],
            "record_id": "old-1",
            "auto_accepted": False,
            "disagreement": False,
        }
    ]
    data = root / "v1" / "data"
    data.mkdir(parents=True)
    part = data / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SFT.arrow_schema), part)
    digest = file_sha256(part)
    name = f"train-00000-of-00001-{digest[:16]}.parquet"
    part.rename(data / name)
    manifest = {
        "version": 1,
        "rows": {"train": 1, "test": 0},
        "schema": {"train": SFT.to_dict(), "test": SFT.to_dict()},
        "checksums": {f"data/{name}": digest},
    }
    (root / "v1" / "manifest.json").write_text(json.dumps(manifest))


def test_an_old_layout_version_stays_readable_beside_the_new_ones(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(buckets=4))
    root = format_dir(settings, "support", "sft")
    assert isinstance(root, Path)
    old_version(root)
    flows = flows_config("sft")
    keep(settings, flows, [answered(i)[1] for i in range(8)])
    [v2] = export(settings, flows).values()
    assert (v2.created, v2.version, v2.records_read) == (True, 2, 8)

    configs = card_configs((root / CARD).read_text())
    assert [c["config_name"] for c in configs] == ["default", "v2", "v1"]
    assert configs[-1]["data_files"] == [
        {"split": "train", "path": [str(p.relative_to(root)) for p in (root / "v1/data").iterdir()]}
    ]
    old = load_dataset(str(root), "v1")["train"]
    assert old["record_id"] == ["old-1"]
    assert load_version(root / "v1")["train"]["record_id"] == ["old-1"]
    assert load_version(root / "v1")["test"].num_rows == 0
    assert list(version_files(root / "v1")) == ["train"]
    new = load_dataset(str(root), "v2")
    assert sum(split.num_rows for split in new.values()) == 8
