"""Exported versions load as the README says, with real `datasets`, whatever their split sizes.

The format's directory has a dataset card with a configuration per version. Training formats:
`load_dataset(<format dir>, "v<N>")`, and `load_dataset(<format dir>)` for the latest (the
`default` configuration). `eval`: one configuration per table, `load_dataset(<format dir>,
"v<N>-scores")` (`"scores"` for the latest) and the same for `win_rates`. A split with no rows
has no Parquet file and is left out of the card (`datasets` cannot load an empty split);
`load_version` still has it. A format with no rows at all makes no version.
"""

import re
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml
from datasets import DatasetDict, Features, load_dataset

from devstack.sample_records import completed, preference, record, response
from services.exporter.card import CARD, CARD_VERSIONS, card_configs
from services.exporter.export import ExportResult, accept, export_versions, store_path
from services.exporter.reading import load_version
from services.exporter.store import ExportStore
from shared.events import RECORDS_COMPLETED, RECORDS_JUDGED
from shared.flows import FlowsConfig
from shared.settings import ExportSettings, Settings
from tests.unit.exporter.test_export_versions import EXPECTED

TRAINING = [name for name in EXPECTED if name != "eval"]


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`load_dataset` caches what it builds: here, in the test's own directory."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def flows_config(test_size: float, formats: list[str] | None = None) -> FlowsConfig:
    return FlowsConfig.model_validate(
        {
            "flows": {
                "support": {
                    "publish": {"plugin": "preference"},
                    "export": {
                        "formats": [{"plugin": name} for name in formats or EXPECTED],
                        "test_size": test_size,
                        "auto_accept": {"min_margin": 2.0},
                    },
                }
            }
        }
    )


def answered(i: int, models: tuple[str, str] = ("model-a", "model-b")) -> bytes:
    rec = record(
        instruction=f"task {i}",
        responses=((f"good answer {i}", models[0]), (f"weak answer {i}", models[1])),
    )
    answers = [response(rec, "ann1", preference(5, 2)), response(rec, "ann2", preference(4, 1))]
    return completed(rec, *answers).to_bytes()


def export(
    tmp_path: Path, flows: FlowsConfig, bodies: list[tuple[str, bytes]], buckets: int = 4
) -> dict[str, ExportResult]:
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(buckets=buckets))
    flow = flows.flows["support"]
    with ExportStore(store_path(settings, "support")) as store:
        events = []
        for offset, (topic, body) in enumerate(bodies):
            kept = accept(flows, topic, 0, offset, body)
            if kept is not None:
                events.append(kept[1])
        store.add(events, [ref.plugin for ref in flow.export.formats])
        results = export_versions(settings, "support", flow, flow.export.formats, store)
    return {r.format: r for r in results}


def columns(name: str, split: str) -> Features:
    splits = EXPECTED[name]
    return Features(splits.get(split, splits.get("train")))


def card(result: ExportResult) -> list[dict[str, Any]]:
    assert isinstance(result.path, Path)
    return card_configs((result.path.parent / CARD).read_text())


def assert_loads(result: ExportResult) -> None:
    """Every way the README names loads the version's rows, with the documented columns."""
    name, path = result.format, result.path
    assert isinstance(path, Path)
    on_disk = load_version(path)
    assert isinstance(on_disk, DatasetDict) and set(on_disk) == set(result.rows)
    non_empty = {split for split, n in result.rows.items() if n}
    fmt, version = str(path.parent), path.name
    if name == "eval":
        for table in non_empty:
            for config in (f"{version}-{table}", table):  # the version's, the latest's
                loaded = load_dataset(fmt, config)
                assert isinstance(loaded, DatasetDict) and list(loaded) == ["train"]
                assert loaded["train"].features == columns(name, table)
                assert loaded["train"].to_list() == on_disk[table].to_list()
        return
    for loaded in (load_dataset(fmt, version), load_dataset(fmt)):
        assert isinstance(loaded, DatasetDict)
        assert set(loaded) == non_empty, name
        for split in non_empty:
            assert loaded[split].features == columns(name, split), (name, split)
            assert loaded[split].to_list() == on_disk[split].to_list()


def test_versions_with_an_empty_test_split_load_every_documented_way(tmp_path: Path) -> None:
    judged = record(instruction="judged, confident", judge_scores=(5.0, 1.0))
    bodies = [(RECORDS_COMPLETED, answered(i)) for i in range(3)]
    results = export(tmp_path, flows_config(0.0), [*bodies, (RECORDS_JUDGED, judged.to_bytes())])
    for name in TRAINING:
        result = results[name]
        assert result.created and result.rows["test"] == 0 and result.rows["train"] > 0, name
        assert isinstance(result.path, Path)
        shards = result.path.parent / "shards"
        assert not list(shards.glob("test/*")), "an empty split has no Parquet"
        assert_loads(result)
    assert results["eval"].rows["win_rates"] > 0
    assert_loads(results["eval"])


def test_versions_with_both_splits_load_every_documented_way(tmp_path: Path) -> None:
    bodies = [(RECORDS_COMPLETED, answered(i)) for i in range(12)]
    results = export(tmp_path, flows_config(0.5), bodies)
    for result in results.values():
        assert all(result.rows.values()), result.rows
        assert_loads(result)


def shape(configs: list[dict[str, Any]]) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """(config, [(split, file name patterns)]) with each file's content hash starred."""
    return [
        (
            c["config_name"],
            [
                (f["split"], [re.sub(r"-[0-9a-f]{32}\.", "-*.", p) for p in f["path"]])
                for f in c["data_files"]
            ],
        )
        for c in configs
    ]


def test_eval_tables_are_configs_of_the_card(tmp_path: Path) -> None:
    flows = flows_config(0.0, ["eval", "dpo"])
    results = export(tmp_path, flows, [(RECORDS_COMPLETED, answered(0))], buckets=1)
    scores = [("train", ["shards/scores/b00000-*.parquet"])]
    win_rates = [("train", ["shards/win_rates/all-*.parquet"])]
    assert shape(card(results["eval"])) == [
        ("scores", scores),
        ("win_rates", win_rates),
        ("v1-scores", scores),
        ("v1-win_rates", win_rates),
    ]
    train = [("train", ["shards/train/b00000-*.parquet"])]
    assert shape(card(results["dpo"])) == [("default", train), ("v1", train)]
    assert isinstance(results["eval"].path, Path)
    text = (results["eval"].path.parent / CARD).read_text()
    assert text.startswith("---\n") and 'load_dataset(path, "v1-win_rates")' in text


def test_each_version_is_a_config_and_the_latest_the_default(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(buckets=4))
    flows = flows_config(0.0, ["sft"])
    flow = flows.flows["support"]
    made: list[ExportResult] = []
    with ExportStore(store_path(settings, "support")) as store:
        for n in (3, 6):
            events = [accept(flows, RECORDS_COMPLETED, 0, i, answered(i)) for i in range(n)]
            store.add([kept[1] for kept in events if kept is not None], ["sft"])
            [result] = export_versions(settings, "support", flow, flow.export.formats, store)
            made.append(result)
    assert [r.version for r in made] == [1, 2]
    assert [c["config_name"] for c in card(made[-1])] == ["default", "v2", "v1"]
    assert isinstance(made[0].path, Path)
    fmt = str(made[0].path.parent)
    tasks = {
        config: sorted(m[0]["content"] for m in load_dataset(fmt, config)["train"]["messages"])
        for config in ("v1", "v2", "default")
    }
    assert tasks == {
        "v1": [f"task {i}" for i in range(3)],
        "v2": [f"task {i}" for i in range(6)],
        "default": [f"task {i}" for i in range(6)],
    }


def test_versions_of_the_same_name_load_their_own_rows(tmp_path: Path) -> None:
    # Every flow's first version is a directory `v1`: `datasets` must not mix them up.
    # Both format directories are `.../support/sft`, with a version `v1`.
    export(tmp_path / "a", flows_config(0.0, ["sft"]), [(RECORDS_COMPLETED, answered(0))])
    export(tmp_path / "b", flows_config(0.0, ["sft"]), [(RECORDS_COMPLETED, answered(1))])
    a, b = (load_dataset(str(tmp_path / r / "exports/support/sft"), "v1")["train"] for r in "ab")
    assert a["messages"][0][0]["content"] == "task 0"
    assert b["messages"][0][0]["content"] == "task 1"


def test_a_table_without_rows_is_left_out_of_the_card(tmp_path: Path) -> None:
    # Both responses from one model: no win rates to compute.
    same_model = [(RECORDS_COMPLETED, answered(i, ("model-a", "model-a"))) for i in range(2)]
    [result] = export(tmp_path, flows_config(0.0, ["eval"]), same_model).values()
    assert result.rows == {"scores": 4, "win_rates": 0}
    assert [c["config_name"] for c in card(result)] == ["scores", "v1-scores"]
    assert_loads(result)
    assert isinstance(result.path, Path)
    with pytest.raises(ValueError, match="win_rates"):
        load_dataset(str(result.path.parent), "v1-win_rates")


def test_a_format_without_rows_makes_no_version(tmp_path: Path) -> None:
    # People rated both responses 3 of 5: neither good nor bad, so kto has no row.
    rec = record(instruction="meh")
    answers = [response(rec, "ann1", preference(3, 3))]
    bodies = [(RECORDS_COMPLETED, completed(rec, *answers).to_bytes())]
    results = export(tmp_path, flows_config(0.0, ["kto", "sft"]), bodies)
    kto, sft = results["kto"], results["sft"]
    assert not kto.created and kto.version == 0 and kto.rows == {"train": 0, "test": 0}
    assert not (tmp_path / "exports" / "support" / "kto" / "v1").exists()
    assert sft.created and sft.version == 1


def test_the_card_is_yaml_front_matter_that_names_the_flow_and_format(tmp_path: Path) -> None:
    [result] = export(
        tmp_path, flows_config(0.0, ["sft"]), [(RECORDS_COMPLETED, answered(0))]
    ).values()
    assert isinstance(result.path, Path)
    text = (result.path.parent / CARD).read_text()
    front: dict[str, Any] = yaml.safe_load(text.split("---\n")[1])
    assert set(front) == {"configs"}
    assert "support / sft" in text and 'load_dataset(path, "v1")' in text


def test_the_hub_gets_the_configurations_of_the_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import SecretStr

    from services.exporter import hub as hub_module
    from services.exporter.hub import push_version
    from shared.flows import HubTarget
    from shared.settings import ExportSettings
    from tests.unit.exporter.test_hub_push import FakeHub

    fake = FakeHub()
    monkeypatch.setattr(hub_module, "connect", fake.connect)
    results = export(
        tmp_path, flows_config(0.0, ["eval", "sft"]), [(RECORDS_COMPLETED, answered(0))]
    )
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(hf_token=SecretStr("hf_x")))
    hub = HubTarget(repo_id="my-org/support")
    assert push_version(settings, hub, results["eval"]) and push_version(
        settings, hub, results["sft"]
    )
    assert [message for message, _ in fake.commits] == [
        "Loopline support/eval v1",
        "Loopline support/sft v1",
    ]
    repo = fake.snapshot("my-org/support", tmp_path / "repo")
    names = [c["config_name"] for c in card_configs((repo / CARD).read_text())]
    eval_configs = ["eval-scores", "eval-win_rates", "eval-v1-scores", "eval-v1-win_rates"]
    assert names == [*eval_configs, "sft", "sft-v1"]
    rows = {
        name: {split: d.num_rows for split, d in load_dataset(str(repo), name).items()}
        for name in ("eval-v1-scores", "eval-win_rates", "sft-v1")
    }
    assert rows == {
        "eval-v1-scores": {"train": 2},
        "eval-win_rates": {"train": 1},
        "sft-v1": {"train": 1},  # the empty test split stays out
    }


def test_the_card_names_the_newest_versions_and_an_older_one_still_loads(
    tmp_path: Path,
) -> None:
    # A stream makes versions without end: a card naming all of them would grow with each one
    # (and be rewritten with each), so it names the newest CARD_VERSIONS; the rest load from
    # their manifests.
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(buckets=2))
    flows = flows_config(0.0, ["sft"])
    flow = flows.flows["support"]
    made: list[ExportResult] = []
    with ExportStore(store_path(settings, "support")) as store:
        for n in range(CARD_VERSIONS + 2):
            event = accept(flows, RECORDS_COMPLETED, 0, n, answered(n))
            assert event is not None
            store.add([event[1]], ["sft"])
            [result] = export_versions(settings, "support", flow, flow.export.formats, store)
            made.append(result)
    newest = [f"v{n}" for n in range(CARD_VERSIONS + 2, 2, -1)]
    assert [c["config_name"] for c in card(made[-1])] == ["default", *newest]
    oldest = load_version(made[0].path)["train"]
    assert [m[0]["content"] for m in oldest["messages"]] == ["task 0"]
