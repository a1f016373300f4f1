"""The AsyncAPI document covers every topic each service reads and writes, from the services'
own specs: typed payloads, keys, consumer groups, dead-letter topics; and the committed copy is
the one the services generate now."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import pytest

from shared.asyncapi import build_document, to_yaml, topics_of
from shared.dead_letters import H_ATTEMPTS, H_ERROR, H_ERROR_TYPE, H_SERVICE, H_TOPIC
from shared.events import ALL_TOPICS, dead_letter_topic
from shared.service import ServiceSpec, consumer_group
from shared.settings import KafkaSettings, Settings
from shared.topic_contract import TOPICS

REPO = Path(__file__).resolve().parents[3]
COMMITTED = REPO / "docs" / "asyncapi.yaml"
KAFKA = KafkaSettings()
# AsyncAPI 3.0's pattern for the keys of channels, operations and components.
ID = re.compile(r"^[\w.\-]+$")


def resolve(document: dict[str, Any], node: dict[str, Any]) -> Any:
    """Follow `$ref`s (local ones: the document must stand alone) to what they point at."""
    while isinstance(node, dict) and "$ref" in node:
        reference = node["$ref"]
        assert reference.startswith("#/"), reference
        found: Any = document
        for part in reference[2:].split("/"):
            assert part in found, f"{reference} does not resolve"
            found = found[part]
        node = found
    return node


def operations(document: dict[str, Any], service: str, action: str) -> dict[str, dict[str, Any]]:
    """The service's operations of one action, by the address of their channel."""
    found = {}
    for operation in document["operations"].values():
        if operation["action"] == action and {"name": service} in operation["tags"]:
            address = resolve(document, operation["channel"])["address"]
            assert address not in found, f"{service} {action} {address} twice"
            found[address] = operation
    return found


def message_of(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    [reference] = operation["messages"]
    message: dict[str, Any] = resolve(document, reference)
    return message


def payload_of(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = resolve(document, message_of(document, operation)["payload"])
    return payload


def test_the_committed_document_is_up_to_date(document: dict[str, Any]) -> None:
    generated = to_yaml(document)
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.is_file() else ""
    difference = difflib.unified_diff(
        committed.splitlines(), generated.splitlines(), "committed", "generated", lineterm=""
    )
    assert committed == generated, (
        "docs/asyncapi.yaml is out of date with the services: regenerate it with "
        "`loopline asyncapi write` (from the repository root) and commit it.\n"
        + "\n".join(list(difference)[:40])
    )


def test_every_topic_a_service_reads_is_received_typed_in_its_consumer_group(
    document: dict[str, Any], specs: list[ServiceSpec]
) -> None:
    read = 0
    for spec in specs:
        received = operations(document, spec.name, "receive")
        assert set(received) == {KAFKA.topic(t) for t in spec.consumes}, spec.name
        for topic in spec.consumes:
            operation = received[KAFKA.topic(topic)]
            group = operation["bindings"]["kafka"]["groupId"]
            assert group["enum"] == [consumer_group(KAFKA, spec.name)]
            payload = payload_of(document, operation)
            assert payload["title"] == TOPICS[topic].event.__name__
            assert payload["properties"], f"{spec.name} reads {topic} with an empty schema"
            read += 1
    assert read >= 6  # ingester 1, generator 1, judge 1, publisher 1, exporter 2


def test_every_topic_a_service_reads_has_a_dead_letter_topic_it_writes(
    document: dict[str, Any], specs: list[ServiceSpec]
) -> None:
    for spec in specs:
        sent = operations(document, spec.name, "send")
        for topic in spec.consumes:
            dead = sent.get(KAFKA.topic(dead_letter_topic(topic)))
            assert dead is not None, f"{spec.name} has no dead-letter channel for {topic}"
            message = message_of(document, dead)
            headers = resolve(document, message["headers"])
            assert {H_ERROR, H_ERROR_TYPE, H_SERVICE, H_ATTEMPTS, H_TOPIC} <= set(
                headers["required"]
            )
            # The original bytes: the schema of what the source topic carries.
            assert payload_of(document, dead)["title"] == TOPICS[topic].event.__name__


def test_every_topic_a_service_writes_is_sent_with_a_non_empty_schema(
    document: dict[str, Any], specs: list[ServiceSpec]
) -> None:
    for spec in specs:
        sent = operations(document, spec.name, "send")
        for topic in spec.produces:
            operation = sent.get(KAFKA.topic(topic))
            assert operation is not None, f"{spec.name} writes {topic}: not in the document"
            payload = payload_of(document, operation)
            assert payload["properties"], f"{spec.name} writes {topic} with an empty schema"
            if topic in TOPICS:
                assert payload["title"] == TOPICS[topic].event.__name__


def test_the_document_has_the_services_topics_and_no_other(
    document: dict[str, Any], specs: list[ServiceSpec]
) -> None:
    addresses = {channel["address"] for channel in document["channels"].values()}
    expected = {KAFKA.topic(topic) for topic in topics_of(specs)}
    assert addresses == expected
    # Every topic a flow's records pass through is read or written by some service.
    assert set(ALL_TOPICS) <= {t for t in topics_of(specs) if not t.endswith(".dlq")}


def test_every_message_says_how_it_is_keyed(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    assert len(messages) >= len(ALL_TOPICS)
    for name, message in messages.items():
        key = message["bindings"]["kafka"]["key"]
        assert key["type"] == "string" and key["description"], name
    assert "record_id" in messages["records.judged"]["bindings"]["kafka"]["key"]["description"]
    assert (
        "<flow>/<format>"
        in messages["datasets.exported"]["bindings"]["kafka"]["key"]["description"]
    )


def test_every_reference_resolves_and_every_name_is_a_valid_id(document: dict[str, Any]) -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(document, node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    names = [*document["channels"], *document["operations"]]
    names += [n for part in document["components"].values() for n in part]
    names += [n for channel in document["channels"].values() for n in channel["messages"]]
    assert [name for name in names if not ID.match(name)] == []
    assert document["asyncapi"] == "3.0.0"


def test_the_document_describes_the_defaults_whatever_the_environment(
    document: dict[str, Any], specs: list[ServiceSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_KAFKA__TOPIC_PREFIX", "team-a.")
    monkeypatch.setenv("LOOPLINE_KAFKA__GROUP_PREFIX", "team-a")
    monkeypatch.setenv("LOOPLINE_KAFKA__BOOTSTRAP_SERVERS", "kafka.example:9092")
    assert build_document(specs) == document


def test_a_flow_sets_topic_prefix_goes_in_front_of_every_address(
    specs: list[ServiceSpec],
) -> None:
    kafka = KafkaSettings(topic_prefix="team-a.", group_prefix="team-a")
    prefixed = build_document(specs, Settings(kafka=kafka))
    for name, channel in prefixed["channels"].items():
        assert channel["address"] == f"team-a.{name}"
        assert channel["bindings"]["kafka"]["topic"] == f"team-a.{name}"
    groups = [
        op["bindings"]["kafka"]["groupId"]["enum"][0]
        for op in prefixed["operations"].values()
        if op["action"] == "receive"
    ]
    assert groups and all(group.startswith("team-a-") for group in groups)


def test_a_topic_without_a_contract_is_refused_by_name() -> None:
    spec = ServiceSpec(name="x", consumes=("records.mystery",), produces=(), register=print)
    with pytest.raises(KeyError, match=r"records\.mystery.*no contract"):
        build_document([spec])
