"""Run a response's code with a record's tests: a separate Python process, with a wall-clock
timeout and resource limits (CPU seconds, address space, file size, no core dumps).

This is a guard against mistakes (an endless loop, a runaway allocation), not a security
boundary: the code runs as the current user and may reach the network and the file system.
Run untrusted code in a container or VM; the `run-tests` policy is a demo and test tool.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The child sets its own limits before it runs the script: no `preexec_fn`, which is unsafe
# in a process with threads (the runner calls policies from worker threads).
_BOOTSTRAP = """
import resource, runpy, sys
cpu, memory, files = (int(v) for v in sys.argv[1:4])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_FSIZE, (files, files))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
sys.argv = sys.argv[4:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
_FENCED = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PYTHON_TAGS = ("", "python", "py", "python3")
MAX_OUTPUT_CHARS = 2000


@dataclass(frozen=True)
class Limits:
    """What a test run may use."""

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 512
    file_mb: int = 16

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.cpu_s < 1 or self.memory_mb < 32 or self.file_mb < 1:
            raise ValueError("limits: timeout_s > 0, cpu_s >= 1, memory_mb >= 32 and file_mb >= 1")


@dataclass(frozen=True)
class TestRun:
    """The outcome of one response's code with the tests."""

    __test__ = False  # not a pytest test class

    passed: bool
    detail: str  # "passed", "timed out after ...", or the exit status and the output's tail


def extract_code(text: str) -> str:
    """The Python code of a response: its fenced Python (or untagged) blocks joined, else the
    whole text."""
    blocks = [
        body for tag, body in _FENCED.findall(text) if tag.lower() in _PYTHON_TAGS and body.strip()
    ]
    return "\n\n".join(blocks) if blocks else text


def run_with_tests(code: str, tests: str, limits: Limits) -> TestRun:
    """Run `code` followed by `tests` (asserts, or code that raises on failure): passed when
    the process exits with status 0 within `limits.timeout_s`."""
    with tempfile.TemporaryDirectory(prefix="loopline-run-tests-") as folder:
        script = Path(folder) / "solution_with_tests.py"
        script.write_text(f"{code}\n\n# --- tests ---\n{tests}\n", encoding="utf-8")
        command = [
            sys.executable,
            "-I",
            "-c",
            _BOOTSTRAP,
            str(limits.cpu_s),
            str(limits.memory_mb * 1024 * 1024),
            str(limits.file_mb * 1024 * 1024),
            str(script),
        ]
        process = subprocess.Popen(
            command,
            cwd=folder,
            env={"PATH": os.defpath, "PYTHONDONTWRITEBYTECODE": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
        try:
            output, _ = process.communicate(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            return TestRun(False, f"timed out after {limits.timeout_s:g} s")
        finally:
            _kill_group(process)
    if process.returncode == 0:
        return TestRun(True, "passed")
    tail = output.decode("utf-8", "replace")[-MAX_OUTPUT_CHARS:].strip()
    return TestRun(False, f"exit status {process.returncode}: {tail}")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill what is left of the run's process group and reap the process."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
