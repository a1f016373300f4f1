"""The spine benchmark's LLM endpoint, in a process of its own: the scripted server
(`devstack.scripted_llm`) answering at once with the loop benchmark's answers (a short text for
a generation, a valid object of the judge's JSON schema).

Prints its base URL on the first line of stdout, then serves on 127.0.0.1 until SIGTERM or
SIGINT; on the way out it prints how many requests it answered.

    python benchmarks/spine/llm_server.py
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from devstack.scripted_llm import ScriptedLLM

sys.path.append(str(Path(__file__).resolve().parents[1] / "loop"))
from responder import respond


async def serve() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with ScriptedLLM(responder=respond) as llm:
        print(llm.base_url, flush=True)
        await stop.wait()
        print(f"answered {len(llm.received)} requests", flush=True)


if __name__ == "__main__":
    asyncio.run(serve())
