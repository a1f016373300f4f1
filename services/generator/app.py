"""The generator service (a shell until its issue fills it in)."""

from shared.events import RECORDS_GENERATED, RECORDS_INGESTED, Record
from shared.service import ServiceSpec, shell_service

SERVICE: ServiceSpec = shell_service(
    name="generator",
    consumes=RECORDS_INGESTED,
    event_type=Record,
    produces=(RECORDS_GENERATED,),
    description="asks the flow's LLMs for candidate responses",
)
