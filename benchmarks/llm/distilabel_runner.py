"""The distilabel contender: its own virtualenv (from PyPI) and one subprocess run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DISTILABEL_VENV = REPO / ".loopline" / "bench" / "distilabel"
DISTILABEL_REQUIREMENTS = ("distilabel==1.5.3", "openai", "requests")
DISTILABEL_SIDE = Path(__file__).resolve().parent / "distilabel_side.py"


def ensure_distilabel_venv() -> Path:
    """The benchmark's distilabel virtualenv (created and installed from PyPI if missing)."""
    python = DISTILABEL_VENV / "bin" / "python"
    probe_code = "import distilabel, openai, requests; print(distilabel.__version__)"
    check = [str(python), "-c", probe_code]
    if python.exists():
        probe = subprocess.run(check, capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == "1.5.3":
            return python
    print(f"installing {' '.join(DISTILABEL_REQUIREMENTS)} into {DISTILABEL_VENV} ...")
    subprocess.run([sys.executable, "-m", "venv", str(DISTILABEL_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *DISTILABEL_REQUIREMENTS], check=True
    )
    subprocess.run(check, check=True, capture_output=True)
    return python


def run_distilabel(
    python: Path, job: dict[str, Any], work: Path, timeout_s: float
) -> tuple[dict[str, Any], float]:
    """Run the distilabel side; (its JSON result, the subprocess's own wall time)."""
    job_file = work / "distilabel-job.json"
    job_file.write_text(json.dumps(job))
    log_file = work / "distilabel.log"
    home = work / "home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "DISTILABEL_CACHE_DIR": job["cache_dir"],
    }
    for name in ("VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(name, None)
    started = time.perf_counter()
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [str(python), str(DISTILABEL_SIDE), str(job_file)],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=work,
            start_new_session=True,
        )
        try:
            stdout, _ = process.communicate(timeout=timeout_s)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
    elapsed = time.perf_counter() - started
    log_file.write_bytes(log_file.read_bytes() + stdout)
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith("DISTILABEL_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("DISTILABEL_RESULT "))
            return result, elapsed
    tail = log_file.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"distilabel exited {process.returncode} without a result:\n{tail}")
