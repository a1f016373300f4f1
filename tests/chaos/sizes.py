"""How much a chaos run feeds and how hard it attacks: the short form (`make test`) and the
long one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChaosSize:
    """How much a run feeds and how hard it attacks."""

    name: str
    records: int
    batch: int  # records per ingest request
    every_s: float  # between two requests
    rounds: int  # of attacks: each service, the export directory, the broker, Argilla
    gap_s: float  # between two attacks
    drain_timeout_s: float  # waiting for every record to finish, after the attacks
    test_timeout_s: float


SHORT = ChaosSize("short", 300, 10, 2.0, 1, 3.0, 600.0, 1500.0)
LONG = ChaosSize("long", 2000, 20, 2.0, 3, 5.0, 1800.0, 4800.0)
