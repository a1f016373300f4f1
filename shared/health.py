"""A service's health port: `GET /healthz` and `GET /metrics`.

* `/healthz` answers 200 once the service runs (its start steps done, the broker started)
  and each of its consumers has joined its group (`shared.group_membership`), while the broker
  answers a ping; else 503 (`status`: starting, joining its consumer group, broker unreachable,
  stopping). Its JSON body has the service, its status, the partitions each consumer holds,
  messages processed and in flight, what it is waiting on, its latest failure (`last_error`:
  when, what, which kind; null if none), its uptime.
* `/metrics` is prometheus_client's own exposition of the default registry (`shared.metrics`:
  FastStream's broker metrics, Loopline's, the LLM client's, the process's), in the text or
  OpenMetrics format as the scraper asks, gzipped when it accepts that.

Served by uvicorn inside the service's event loop, on a socket bound before it starts (a port
in use fails the start with the OSError). While it runs, a `LagMonitor` keeps the consumer-lag
gauge of the service's group up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

import uvicorn
from prometheus_client import REGISTRY, make_asgi_app
from starlette.responses import JSONResponse

from shared import consumer_lag
from shared.consumer_lag import LagMonitor

if TYPE_CHECKING:
    from shared.service import ServiceContext

log = logging.getLogger("loopline.health")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _status(context: ServiceContext, connected: bool) -> str:
    if not connected:
        return "broker unreachable"
    if context.stats.phase != "running":
        return context.stats.phase  # starting (its start steps, the broker) or stopping
    if waiting := context.membership.waiting():
        return f"joining its consumer group ({', '.join(waiting)})"
    return "ok"


async def health_body(context: ServiceContext) -> tuple[int, dict[str, Any]]:
    """The `/healthz` answer: its status code and body."""
    status = _status(context, await context.broker.ping(timeout=2.0))
    body: dict[str, Any] = {
        "service": context.name,
        "status": status,
        "partitions": context.membership.partitions(),
        "processed": context.stats.processed,
        "in_flight": context.stats.in_flight,
        "waiting_on": context.dead_letters.waiting_on,
        "last_error": last.as_json() if (last := context.dead_letters.last_error) else None,
        "uptime_s": round(time.monotonic() - context.stats.started_at, 1),
    }
    return (200 if status == "ok" else 503), body


def health_app(context: ServiceContext) -> App:
    """The ASGI app of the health port."""
    metrics: App = make_asgi_app(REGISTRY)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/metrics":
            await metrics(scope, receive, send)
            return
        if path == "/healthz":
            status, body = await health_body(context)
        else:
            status, body = 404, {"error": "only GET /healthz and GET /metrics are served"}
        await JSONResponse(body, status_code=status)(scope, receive, send)

    return app


class _EmbeddedServer(uvicorn.Server):
    """Uvicorn inside a service: the service, not uvicorn, handles SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.create_server((host, port), family=family)
    sock.setblocking(False)
    return sock


class HealthServer:
    """The health port of one service while it runs (`serve_health`)."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], port: int) -> None:
        self._server = server
        self._task = task
        self.port = port
        self.lag: LagMonitor | None = None

    async def stop(self) -> None:
        if self.lag is not None:
            await self.lag.stop()
        self._server.should_exit = True
        await self._task


async def serve_health(
    context: ServiceContext,
    host: str,
    port: int,
    consumes: Sequence[str] = (),
    lag_interval_s: float | None = None,
) -> HealthServer:
    """Serve `/healthz` and `/metrics` on `host:port` (0: a free port, `HealthServer.port`),
    and keep the lag of the service's group on `consumes` (logical topic names) up to date
    every `lag_interval_s` (`shared.consumer_lag.LAG_INTERVAL_S` when not given)."""
    sock = _bind(host, port)
    config = uvicorn.Config(
        health_app(context), log_level="warning", lifespan="off", access_log=False
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"{context.name} health")
    while not server.started:
        if task.done():
            sock.close()
            task.result()  # raise the start-up error
            raise RuntimeError(f"the health server on {host}:{port} stopped during start-up")
        await asyncio.sleep(0.01)
    health = HealthServer(server, task, sock.getsockname()[1])
    if consumes:
        health.lag = LagMonitor(
            context.name,
            context.settings.kafka,
            context.group_id,
            consumes,
            interval_s=lag_interval_s or consumer_lag.LAG_INTERVAL_S,
        )
        health.lag.start()
    log.info(
        "%s: health at http://%s:%s/healthz, metrics at /metrics", context.name, host, health.port
    )
    return health
