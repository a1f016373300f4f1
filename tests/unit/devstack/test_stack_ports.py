"""Every port of the local stack is its own, on loopback: the durable broker's object store
takes a block of ports (one HTTP and one gRPC per part), none shared with another server."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from devstack import StackConfig
from devstack.components import stack_components
from devstack.config import OBJECT_STORE_PORTS
from devstack.testing import _ephemeral_ports, config_for_tests, free_port_block


def ports_of(config: StackConfig) -> Counter[int]:
    return Counter(port for component in stack_components(config) for port in component.ports)


def test_the_default_stack_gives_every_server_its_own_ports() -> None:
    config = StackConfig()
    counted = ports_of(config)
    assert [port for port, times in counted.items() if times > 1] == []
    store = {c.name: c for c in stack_components(config)}["object-store"]
    assert store.ports == tuple(range(9900, 9900 + OBJECT_STORE_PORTS))
    assert store.url == "http://127.0.0.1:9900"


def test_the_object_store_binds_loopback_and_sets_every_port_it_opens() -> None:
    store = {c.name: c for c in stack_components(StackConfig())}["object-store"]
    command = store.command
    assert command[command.index("-ip.bind") + 1] == "127.0.0.1"
    flags = {arg.split("=")[0] for arg in command if arg.startswith("-") and "port" in arg}
    # each part's HTTP and gRPC port, and the catalogs it would otherwise open on fixed ports
    assert {"-s3.port", "-s3.port.grpc", "-filer.port.grpc", "-volume.port.grpc"} <= flags
    assert "-s3.port.iceberg=0" in command and "-s3.port.lance=0" in command


def test_the_durable_test_stack_takes_a_free_block(tmp_path: Path) -> None:
    config = config_for_tests(tmp_path, tmp_path).model_copy(update={"kafka_mode": "durable"})
    counted = ports_of(config)
    assert [port for port, times in counted.items() if times > 1] == []


def test_a_port_block_avoids_taken_ports() -> None:
    taken: set[int] = set()
    first = free_port_block(4, taken)
    second = free_port_block(4, taken)
    assert taken == set(range(first, first + 4)) | set(range(second, second + 4))
    assert len(taken) == 8


def test_a_port_block_is_picked_outside_the_ephemeral_range() -> None:
    # Ports the kernel gives outgoing connections could be taken between the check and the
    # moment the object store opens them (CI: its filer's gRPC port was).
    ephemeral = _ephemeral_ports()
    for _ in range(20):
        first = free_port_block(OBJECT_STORE_PORTS, set())
        assert not set(range(first, first + OBJECT_STORE_PORTS)) & set(ephemeral)
