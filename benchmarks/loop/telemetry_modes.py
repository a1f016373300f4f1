"""Telemetry on and off for the loop benchmark: the services' settings, their logs, the figures.

On is production's: spans recorded and exported over OTLP/HTTP (to the ingest benchmark's
`otlp_sink.py`, a minimal receiver in its own process), the brokers' metrics middlewares, JSON
logs at INFO. Off: `TelemetrySettings(enabled=False)`, the same logs. Either way the logs go
to a file per run (the console keeps warnings and the collector's reconciliation lines).
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Protocol, TypeVar

from shared.logs import RecordContext, SecretMask, formatter
from shared.settings import TelemetrySettings

sys.path.append(str(Path(__file__).resolve().parents[1] / "ingest"))
from otlp_sink import OtlpSink, SinkStats

__all__ = [
    "LogFile",
    "OtlpSink",
    "SinkStats",
    "compare",
    "exporter_cpu_s",
    "modes",
    "settings_for",
]

MODES = {"both": ("off", "on"), "on": ("on",), "off": ("off",)}
_CONSOLE = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def modes(telemetry: str, runs: int) -> list[str]:
    """The mode of each Loopline run: `runs` of each, alternating (off, on; on, off; ...)."""
    chosen = MODES[telemetry]
    return [chosen[(k + i) % len(chosen)] for k in range(runs) for i in range(len(chosen))]


def exporter_cpu_s() -> float:
    """The CPU seconds so far of this process's span exporters: the OpenTelemetry SDK's batch
    processors' threads (one per service) that encode spans and send them."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for thread in threading.enumerate():
        if not thread.name.startswith("OtelBatch") or thread.native_id is None:
            continue
        try:
            parts = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:  # it ended
            continue
        fields = parts.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def settings_for(mode: str, sink: OtlpSink) -> TelemetrySettings:
    if mode == "on":
        return TelemetrySettings(otlp_endpoint=sink.endpoint)
    return TelemetrySettings(enabled=False)


class _Console(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.startswith(
            "loopline.feedback_collector"
        )


class LogFile:
    """The process's logs as a service writes them (JSON lines at INFO with the record's
    context and secrets masked: `shared.logs`' formatter and filters), into one file per run;
    warnings and the collector's lines on the console as well."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self._file: IO[str] = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        self.handler = logging.StreamHandler(self._file)
        self.handler.setFormatter(formatter("json"))
        self.handler.addFilter(RecordContext())
        self.handler.addFilter(SecretMask(secrets))
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter(_CONSOLE))
        console.addFilter(_Console())
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(self.handler)
        root.addHandler(console)
        root.setLevel(logging.INFO)
        logging.getLogger("aiokafka").setLevel(logging.WARNING)  # as `loopline run` has it

    def into(self, path: Path) -> None:
        """Write the JSON lines into `path` from now on."""
        previous = self.handler.setStream(path.open("a", encoding="utf-8"))
        if previous is not None:
            previous.close()

    @staticmethod
    def lines(path: Path) -> int:
        with path.open("rb") as lines:
            return sum(1 for _ in lines)


class Measured(Protocol):
    """What the comparison needs of a Loopline run."""

    mode: str
    seconds: float


Run = TypeVar("Run", bound=Measured)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def compare(runs: Sequence[Run], figures: dict[str, Callable[[Run], float | None]]) -> list[str]:
    """Per figure: its median with telemetry off and on, and on / off."""
    lines = []
    for name, figure in figures.items():
        medians = {}
        for mode in ("off", "on"):
            values = [v for r in runs if r.mode == mode for v in [figure(r)] if v is not None]
            medians[mode] = (_median(values), len(values))
        (off, n_off), (on, n_on) = medians["off"], medians["on"]
        ratio = on / off if off and n_off and n_on else float("nan")
        lines.append(
            f"{name:<38}{off:>10.2f}{on:>10.2f}{ratio:>9.2f}   (runs: {n_off} off, {n_on} on)"
        )
    return [f"{'median':<38}{'off':>10}{'on':>10}{'on/off':>9}", *lines]
