"""The judge service (a shell until its issue fills it in)."""

from shared.events import RECORDS_GENERATED, RECORDS_JUDGED, Record
from shared.service import ServiceSpec, shell_service

SERVICE: ServiceSpec = shell_service(
    name="judge",
    consumes=RECORDS_GENERATED,
    event_type=Record,
    produces=(RECORDS_JUDGED,),
    description="scores responses with the flow's LLM-as-judge rubric",
)
