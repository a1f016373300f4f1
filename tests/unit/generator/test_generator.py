"""The generator service on FastStream's in-memory test broker, against a scripted endpoint.

Candidates are labelled with the model name the endpoint reports having served (an endpoint
routes a name to whatever model it runs), and with the name asked for only when the endpoint
reports none.
"""

import asyncio
from typing import Any

from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from devstack.scripted_llm import Behaviour, ScriptedLLM, reply, status
from services.generator.app import register
from shared.broker import build_broker
from shared.events import RECORDS_INGESTED, RECORDS_JUDGED, Record
from shared.flows import parse_flows
from shared.service import ServiceContext
from shared.settings import LLMSettings, Settings

SERVED = {"asked-small": "served-small-q4", "asked-large": "served-large-q8"}


def serve_under_other_names(body: dict[str, Any]) -> Behaviour:
    """Answer as a server that reports the model it really runs; `anonymous` gets no name."""
    asked = str(body["model"])
    if asked == "anonymous":
        completion = {"choices": [{"message": {"content": "no name"}, "finish_reason": "stop"}]}
        return status(200, completion)
    return reply(f"answer of {asked}", model=SERVED[asked])


def context(base_url: str) -> ServiceContext:
    settings = Settings(llm=LLMSettings(base_url=base_url, model="asked-small"))
    broker, dead_letters = build_broker(settings, "generator")
    flows = parse_flows(
        {
            "flows": {
                "compare": {
                    "generate": [
                        {"plugin": "openai", "options": {"model": "asked-small"}},
                        {"plugin": "openai", "options": {"model": "asked-large"}},
                        {"plugin": "openai", "options": {"model": "anonymous"}},
                    ]
                }
            }
        },
        "test",
    )
    return ServiceContext(
        name="generator", settings=settings, flows=flows, broker=broker, dead_letters=dead_letters
    )


async def test_candidates_carry_the_model_name_the_endpoint_reports() -> None:
    async with ScriptedLLM(responder=serve_under_other_names) as server:
        ctx = context(server.base_url)
        generated: asyncio.Queue[Record] = asyncio.Queue()

        # No judge in the flow: generated records go straight to the publisher's input.
        @ctx.broker.subscriber(RECORDS_JUDGED, group_id="reader")
        async def read(message: KafkaMessage) -> None:
            generated.put_nowait(Record.model_validate_json(message.body))

        register(ctx)
        async with TestKafkaBroker(ctx.broker) as broker:
            record = Record(flow="compare", instruction="Reverse a string in Python.")
            await broker.publish(record.to_bytes(), topic=RECORDS_INGESTED)
            out = await asyncio.wait_for(generated.get(), timeout=10)
        for close in ctx.closers:
            await close()

    assert sorted(body["model"] for body in server.requests) == [
        "anonymous",
        "asked-large",
        "asked-small",
    ]
    labelled = {candidate.text: candidate.model for candidate in out.responses}
    assert labelled == {
        "answer of asked-small": "served-small-q4",
        "answer of asked-large": "served-large-q8",
        "no name": "anonymous",
    }
    assert all(candidate.source == "generator" for candidate in out.responses)
