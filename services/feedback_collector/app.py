"""The feedback-collector service (a shell until its issue fills it in)."""

from shared.events import FEEDBACK_RESPONSES, RECORDS_COMPLETED, RECORDS_PUBLISHED, PublishedRecord
from shared.service import ServiceSpec, shell_service

SERVICE: ServiceSpec = shell_service(
    name="feedback-collector",
    consumes=RECORDS_PUBLISHED,
    event_type=PublishedRecord,
    produces=(FEEDBACK_RESPONSES, RECORDS_COMPLETED),
    description="captures annotators' responses from Argilla",
)
