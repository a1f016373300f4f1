"""Peak memory of a benchmark's child process and the processes it starts, sampled from the
benchmark's own process (a thread of the parent, not of the contender).

Two sums over the process tree at each sample: PSS (proportional resident memory: a page
shared by k processes counts 1/k in each, so forked workers are not counted twice) and RSS
(resident memory, shared pages counted in every process that maps them). Peaks are kept for
the whole run and per phase, the phase being whatever the child last announced.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def resident_mb(pid: int) -> tuple[float, float]:
    """(PSS, RSS) of a process in MB; zeros once it is gone."""
    pss = rss = 0.0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) / 1024
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1]) / 1024
    except OSError:
        pass
    return pss, rss


@dataclass
class Peak:
    pss_mb: float = 0.0  # the largest PSS sum over the tree
    rss_mb: float = 0.0  # the largest RSS sum over the tree
    each: dict[int, float] = field(default_factory=dict)  # pid -> its own largest PSS

    def add(self, sample: dict[int, tuple[float, float]]) -> None:
        self.pss_mb = max(self.pss_mb, sum(pss for pss, _ in sample.values()))
        self.rss_mb = max(self.rss_mb, sum(rss for _, rss in sample.values()))
        for pid, (pss, _) in sample.items():
            self.each[pid] = max(self.each.get(pid, 0.0), pss)


class PeakMemory:
    """Samples the tree under `root` every `every_s` seconds while entered; `phase` names the
    phase the next samples count towards."""

    def __init__(self, root: int, every_s: float = 0.25) -> None:
        self.root = root
        self.phase = ""
        self.total = Peak()
        self.phases: dict[str, Peak] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(every_s,), daemon=True)

    def _sample(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            now = {pid: resident_mb(pid) for pid in process_tree(self.root)}
            self.total.add(now)
            self.phases.setdefault(self.phase, Peak()).add(now)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self, main_rss_mb: float) -> dict[str, float]:
        helpers = [mb for pid, mb in self.total.each.items() if pid != self.root]
        return {
            "peak_rss_mb": max(self.total.pss_mb, main_rss_mb),  # all processes (PSS)
            "main_rss_mb": main_rss_mb,
            "helper_mb": max(helpers, default=0.0),  # the largest other process
            "processes": len(self.total.each),
        }
