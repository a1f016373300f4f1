"""Exported versions load as the README says, with real `datasets`, whatever their split sizes.

Training formats: `load_dataset("parquet", data_dir=<version>)` and `load_dataset(<version>)`
(the version's dataset card, one default config). `eval`: one config per table,
`load_dataset(<version>, "scores")` and `load_dataset(<version>, "win_rates")`. A split with no
rows has no Parquet file and is left out of the card (`datasets` cannot load an empty split);
`load_from_disk` still has it. A format with no rows at all makes no version.
"""

import re
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml
from datasets import DatasetDict, Features, load_dataset, load_from_disk

from devstack.sample_records import completed, preference, record, response
from services.exporter.export import ExportResult, accept, export_versions, store_path
from services.exporter.store import ExportStore
from services.exporter.versions import CARD, card_configs
from shared.events import RECORDS_COMPLETED, RECORDS_JUDGED
from shared.flows import FlowsConfig
from shared.settings import Settings
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
    tmp_path: Path, flows: FlowsConfig, bodies: list[tuple[str, bytes]]
) -> dict[str, ExportResult]:
    settings = Settings(stack_dir=tmp_path)
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


def assert_loads(result: ExportResult) -> None:
    """Every way the README names loads the version's rows, with the documented columns."""
    name, path = result.format, result.path
    on_disk = load_from_disk(str(path))
    assert isinstance(on_disk, DatasetDict) and set(on_disk) == set(result.rows)
    non_empty = {split for split, n in result.rows.items() if n}
    if name == "eval":
        for table in non_empty:
            loaded = load_dataset(str(path), table)
            assert isinstance(loaded, DatasetDict) and list(loaded) == ["train"]
            assert loaded["train"].features == columns(name, table)
            assert loaded["train"].to_list() == on_disk[table].to_list()
        return
    for loaded in (load_dataset("parquet", data_dir=str(path)), load_dataset(str(path))):
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
        assert not list((result.path / "data").glob("test-*")), "an empty split has no Parquet"
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
                (f["split"], [re.sub(r"-[0-9a-f]{16}\.", "-*.", p) for p in f["path"]])
                for f in c["data_files"]
            ],
        )
        for c in configs
    ]


def test_eval_tables_are_configs_of_the_card(tmp_path: Path) -> None:
    flows = flows_config(0.0, ["eval", "dpo"])
    results = export(tmp_path, flows, [(RECORDS_COMPLETED, answered(0))])
    assert shape(card_configs(results["eval"].path)) == [
        ("scores", [("train", ["data/scores-00000-of-00001-*.parquet"])]),
        ("win_rates", [("train", ["data/win_rates-00000-of-00001-*.parquet"])]),
    ]
    assert shape(card_configs(results["dpo"].path)) == [
        ("default", [("train", ["data/train-00000-of-00001-*.parquet"])])
    ]
    card = (results["eval"].path / CARD).read_text()
    assert card.startswith("---\n") and 'load_dataset(path, "win_rates")' in card


def test_versions_of_the_same_name_load_their_own_rows(tmp_path: Path) -> None:
    # Every flow's first version is a directory `v1`: `datasets` must not mix them up.
    first = export(tmp_path / "a", flows_config(0.0, ["sft"]), [(RECORDS_COMPLETED, answered(0))])
    second = export(tmp_path / "b", flows_config(0.0, ["sft"]), [(RECORDS_COMPLETED, answered(1))])
    a, b = (load_dataset(str(r["sft"].path))["train"] for r in (first, second))
    assert a["messages"][0][0]["content"] == "task 0"
    assert b["messages"][0][0]["content"] == "task 1"


def test_a_table_without_rows_is_left_out_of_the_card(tmp_path: Path) -> None:
    # Both responses from one model: no win rates to compute.
    same_model = [(RECORDS_COMPLETED, answered(i, ("model-a", "model-a"))) for i in range(2)]
    [result] = export(tmp_path, flows_config(0.0, ["eval"]), same_model).values()
    assert result.rows == {"scores": 4, "win_rates": 0}
    assert [c["config_name"] for c in card_configs(result.path)] == ["scores"]
    assert_loads(result)
    with pytest.raises(ValueError, match="win_rates"):
        load_dataset(str(result.path), "win_rates")


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
    text = (result.path / CARD).read_text()
    front: dict[str, Any] = yaml.safe_load(text.split("---\n")[1])
    assert set(front) == {"configs"}
    assert "support / sft" in text and 'load_dataset("parquet", data_dir=path)' in text


def test_the_hub_gets_the_configurations_of_the_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import SecretStr

    from services.exporter.hub import push_version
    from shared.flows import HubTarget
    from shared.settings import ExportSettings

    pushed: list[tuple[str, dict[str, int], str]] = []

    def fake_push(self: DatasetDict, repo_id: str, **kwargs: Any) -> None:
        rows = {split: d.num_rows for split, d in self.items()}
        pushed.append((kwargs["config_name"], rows, kwargs["commit_message"]))

    monkeypatch.setattr(DatasetDict, "push_to_hub", fake_push)
    results = export(
        tmp_path, flows_config(0.0, ["eval", "sft"]), [(RECORDS_COMPLETED, answered(0))]
    )
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(hf_token=SecretStr("hf_x")))
    hub = HubTarget(repo_id="my-org/support")
    assert push_version(settings, hub, results["eval"]) and push_version(
        settings, hub, results["sft"]
    )
    assert pushed == [
        ("scores", {"train": 2}, "Loopline support/eval v1: scores"),
        ("win_rates", {"train": 1}, "Loopline support/eval v1: win_rates"),
        ("default", {"train": 1}, "Loopline support/sft v1"),  # the empty test split stays
    ]
