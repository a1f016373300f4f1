"""Cleaning a preference dataset: the report counts pairs people kept, flipped or discarded
(records imported with chosen/rejected carry `metadata.preference`)."""

from __future__ import annotations

import re
from pathlib import Path

from devstack.sample_records import completed, preference, record, response
from services.argilla_publisher.templates.preference import PreferenceTemplate
from services.exporter.aggregate import Questions, aggregate_completed
from services.exporter.report import write_report
from services.exporter.stats import CurationStats
from shared.events import ResponseStatus

PREF = Questions.of(PreferenceTemplate())
PAIR = {"preference": {"chosen": 0, "rejected": 1}}


def pair(n: int):  # type: ignore[no-untyped-def]
    return record(instruction=f"question {n}", metadata=PAIR, record_id=f"pair-{n}")


def test_pairs_kept_flipped_and_discarded_are_counted_and_reported(tmp_path: Path) -> None:
    stats = CurationStats(PREF.kinds, PREF)
    kept = completed(pair(1), response(pair(1), "a", preference(5, 2, best=1)))
    flipped = completed(pair(2), response(pair(2), "a", preference(2, 5, best=2)))
    dropped = completed(pair(3), response(pair(3), "a", {}, status=ResponseStatus.discarded))
    plain = record(record_id="x")
    unpaired = completed(plain, response(plain, "a", preference(5, 1)))
    for event in (kept, flipped, dropped, unpaired):
        stats.add(aggregate_completed(event, PREF), "2026-01-01T00:00:00")
    assert dict(stats.pairs) == {"kept": 1, "flipped": 1, "discarded": 1}

    merged = CurationStats(PREF.kinds, PREF)
    merged.merge(stats)
    assert merged.pairs == stats.pairs
    text = write_report(merged.report("prefs / dpo / v1", {}), tmp_path).read_text()
    assert "Preference pairs" in text
    for outcome, count in (("kept", 1), ("flipped", 1), ("discarded", 1)):
        assert re.search(rf"<td>{outcome}</td><td[^>]*>{count}</td>", text), outcome
