"""What the local stack reports: the status of each part, and the error raised when one fails."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

LOG_TAIL_LINES = 40


class ComponentStatus(BaseModel):
    """One server of the local stack, as `loopline stack status` shows it."""

    model_config = ConfigDict(frozen=True)

    name: str
    healthy: bool
    url: str
    pid: int | None
    detail: str = ""


class StackError(RuntimeError):
    """A part of the local stack could not be installed or started.

    `component` names the part, `log_tail` holds the last lines of its log.
    """

    def __init__(
        self, component: str, reason: str, log_tail: str = "", log_path: Path | None = None
    ):
        self.component = component
        self.reason = reason
        self.log_tail = log_tail
        self.log_path = log_path
        super().__init__(self._message())

    def _message(self) -> str:
        message = f"{self.component} failed: {self.reason}"
        if self.log_path is not None:
            message += f"\n(log: {self.log_path})"
        if self.log_tail:
            message += f"\n--- last lines of the {self.component} log ---\n{self.log_tail}"
        return message


def read_log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file, or "" if there is none."""
    try:
        with path.open("rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(0, size - 64 * 1024))
            text = log.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def failure(component: str, reason: str, log_path: Path) -> StackError:
    """A StackError for `component` that carries the tail of its log."""
    return StackError(component, reason, read_log_tail(log_path), log_path)
