"""How many jobs Argilla's worker still has: webhook deliveries waiting, running or retrying.

Argilla enqueues one RQ job per webhook delivery (on its `high` queue) in the local stack's
Redis stand-in. The loop benchmark waits for them to be done before it stops the collector
(undelivered jobs would fail and retry for minutes, loading the next run) and before each run.
"""

from __future__ import annotations

import asyncio
import socket
import time

QUEUES = ("high", "default")


def _command(sock: socket.socket, *words: str) -> int:
    """One Redis command with an integer reply (RESP)."""
    request = f"*{len(words)}\r\n".encode()
    for word in words:
        request += f"${len(word.encode())}\r\n{word}\r\n".encode()
    sock.sendall(request)
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        reply += chunk
    if not reply.startswith(b":"):
        raise ValueError(f"unexpected Redis reply {reply[:80]!r} to {words[0]}")
    return int(reply[1:].strip())


def pending_jobs(host: str, port: int) -> int:
    """Jobs queued, running (`rq:wip`) or waiting for a retry (`rq:scheduled`), all queues."""
    with socket.create_connection((host, port), timeout=10) as sock:
        total = 0
        for queue in QUEUES:
            total += _command(sock, "LLEN", f"rq:queue:{queue}")
            total += _command(sock, "ZCARD", f"rq:wip:{queue}")
            total += _command(sock, "ZCARD", f"rq:scheduled:{queue}")
        return total


async def drain(host: str, port: int, timeout_s: float = 600.0) -> tuple[int, float]:
    """Wait until the worker has no job left; (jobs there were at first, seconds waited)."""
    started = time.monotonic()
    first = left = await asyncio.to_thread(pending_jobs, host, port)
    while left and time.monotonic() - started < timeout_s:
        await asyncio.sleep(1.0)
        left = await asyncio.to_thread(pending_jobs, host, port)
    if left:
        raise RuntimeError(f"Argilla's worker still has {left} job(s) after {timeout_s:.0f} s")
    return first, time.monotonic() - started
