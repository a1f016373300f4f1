"""CPU seconds used during a contender's run: per stack server, this process, and the machine.

The stack's servers are found by their pid files (each with its process group); this
process holds Loopline's six services, the bots and the scripted LLM (or the anchor's SDK
calls and the same bots). The machine's busy time, less all of those, is what other people's
processes took (the machine is shared).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from devstack.config import StackConfig
from devstack.process import group_members, read_pid_file

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int | str) -> float:
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime + stime, and cutime + cstime: Argilla's worker forks a process per job
    return sum(int(x) for x in parts[11:15]) / TICKS


def _machine_busy_s() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICKS


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    busy_s: float
    parts: dict[str, float]  # name -> CPU seconds so far


@dataclass(frozen=True)
class CpuUse:
    wall_s: float
    parts: dict[str, float]  # name -> CPU seconds during the run
    others_s: float  # the machine's busy seconds not ours

    def line(self) -> str:
        shown = ", ".join(f"{name} {s:.0f}" for name, s in self.parts.items())
        capacity = self.wall_s * (os.cpu_count() or 1)
        return (
            f"CPU s: {shown}; other people's processes {self.others_s:.0f} "
            f"({self.others_s / capacity:.0%} of the machine)"
        )


class CpuMeter:
    def __init__(self, config: StackConfig) -> None:
        self.pid_files = sorted(config.run_dir.glob("*.pid"))

    def snapshot(self, wall: float) -> CpuSnapshot:
        parts = {"this process": _cpu_s("self")}
        for pid_file in self.pid_files:
            record = read_pid_file(pid_file)
            if record is not None:  # each server leads its own process group
                parts[pid_file.stem] = sum(_cpu_s(p) for p in group_members(record.pid))
        return CpuSnapshot(wall, _machine_busy_s(), parts)

    @staticmethod
    def use(before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
        parts = {name: after.parts[name] - before.parts.get(name, 0.0) for name in after.parts}
        ours = sum(parts.values())
        return CpuUse(after.wall - before.wall, parts, after.busy_s - before.busy_s - ours)
