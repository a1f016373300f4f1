"""Phoenix in the test stack: only its HTTP port listens, on loopback, and a span exported the
way the services export theirs (shared.telemetry, with the environment `loopline services up`
gives them) is found through Phoenix's own REST API under the project `loopline`."""

from __future__ import annotations

import ipaddress
import os
import socket
import time
import uuid
from pathlib import Path

import httpx
import pytest

import devstack as stack
from devstack.config import PHOENIX_PROJECT
from devstack.process import group_members
from devstack.services import service_env
from shared.settings import Settings
from shared.telemetry import build_tracer_provider

pytestmark = pytest.mark.integration

FIND_TIMEOUT_S = 60.0  # Phoenix stores spans in batches (~87 spans/s): poll


def _phoenix_pid(config: stack.StackConfig) -> int:
    part = {part.name: part for part in stack.status(config)}["phoenix"]
    assert part.healthy and part.pid is not None, part
    return part.pid


def _socket_inodes(pids: list[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def _address(hex_address: str, family: socket.AddressFamily) -> str:
    """/proc/net/tcp{,6} stores addresses as 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    ordered = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(family, ordered)


def listening_sockets(pids: list[int]) -> list[tuple[str, int]]:
    """The (address, port) of every TCP socket in LISTEN state held by these processes."""
    inodes = _socket_inodes(pids)
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                found.append((_address(address, family), int(port, 16)))
    return found


def test_phoenix_listens_on_its_http_port_on_loopback_only(
    local_stack: stack.StackConfig,
) -> None:
    pid = _phoenix_pid(local_stack)
    members = group_members(pid)
    assert pid in members
    listening = listening_sockets(members)
    # No gRPC receiver on [::]:4317, no other port: the HTTP one, on loopback.
    assert listening == [("127.0.0.1", local_stack.ports.phoenix)]
    assert all(ipaddress.ip_address(address).is_loopback for address, _ in listening)
    rss_kb = sum(
        int(line.split()[1])
        for member in members
        for line in Path(f"/proc/{member}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    print(f"phoenix: pid {pid}, {len(members)} process(es), RSS {rss_kb / 1024:.0f} MB")
    assert httpx.get(f"{local_stack.phoenix_url}/healthz", timeout=10).status_code == 200


def _spans_of_trace(
    config: stack.StackConfig, trace_id: str, count: int
) -> list[dict[str, object]]:
    """The trace's spans in the `loopline` project once Phoenix has stored `count` of them."""
    url = f"{config.phoenix_url}/v1/projects/{PHOENIX_PROJECT}/spans"
    deadline = time.monotonic() + FIND_TIMEOUT_S
    while True:
        response = httpx.get(url, params={"trace_id": trace_id}, timeout=10)
        # 404 until the project exists (created with its first span).
        if response.status_code == 200 and len(spans := response.json()["data"]) >= count:
            return list(spans)
        assert response.status_code in (200, 404), response.text
        if time.monotonic() > deadline:
            pytest.fail(f"trace {trace_id}: not {count} spans in Phoenix after {FIND_TIMEOUT_S}s")
        time.sleep(0.5)


def test_a_span_exported_like_a_services_is_found_in_phoenix(
    local_stack: stack.StackConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("LOOPLINE_TELEMETRY__OTLP_ENDPOINT", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    env = service_env(local_stack, tmp_path / "flows")
    for name in ("LOOPLINE_TELEMETRY__OTLP_ENDPOINT", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.setenv(name, env[name])
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    marker = uuid.uuid4().hex
    provider = build_tracer_provider("test", settings.telemetry)
    try:
        tracer = provider.get_tracer("loopline.tests.phoenix")
        with tracer.start_as_current_span("phoenix-check") as parent:
            parent.set_attribute("loopline.test.marker", marker)
            with tracer.start_as_current_span("phoenix-check-child"):
                pass
        trace_id = format(parent.get_span_context().trace_id, "032x")
        assert provider.force_flush(timeout_millis=10_000)
    finally:
        provider.shutdown()
    started = time.monotonic()
    spans = _spans_of_trace(local_stack, trace_id, 2)
    print(f"trace found in Phoenix {time.monotonic() - started:.1f}s after the flush")
    by_name = {span["name"]: span for span in spans}
    assert set(by_name) == {"phoenix-check", "phoenix-check-child"}
    root, child = by_name["phoenix-check"], by_name["phoenix-check-child"]
    assert root["attributes"]["loopline.test.marker"] == marker  # type: ignore[index]
    assert root["context"]["trace_id"] == trace_id  # type: ignore[index]
    assert child["parent_id"] == root["context"]["span_id"]  # type: ignore[index]
    projects = httpx.get(f"{local_stack.phoenix_url}/v1/projects", timeout=10).json()["data"]
    assert PHOENIX_PROJECT in [project["name"] for project in projects]
