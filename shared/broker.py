"""One way to build a Kafka broker for a Loopline service, and to create its topics."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from opentelemetry.trace import TracerProvider

from shared.dead_letters import DeadLetters
from shared.metrics import broker_middlewares
from shared.settings import KafkaSettings, Settings
from shared.telemetry import NoTracing

log = logging.getLogger("loopline.broker")


def _ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    if kafka.ssl_certfile:
        context.load_cert_chain(
            str(kafka.ssl_certfile), str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None
        )
    return context


def broker_security(kafka: KafkaSettings) -> BaseSecurity | None:
    """FastStream security options from the Kafka settings (SASL and/or TLS)."""
    context = _ssl_context(kafka)
    if kafka.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        if not (kafka.sasl_mechanism and kafka.sasl_username and kafka.sasl_password):
            raise ValueError(
                f"security_protocol {kafka.security_protocol} needs LOOPLINE_KAFKA__SASL_MECHANISM,"
                " LOOPLINE_KAFKA__SASL_USERNAME and LOOPLINE_KAFKA__SASL_PASSWORD"
            )
        use_ssl = kafka.security_protocol == "SASL_SSL"
        sasl = {
            "PLAIN": SASLPlaintext,
            "SCRAM-SHA-256": SASLScram256,
            "SCRAM-SHA-512": SASLScram512,
        }[kafka.sasl_mechanism]
        return sasl(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            ssl_context=context,
            use_ssl=use_ssl,
        )
    if context is not None:
        return BaseSecurity(ssl_context=context, use_ssl=True)
    return None


def admin_client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """aiokafka client keyword arguments (for the admin client and raw clients)."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
    }
    context = _ssl_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    if kafka.sasl_mechanism:
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return options


def producer_options(kafka: KafkaSettings) -> dict[str, Any]:
    """aiokafka producer keyword arguments: the client's, acks from every replica, and the one
    message limit."""
    return {
        **admin_client_options(kafka),
        "acks": "all",
        "max_request_size": kafka.max_message_bytes,
    }


def build_broker(
    settings: Settings,
    service: str,
    tracer_provider: TracerProvider | None = None,
) -> tuple[KafkaBroker, DeadLetters]:
    """A broker with telemetry (outermost), metrics, then retries and dead letters around each
    handler. With telemetry off (`settings.telemetry.enabled`) its tracer is a no-op one
    whatever `tracer_provider` is (trace context still passes from message to message) and it
    has no metrics middlewares."""
    enabled = settings.telemetry.enabled
    dead_letters = DeadLetters(service=service, retry=settings.retry, kafka=settings.kafka)
    broker = KafkaBroker(
        settings.kafka.bootstrap_servers,
        client_id=f"{settings.kafka.client_id}-{service}",
        security=broker_security(settings.kafka),
        acks="all",
        max_request_size=settings.kafka.max_message_bytes,
        enable_idempotence=False,  # Tansu rejects it; handlers are idempotent instead.
        allow_auto_create_topics=False,
        graceful_timeout=settings.shutdown_timeout_s,
        # FastStream's per-message "Received"/"Processed" lines only at DEBUG, through the
        # process's own logging configuration.
        logger=logging.getLogger(f"loopline.{service}.broker"),
        log_level=logging.DEBUG,
        middlewares=[
            KafkaTelemetryMiddleware(tracer_provider=tracer_provider if enabled else NoTracing()),
            # Prometheus: around the retries, as one handling
            *(broker_middlewares(service) if enabled else ()),
            dead_letters,
        ],
    )
    dead_letters.bind(broker)
    return broker, dead_letters


def _topic_results(response: Any) -> list[tuple[Any, ...]]:
    """(name, error code, error message) per topic, whatever the response version."""
    return [
        (entry[0], entry[1], entry[2] if len(entry) > 2 and isinstance(entry[2], str) else None)
        for entry in response.topic_errors
    ]


async def ensure_topics(kafka: KafkaSettings, topics: Iterable[str]) -> list[str]:
    """Create the topics (logical names, made the set's by `kafka.topic`) that do not exist
    yet; return the ones created, as named on the cluster. Safe to run twice."""
    wanted = sorted({kafka.topic(t) for t in topics})
    admin = AIOKafkaAdminClient(**admin_client_options(kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return []
        new_topics = [
            NewTopic(
                name=t,
                num_partitions=kafka.topic_partitions,
                replication_factor=kafka.topic_replication_factor,
                topic_configs={"max.message.bytes": str(kafka.max_message_bytes)},
            )
            for t in missing
        ]
        response = await admin.create_topics(new_topics)
        failures = [
            f"{name}: error {code} {message or ''}".strip()
            for name, code, message, *_ in _topic_results(response)
            if code not in (0, TopicAlreadyExistsError.errno)
        ]
        if failures:
            raise RuntimeError("could not create topics: " + "; ".join(failures))
        log.info("created topics %s (%d partitions)", missing, kafka.topic_partitions)
        return missing
    finally:
        await admin.close()
