"""The figures of a chaos run, from what was fed, what the driver did and what came out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tests.chaos.driver import TARGETS, Chaos, Feed
from tests.chaos.system import COUNTED_FORMATS
from tests.chaos.tally import Observed

SHOWN = 12  # record ids shown per problem


def _some(ids: set[str] | list[str]) -> str:
    ordered = sorted(ids)
    more = f" (+{len(ordered) - SHOWN} more)" if len(ordered) > SHOWN else ""
    return ", ".join(ordered[:SHOWN]) + more


@dataclass
class Figures:
    records: int
    kills: Counter[str]
    to_people: int
    lost: dict[str, set[str]] = field(default_factory=dict)  # where -> record ids
    duplicated: dict[str, dict[str, int]] = field(default_factory=dict)  # where -> id -> count
    dead_lettered: Counter[str] = field(default_factory=Counter)  # "topic: error type" -> count
    dead_letter_examples: list[str] = field(default_factory=list)
    replayed: int = 0
    unexpected_in_argilla: set[str] = field(default_factory=set)
    seconds: float = 0.0
    drained: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def lost_ids(self) -> set[str]:
        return set().union(*self.lost.values()) if self.lost else set()

    @property
    def duplicated_ids(self) -> set[str]:
        return (
            set().union(*(set(d) for d in self.duplicated.values())) if self.duplicated else set()
        )

    @classmethod
    def of(cls, fed: Feed, chaos: Chaos, seen: Observed, seconds: float, drained: bool) -> Figures:
        figures = cls(len(fed.accepted), chaos.kills, len(seen.to_people), seconds=seconds)
        figures.drained = drained
        people = seen.to_people
        figures._where("not in Argilla", {r for r in people if seen.argilla[r] == 0})
        figures._where("not completed", {r for r in people if r not in seen.completed})
        for flow, formats in COUNTED_FORMATS.items():
            ids_of_flow = {r for r, f in fed.accepted.items() if f == flow}
            for fmt in formats:
                found = seen.exports.get(flow, {}).get(fmt)
                if found is None:
                    figures._where(f"no {fmt} version of {flow}", ids_of_flow)
                    continue
                version, ids = found
                where = f"{flow}/{fmt}/{version}"
                figures._where(f"not in {where}", {r for r in ids_of_flow if ids[r] == 0})
                doubled = {r: n for r, n in ids.items() if n > 1 and r in fed.accepted}
                if doubled:
                    figures.duplicated[where] = doubled
        in_argilla = {r: n for r, n in seen.argilla.items() if n > 1 and r in fed.accepted}
        if in_argilla:
            figures.duplicated["Argilla"] = in_argilla
        figures.unexpected_in_argilla = {
            r for r in seen.argilla if r in fed.accepted and r not in people
        }
        for topic, count in seen.dlq_offsets.items():
            read = sum(letter.topic == topic for letter in seen.dead_letters)
            if count > read:  # there, but not read back as dead letters
                figures.dead_lettered[f"{topic}: (by its end offsets)"] += count - read
        for letter in seen.dead_letters:
            figures.dead_lettered[f"{letter.topic}: {letter.letter.error_type}"] += 1
            if len(figures.dead_letter_examples) < SHOWN:
                figures.dead_letter_examples.append(
                    f"{letter.coordinates} record {letter.record_id}: {letter.letter.error[:300]}"
                )
        return figures

    def _where(self, where: str, ids: set[str]) -> None:
        if ids:
            self.lost[where] = ids

    def report(self) -> str:
        kills = ", ".join(f"{t} {self.kills[t]}" for t in TARGETS if t != "export-dir")
        lines = [
            "chaos figures",
            f"  records: {self.records} ({self.to_people} routed to people)",
            f"  kills: {sum(self.kills.values())} ({kills})",
            f"  lost: {len(self.lost_ids)}",
            *(f"    {where}: {len(ids)}: {_some(ids)}" for where, ids in self.lost.items()),
            f"  duplicated: {len(self.duplicated_ids)}",
            *(
                f"    in {where}: {len(ids)}: {_some([f'{r} x{n}' for r, n in ids.items()])}"
                for where, ids in self.duplicated.items()
            ),
            f"  dead-lettered: {sum(self.dead_lettered.values())}",
            *(f"    {kind}: {n}" for kind, n in self.dead_lettered.items()),
            *(f"    e.g. {example}" for example in self.dead_letter_examples),
            f"  replayed: {self.replayed}",
            f"  in Argilla though auto-accepted: {len(self.unexpected_in_argilla)}",
            f"  time: {self.seconds:.0f} s{'' if self.drained else ' (gave up waiting)'}",
            *(f"  {note}" for note in self.notes),
        ]
        return "\n".join(lines)
