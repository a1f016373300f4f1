"""The chaos suite's LLM endpoint: the scripted server (`devstack.scripted_llm`) answering like
the loop benchmark's instant endpoint, except that a share of the calls fail.

A failing call is, in turn at random: a 500, a 503, a 429 with `Retry-After: 1`, a 200 whose
body is not JSON, or a hang (nothing said for longer than the services' LLM timeout, then the
connection dropped). The other calls get the benchmark's answers: a short text for a
generation, a valid object of the judge's JSON schema (response A rated 4, B 2: margin 2).
"""

from __future__ import annotations

import importlib.util
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.scripted_llm import Behaviour, hang, malformed, status

REPO = Path(__file__).resolve().parents[2]
FAULTS = ("500", "503", "429", "malformed", "hang")


def _benchmark_responder() -> Callable[[dict[str, Any]], str]:
    """`benchmarks/loop/responder.py`'s `respond` (the benchmarks folder is not a package)."""
    path = REPO / "benchmarks" / "loop" / "responder.py"
    spec = importlib.util.spec_from_file_location("loop_bench_responder", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    respond: Callable[[dict[str, Any]], str] = module.respond
    return respond


class FlakyResponder:
    """A `ScriptedLLM` responder failing `fail_share` of the calls (seeded, so reproducible)."""

    def __init__(self, fail_share: float, hang_s: float, seed: int = 13) -> None:
        self.fail_share = fail_share
        self.hang_s = hang_s
        self.rng = random.Random(seed)
        self.answer = _benchmark_responder()
        self.calls = 0
        self.faults: Counter[str] = Counter()

    def __call__(self, body: dict[str, Any]) -> str | Behaviour:
        self.calls += 1
        if self.rng.random() >= self.fail_share:
            return self.answer(body)
        fault = self.rng.choice(FAULTS)
        self.faults[fault] += 1
        if fault == "hang":
            return hang(self.hang_s)
        if fault == "malformed":
            return malformed()
        if fault == "429":
            return status(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
        return status(int(fault), {"error": {"message": f"chaos: injected {fault}"}})

    def line(self) -> str:
        failed = sum(self.faults.values())
        share = failed / self.calls if self.calls else 0.0
        kinds = ", ".join(f"{kind} {self.faults[kind]}" for kind in FAULTS)
        return f"{self.calls} calls, {failed} failed on purpose ({share:.0%}: {kinds})"
