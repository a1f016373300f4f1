"""The app client installed alone: a fresh virtualenv with only `loopline-client` in it sends
records to a running ingester, and has none of the server's packages."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from shared.events import RECORDS_INGESTED
from shared.settings import Settings
from tests.support.service_helpers import SUPPORT_KEY, read_records

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("faststream", "aiokafka", "argilla", "datasets", "matplotlib", "loopline")

SCRIPT = """
import json, sys
from loopline.client import LooplineClient

url, key, ids = sys.argv[1], sys.argv[2], sys.argv[3:]
client = LooplineClient(url, api_key=key, flow="support", batch_size=2, flush_interval_s=0.2)
for record_id in ids:
    client.log(record_id=record_id, instruction=f"alone {record_id}",
               responses=[{"text": "ok", "model": "app", "source": "app"}])
flushed = client.flush(timeout_s=30)
client.close()
print(json.dumps({"flushed": flushed, "sent": client.sent, "failed": client.failed}))
"""


async def run(*command: str | Path, cwd: Path) -> str:
    """Run a command without blocking the event loop the ingester serves from."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    process = await asyncio.create_subprocess_exec(
        *map(str, command),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=300)
    assert process.returncode == 0, err.decode()[-2000:]
    return out.decode()


async def test_the_client_alone_logs_to_a_running_ingester(
    api: httpx.AsyncClient, ingest_settings: Settings, tmp_path: Path
) -> None:
    venv = tmp_path / "app-venv"
    await run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    await run(python, "-m", "pip", "install", "-q", REPO / "clients" / "python", cwd=tmp_path)

    listed = json.loads(await run(python, "-m", "pip", "list", "--format=json", cwd=tmp_path))
    installed = {item["name"].lower() for item in listed}
    assert "loopline-client" in installed and "httpx" in installed
    assert installed.isdisjoint(SERVER_ONLY), installed & set(SERVER_ONLY)
    probe = "import importlib.util as u, sys; print([u.find_spec(m) is None for m in sys.argv[1:]])"
    absent = await run(python, "-c", probe, "shared", "services", "cli", "devstack", cwd=tmp_path)
    assert absent.strip() == "[True, True, True, True]"

    ids = [f"alone-{uuid.uuid4().hex[:12]}" for _ in range(5)]
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    result = json.loads(
        await run(python, script, str(api.base_url), SUPPORT_KEY, *ids, cwd=tmp_path)
    )
    assert result == {"flushed": True, "sent": 5, "failed": 0}
    arrived = await read_records(ingest_settings.kafka, RECORDS_INGESTED, set(ids))
    assert sorted(r.record_id for r in arrived) == sorted(ids)
