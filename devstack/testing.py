"""Helpers for tests that run against a real local stack (one per test session)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from devstack.config import OBJECT_STORE_PORTS, StackConfig, StackPorts

EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
BLOCK_PORTS_FROM = 20000  # port blocks are picked from here up to the ephemeral range


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _ephemeral_ports() -> range:
    """The ports the kernel hands out to outgoing connections (Linux's range; its default
    elsewhere)."""
    try:
        low, high = map(int, Path(EPHEMERAL_RANGE).read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_port_block(count: int, taken: set[int]) -> int:
    """The first of `count` consecutive loopback ports that are all free and not in `taken`,
    below the ephemeral range: a server that opens its ports seconds after the check (the
    object store's parts do) must not find one taken meanwhile by an outgoing connection."""
    ephemeral = _ephemeral_ports()
    low, high = BLOCK_PORTS_FROM, ephemeral.start
    if high - low < 10 * count:  # a system whose ephemeral range leaves nothing below it
        low, high = ephemeral.stop, 65536
    while True:
        first = random.randrange(low, high - count)
        block = range(first, first + count)
        if not taken & set(block) and all(map(_bindable, block)):
            taken.update(block)
            return first


def config_for_tests(state_dir: Path, install_dir: Path) -> StackConfig:
    """A small, fast stack: in-memory Kafka, fresh free ports, and both models, each on its own
    weights: the 0.5B is the default (what most tests call), the 1.5B answers to its own name
    (the end-to-end tests' second model and `default`'s judge, as under `make up`). Phoenix
    runs too, on its own free port, so tests can find the services' traces."""
    taken: set[int] = set()

    def pick() -> int:
        while (port := free_port()) in taken:
            pass
        taken.add(port)
        return port

    ports = StackPorts(
        kafka=pick(),
        object_store=free_port_block(OBJECT_STORE_PORTS, taken),
        argilla=pick(),
        search=pick(),
        redis=pick(),
        llm=pick(),
        llm_2=pick(),
        phoenix=pick(),
    )
    return StackConfig(
        state_dir=state_dir,
        install_dir=install_dir,
        kafka_mode="memory",
        model="0.5b",
        weights=None,
        ports=ports,
        llm_parallel=4,
        llm_context=8192,
    )


# The same, under the name `test_config`. Marked as not a test: pytest would otherwise collect
# it in any test module that imports it.
test_config = config_for_tests
test_config.__test__ = False  # type: ignore[attr-defined]
