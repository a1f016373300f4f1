"""What the LLM benchmark measures: the server's token counters and the machine's CPU time."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devstack.config import StackConfig


@dataclass
class Counters:
    """The LLM server's token counters and the machine's CPU time, at one moment."""

    predicted: float
    prompt: float
    busy_s: float  # CPU seconds the whole machine spent busy
    ours_s: float  # of which: this process (and its waited children), the LLM server, Kafka


@dataclass
class Result:
    name: str
    wall_s: float
    tokens: int  # completion tokens the server generated (its /metrics counter)
    prompt_tokens: int  # prompt tokens the server processed (cache hits excluded)
    done: str  # what came out
    other_cpu: float  # share of the machine's CPU used by processes not in the benchmark
    generation_tokens: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0


class Meter:
    """Reads the llama.cpp counters and the CPU time of the machine and of our processes."""

    def __init__(self, config: StackConfig) -> None:
        self.metrics_url = f"http://{config.host}:{config.ports.llm}/metrics"
        self.pids = [pid for name in ("llm", "kafka") if (pid := pid_of(config, name))]
        self.ticks = os.sysconf("SC_CLK_TCK")

    def _metrics(self) -> dict[str, float]:
        text = httpx.get(self.metrics_url, timeout=10).text
        values: dict[str, float] = {}
        for line in text.splitlines():
            match = re.match(r"llamacpp:(\w+)\s+([0-9.eE+-]+)$", line)
            if match:
                values[match.group(1)] = float(match.group(2))
        return values

    def _machine_busy_s(self) -> float:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return (sum(fields[:8]) - idle) / self.ticks

    def _ours_s(self) -> float:
        times = os.times()
        total = times.user + times.system + times.children_user + times.children_system
        for pid in self.pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            parts = stat.rsplit(")", 1)[1].split()
            total += (int(parts[11]) + int(parts[12])) / self.ticks  # utime + stime
        return total

    def read(self) -> Counters:
        metrics = self._metrics()
        return Counters(
            predicted=metrics.get("tokens_predicted_total", 0.0),
            prompt=metrics.get("prompt_tokens_total", 0.0),
            busy_s=self._machine_busy_s(),
            ours_s=self._ours_s(),
        )

    def result(
        self,
        name: str,
        before: Counters,
        wall_s: float,
        done: str,
        after: Counters | None = None,
        **extra: Any,
    ) -> Result:
        after = after or self.read()
        foreign_s = max(0.0, (after.busy_s - before.busy_s) - (after.ours_s - before.ours_s))
        return Result(
            name=name,
            wall_s=wall_s,
            tokens=round(after.predicted - before.predicted),
            prompt_tokens=round(after.prompt - before.prompt),
            done=done,
            other_cpu=foreign_s / (wall_s * (os.cpu_count() or 1)) if wall_s > 0 else 0.0,
            **extra,
        )


def pid_of(config: StackConfig, component: str) -> int | None:
    try:
        return int((config.run_dir / f"{component}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def count_tokens(config: StackConfig, texts: list[str]) -> int:
    """How many tokens the served model's tokenizer makes of `texts` (llama.cpp /tokenize)."""
    url = f"http://{config.host}:{config.ports.llm}/tokenize"
    with httpx.Client(timeout=60) as client:
        return sum(len(client.post(url, json={"content": t}).json()["tokens"]) for t in texts)


def print_table(results: list[Result]) -> None:
    width = max(len(r.name) for r in results) + 2
    print()
    print(
        f"{'contender':<{width}}{'wall s':>9}{'compl. tokens':>15}{'tokens/s':>10}"
        f"{'prompt tok':>12}{'other CPU':>11}  output"
    )
    for r in results:
        print(
            f"{r.name:<{width}}{r.wall_s:9.1f}{r.tokens:15,}{r.tokens_per_s:10.1f}"
            f"{r.prompt_tokens:12,}{r.other_cpu:10.0%}  {r.done}"
        )
        for note in r.notes:
            print(f"{'':<{width + 2}}{note}")
