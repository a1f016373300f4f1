"""The ingester service (a shell until its issue fills it in)."""

from shared.events import RECORDS_INCOMING, RECORDS_INGESTED, Record
from shared.service import ServiceSpec, shell_service

SERVICE: ServiceSpec = shell_service(
    name="ingester",
    consumes=RECORDS_INCOMING,
    event_type=Record,
    produces=(RECORDS_INGESTED,),
    description="validates, dedupes, samples and routes incoming records",
)
