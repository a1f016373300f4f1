"""ingester: takes records in, validates, redacts, dedupes, samples and routes them.

Inputs: the HTTP API (`/v1/records`, OTLP `/v1/traces` and `/v1/logs`), one JSON record per
message on the `records.incoming` topic, and `loopline ingest` for files and datasets. Output:
the input topic of the flow's next stage (`records.ingested` when it generates), or
`records.unrouted`.
"""

from __future__ import annotations

from typing import Any

from pydantic import RootModel

from services.ingester.api import create_app
from services.ingester.asyncapi_page import AsyncAPIFiles, serve_asyncapi
from services.ingester.pipeline import BrokerPublisher, IngestPipeline
from shared.dead_letters import PermanentError
from shared.events import (
    RECORDS_GENERATED,
    RECORDS_INCOMING,
    RECORDS_INGESTED,
    RECORDS_JUDGED,
    RECORDS_UNROUTED,
)
from shared.service import ServiceContext, ServiceSpec


class IncomingRecord(RootModel[dict[str, Any]]):
    """A message on `records.incoming`: one record as a JSON object."""


def register(context: ServiceContext) -> None:
    settings = context.settings.ingest
    pipeline = IngestPipeline(
        context.flows,
        BrokerPublisher(context.broker, context.settings.kafka),
        settings.default_flow,
        max_message_bytes=context.settings.kafka.max_message_bytes,
        max_depth=settings.max_depth,
        tracer=context.tracer,
    )

    async def from_kafka(message: IncomingRecord, ctx: ServiceContext) -> None:
        result = await pipeline.ingest([message.root])
        if result.rejected:
            errors = "; ".join(f"{e.path}: {e.message}" for e in result.rejected[0].errors)
            raise PermanentError(f"invalid record: {errors}")

    async def broker_ready() -> bool:
        return bool(await context.broker.ping(timeout=2.0))

    context.consume(RECORDS_INCOMING, IncomingRecord, from_kafka)
    app = create_app(pipeline, settings, broker_ready)
    serve_asyncapi(app, AsyncAPIFiles.of(context.settings))  # the topics' contract, rendered
    context.before_broker_stop(app.state.otlp.settle_all)  # what waits in the join is made
    context.on_stop(app.state.otlp.close)  # the OTLP span/log-event join's sweeper
    context.serve_http(app, settings.host, settings.port)


SERVICE = ServiceSpec(
    name="ingester",
    consumes=(RECORDS_INCOMING,),
    produces=(RECORDS_INGESTED, RECORDS_GENERATED, RECORDS_JUDGED, RECORDS_UNROUTED),
    register=register,
    description=__doc__ or "",
)
