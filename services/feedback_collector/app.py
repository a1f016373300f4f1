"""feedback-collector: captures annotators' responses from Argilla.

A shell until its issue fills it in: it validates and logs what arrives on its input topic.
"""

from shared.events import FEEDBACK_RESPONSES, RECORDS_COMPLETED, RECORDS_PUBLISHED, PublishedRecord
from shared.service import shell_service

SERVICE = shell_service(
    "feedback-collector",
    __doc__,
    RECORDS_PUBLISHED,
    PublishedRecord,
    FEEDBACK_RESPONSES,
    RECORDS_COMPLETED,
)
