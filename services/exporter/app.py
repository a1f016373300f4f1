"""The exporter service (a shell until its issue fills it in)."""

from shared.events import DATASETS_EXPORTED, RECORDS_COMPLETED, CompletedRecord
from shared.service import ServiceSpec, shell_service

SERVICE: ServiceSpec = shell_service(
    name="exporter",
    consumes=RECORDS_COMPLETED,
    event_type=CompletedRecord,
    produces=(DATASETS_EXPORTED,),
    description="writes versioned training datasets from completed records",
)
