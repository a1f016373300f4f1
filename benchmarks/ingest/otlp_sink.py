"""A minimal OTLP/HTTP receiver for the benchmarks: the services export to it as to a collector.

It answers 200 (an empty export response) to every POST on /v1/traces, /v1/logs and
/v1/metrics, and counts requests, bytes and the spans in each traces export (gzip or not);
GET /stats returns the counts as JSON. It runs as its own process on a loopback port, so what
the benchmarks measure is the exporting side's cost, not a slow viewer's:

    with OtlpSink() as sink:  # starts `python otlp_sink.py --port P`, stopped by pid
        ...  # LOOPLINE_TELEMETRY__OTLP_ENDPOINT=sink.endpoint
        sink.stats()  # SinkStats(requests, bytes, spans)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import httpx

from devstack.testing import free_port


@dataclass(frozen=True)
class SinkStats:
    requests: int = 0
    bytes: int = 0  # request bodies as sent (compressed, if they were)
    spans: int = 0
    cpu_s: float = 0.0  # the sink process's CPU seconds so far

    def __sub__(self, other: SinkStats) -> SinkStats:
        return SinkStats(
            self.requests - other.requests,
            self.bytes - other.bytes,
            self.spans - other.spans,
            self.cpu_s - other.cpu_s,
        )


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes = 0
        self.spans = 0


def _span_count(body: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(
        len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans
    )


def _handler(counts: _Counts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector does

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            spans = 0
            if self.path == "/v1/traces":
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                raw = body
                if encoding == "gzip":
                    raw = gzip.decompress(body)
                elif encoding == "deflate":
                    raw = zlib.decompress(body)
                spans = _span_count(raw)
            elif self.path not in ("/v1/logs", "/v1/metrics"):
                self._answer(404, b"", "text/plain")
                return
            with counts.lock:
                counts.requests += 1
                counts.bytes += len(body)
                counts.spans += spans
            self._answer(200, b"", "application/x-protobuf")  # an empty export response

        def do_GET(self) -> None:
            if self.path != "/stats":
                self._answer(404, b"", "text/plain")
                return
            with counts.lock:
                found: dict[str, float] = {
                    "requests": counts.requests,
                    "bytes": counts.bytes,
                    "spans": counts.spans,
                }
            found["cpu_s"] = time.process_time()
            self._answer(200, json.dumps(found).encode(), "application/json")

    return Handler


def serve(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(_Counts()))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.2)


class OtlpSink:
    """The sink as a subprocess on a free loopback port (stopped by its pid on exit)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OtlpSink:
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--port", str(self.port)],
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError("the OTLP sink exited during start-up")
            try:
                self.stats()
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the OTLP sink did not start in time")

    def stats(self) -> SinkStats:
        answer = httpx.get(f"{self.endpoint}/stats", timeout=5)
        answer.raise_for_status()
        return SinkStats(**answer.json())

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args().port)
