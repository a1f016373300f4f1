"""The AsyncAPI document of every topic, generated from the services' specs.

Each service's broker is built as `run_service` builds it (`shared.broker.build_broker`, never
started), and on it each topic its `ServiceSpec` reads or writes is declared, typed with the
topic's event (`shared.topic_contract.TOPICS`): a subscriber in the service's consumer group per
topic it consumes, a publisher per topic it produces, and a publisher per dead-letter topic of
what it consumes. FastStream's AsyncAPI generator turns these into channels, operations and
the events' JSON schemas; `assemble` then makes one channel per topic (the services that write
and read it are its operations) and adds what FastStream leaves out: each message's Kafka key,
its headers (dead letters' included), the consumer groups. The services' own registration is
not run: it connects to Argilla and starts background work.

The document describes the settings' defaults (topic prefix, group prefix, bootstrap servers),
not the environment: it is the contract, the same wherever it is generated. Its committed copy
is `docs/asyncapi.yaml` (`loopline asyncapi write`; a unit test fails when it is out of date).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel

from shared.broker import build_broker
from shared.events import ALL_TOPICS, DLQ_SUFFIX, SCHEMA_VERSION, dead_letter_topic
from shared.service import ServiceSpec, consumer_group
from shared.settings import KafkaSettings, Settings
from shared.topic_contract import (
    TOPICS,
    DeadLetterHeaders,
    EventHeaders,
    TopicContract,
    UnsentEventReference,
)

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
TITLE = "Loopline topics"
SCHEMAS = "#/components/schemas/"
Action = Literal["receive", "send"]
# event: the topic's event; dead_letter: a consumed message that could not be handled (its
# original bytes); unsent: a reference to an event that could not be sent (`UnsentEventReference`).
MessageKind = Literal["event", "dead_letter", "unsent"]

INFO = """\
The contract of every Kafka topic Loopline's services read and write: what each message is,
how it is keyed, and where the messages that cannot be handled go.

- **Names.** Channels carry the topics' logical names. On the cluster a topic is
  `LOOPLINE_KAFKA__TOPIC_PREFIX` + name (empty by default); a service's consumer group is
  `LOOPLINE_KAFKA__GROUP_PREFIX-<service>` (`loopline-<service>` by default).
- **Messages.** Each value is one event as JSON (UTF-8) with its `schema_version`; events
  refuse unknown fields. Keys are the record id (UTF-8) unless a channel says otherwise.
  Delivery is at least once: consumers are idempotent.
- **Dead letters.** A message a service cannot handle goes, alone, to `<topic>.dlq` with its
  original bytes and key, and headers that say why (`DeadLetterHeaders`); `loopline dlq
  list|show|replay` reads them and puts them back.

Generated from the services by `loopline asyncapi write` (a unit test fails when this copy is
out of date)."""


@dataclass(frozen=True)
class Endpoint:
    """One topic a service reads or writes, and what its messages are."""

    service: str
    action: Action
    topic: str  # logical name
    kind: MessageKind
    source: str  # the topic whose event the message is (or was, for a dead letter)

    @property
    def operation_id(self) -> str:
        return f"{self.service}.{self.action}.{self.topic}"

    @property
    def message_id(self) -> str:
        return f"{self.topic}.unsent" if self.kind == "unsent" else self.topic


def endpoints(spec: ServiceSpec) -> list[Endpoint]:
    """What `spec` reads (and dead-letters) and writes, from its `consumes` and `produces`."""
    found = []
    for topic in spec.consumes:
        found.append(Endpoint(spec.name, "receive", topic, "event", topic))
        dead = dead_letter_topic(topic)
        found.append(Endpoint(spec.name, "send", dead, "dead_letter", topic))
    for topic in spec.produces:
        if topic.endswith(DLQ_SUFFIX):  # what the service could not send (the collector's)
            source = topic.removesuffix(DLQ_SUFFIX)
            found.append(Endpoint(spec.name, "send", topic, "unsent", source))
        else:
            found.append(Endpoint(spec.name, "send", topic, "event", topic))
    return found


def contract(topic: str) -> TopicContract:
    try:
        return TOPICS[topic]
    except KeyError:
        raise KeyError(f"topic {topic!r} has no contract in shared.topic_contract.TOPICS") from None


def payload_model(endpoint: Endpoint) -> type[BaseModel]:
    if endpoint.kind == "unsent":
        return UnsentEventReference
    return contract(endpoint.source).event


def _reader(model: type[BaseModel]) -> Callable[[Any], Awaitable[None]]:
    """A handler typed with `model`, so the subscriber's document carries its schema."""

    async def read(event: Any) -> None:
        """Never called: the broker is only documented, never started."""

    read.__annotations__ = {"event": model, "return": None}
    return read


def declared_broker(spec: ServiceSpec, settings: Settings) -> KafkaBroker:
    """The service's broker as `run_service` builds it, with its topics declared on it."""
    broker, _ = build_broker(settings, spec.name)
    kafka = settings.kafka
    for endpoint in endpoints(spec):
        model, title = payload_model(endpoint), endpoint.operation_id
        if endpoint.action == "receive":
            group = consumer_group(kafka, spec.name)
            subscriber = broker.subscriber(kafka.topic(endpoint.topic), group_id=group, title=title)
            subscriber(_reader(model))
        else:
            broker.publisher(kafka.topic(endpoint.topic), schema=model, title=title)
    return broker


def contract_settings() -> Settings:
    """The settings the document describes: Kafka's defaults, whatever the environment says."""
    return Settings(kafka=KafkaSettings())


def build_document(
    specs: Sequence[ServiceSpec], settings: Settings | None = None
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic the services in `specs` read and write."""
    settings = settings if settings is not None else contract_settings()
    brokers = [declared_broker(spec, settings) for spec in specs]
    raw = AsyncAPI(
        *brokers, title=TITLE, version=str(SCHEMA_VERSION), schema_version=ASYNCAPI_VERSION
    ).to_specification()
    return assemble(raw.to_jsonable(), specs, settings.kafka)


def _resolve(document: dict[str, Any], reference: str) -> Any:
    found: Any = document
    for part in reference.removeprefix("#/").split("/"):
        found = found[part.replace("~1", "/").replace("~0", "~")]
    return found


def _payload(raw: dict[str, Any], operation_id: str) -> dict[str, Any]:
    """The payload schema (a reference) FastStream gave an operation's message."""
    message = _resolve(raw, raw["operations"][operation_id]["messages"][0]["$ref"])
    while "$ref" in message:
        message = _resolve(raw, message["$ref"])
    payload: dict[str, Any] = message["payload"]
    return payload


def _key(schema_description: str) -> dict[str, Any]:
    return {
        "kafka": {
            "key": {"type": "string", "description": schema_description},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
    }


def _message(endpoint: Endpoint, payload: dict[str, Any]) -> dict[str, Any]:
    source = endpoint.source
    event = contract(source)
    headers: type[BaseModel]
    if endpoint.kind == "event":
        title, summary = f"{event.event.__name__} on {source}", event.summary
        headers, key = EventHeaders, event.key
    elif endpoint.kind == "dead_letter":
        title = f"Dead letter of {source}"
        summary = (
            f"A message of {source} a consumer could not handle: its original bytes (so not "
            "necessarily a valid event) and key."
        )
        headers, key = DeadLetterHeaders, f"The original message's key, unchanged ({source})."
    else:
        title = f"Unsent {source} event"
        summary = (
            f"An event of {source} too large to send: a reference to it instead (the record "
            f"stays in Argilla). Its `{DeadLetterHeaders.model_fields['replayable'].alias}` "
            'header is "false".'
        )
        headers, key = DeadLetterHeaders, event.key
    return {
        "name": endpoint.message_id,
        "title": title,
        "summary": summary,
        "contentType": "application/json",
        "headers": {"$ref": f"{SCHEMAS}{headers.__name__}"},
        "payload": payload,
        "bindings": _key(key),
    }


def _channel_description(topic: str, writers: list[str], readers: list[str]) -> str:
    if topic.endswith(DLQ_SUFFIX):
        source = topic.removesuffix(DLQ_SUFFIX)
        lines = [
            f"Dead letters of `{source}`: each message a service could not handle, alone, with "
            "the reason in its headers. `loopline dlq replay` puts them back."
        ]
    else:
        event = contract(topic)
        lines = [event.summary, event.description, f"Key: {event.key}"]
    lines.append(f"Written by: {', '.join(writers) or 'none of the services'}.")
    lines.append(f"Read by: {', '.join(readers) or 'none of the services (any consumer may)'}.")
    return "\n\n".join(line for line in lines if line)


def _order(name: str) -> tuple[int, str]:
    """Topics (and their messages) in the order records flow, each dead-letter topic after its
    topic."""
    base = name.removesuffix(".unsent").removesuffix(DLQ_SUFFIX)
    index = ALL_TOPICS.index(base) if base in ALL_TOPICS else len(ALL_TOPICS)
    return (index, name)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def assemble(
    raw: dict[str, Any], specs: Sequence[ServiceSpec], kafka: KafkaSettings
) -> dict[str, Any]:
    """One channel per topic, one operation per service and topic, the messages with their
    keys and headers, and the schemas FastStream derived from the events."""
    channels: dict[str, dict[str, Any]] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    writers: dict[str, list[str]] = {}
    readers: dict[str, list[str]] = {}
    for spec in specs:
        for endpoint in endpoints(spec):
            topic, message_id = endpoint.topic, endpoint.message_id
            if message_id not in messages:
                payload = _payload(raw, endpoint.operation_id)
                messages[message_id] = _message(endpoint, payload)
            channel = channels.setdefault(topic, _channel(topic, kafka))
            channel["messages"][message_id] = {"$ref": f"#/components/messages/{message_id}"}
            if endpoint.action == "receive":
                group = consumer_group(kafka, spec.name)
                readers.setdefault(topic, []).append(f"{spec.name} (group {group})")
            else:
                writers.setdefault(topic, []).append(spec.name)
            operations[endpoint.operation_id] = _operation(endpoint, spec, kafka)
    for topic, channel in channels.items():
        channel["description"] = _channel_description(
            topic, writers.get(topic, []), readers.get(topic, [])
        )
    schemas = dict(sorted(raw["components"]["schemas"].items()))
    for model in (EventHeaders, DeadLetterHeaders):
        schemas[model.__name__] = model.model_json_schema(
            by_alias=True, ref_template=SCHEMAS + "{model}"
        )
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": TITLE,
            "version": str(SCHEMA_VERSION),
            "description": INFO,
            "tags": [{"name": s.name, "description": _first_line(s.description)} for s in specs],
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": kafka.bootstrap_servers,
                "protocol": "kafka",
                "description": "The default address; LOOPLINE_KAFKA__BOOTSTRAP_SERVERS and "
                "LOOPLINE_KAFKA__SECURITY_PROTOCOL (SASL, TLS) set the real one.",
            }
        },
        "channels": {topic: channels[topic] for topic in sorted(channels, key=_order)},
        "operations": operations,
        "components": {
            "messages": {name: messages[name] for name in sorted(messages, key=_order)},
            "schemas": schemas,
        },
    }


def _channel(topic: str, kafka: KafkaSettings) -> dict[str, Any]:
    address = kafka.topic(topic)
    return {
        "address": address,
        "title": topic,
        "description": "",
        "messages": {},
        "bindings": {"kafka": {"topic": address, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _operation(endpoint: Endpoint, spec: ServiceSpec, kafka: KafkaSettings) -> dict[str, Any]:
    verb = "reads" if endpoint.action == "receive" else "writes"
    binding: dict[str, Any] = {
        "clientId": {"type": "string", "enum": [f"{kafka.client_id}-{spec.name}"]}
    }
    if endpoint.action == "receive":
        binding = {"groupId": {"type": "string", "enum": [consumer_group(kafka, spec.name)]}}
        binding["clientId"] = {"type": "string", "enum": [f"{kafka.client_id}-{spec.name}"]}
    return {
        "action": endpoint.action,
        "channel": {"$ref": f"#/channels/{endpoint.topic}"},
        "title": f"{spec.name} {verb} {endpoint.topic}",
        "summary": _first_line(spec.description),
        "tags": [{"name": spec.name}],
        "bindings": {"kafka": {**binding, "bindingVersion": KAFKA_BINDING_VERSION}},
        "messages": [{"$ref": f"#/channels/{endpoint.topic}/messages/{endpoint.message_id}"}],
    }


class _Dumper(yaml.SafeDumper):
    """YAML with multi-line text as literal blocks, keys in the document's order."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def to_yaml(document: dict[str, Any]) -> str:
    dumped: str = yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    )
    return dumped


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def topics_of(specs: Iterable[ServiceSpec]) -> set[str]:
    """Every topic the services read, write or dead-letter to (what the document must cover)."""
    return {endpoint.topic for spec in specs for endpoint in endpoints(spec)}
