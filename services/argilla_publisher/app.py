"""The argilla-publisher service (a shell until its issue fills it in)."""

from shared.events import RECORDS_JUDGED, RECORDS_PUBLISHED, Record
from shared.service import ServiceSpec, shell_service

SERVICE: ServiceSpec = shell_service(
    name="argilla-publisher",
    consumes=RECORDS_JUDGED,
    event_type=Record,
    produces=(RECORDS_PUBLISHED,),
    description="publishes judged records into Argilla datasets",
)
