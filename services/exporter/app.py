"""exporter: writes versioned training datasets from completed records.

A shell until its issue fills it in: it validates and logs what arrives on its input topic.
"""

from shared.events import DATASETS_EXPORTED, RECORDS_COMPLETED, CompletedRecord
from shared.service import shell_service

SERVICE = shell_service("exporter", __doc__, RECORDS_COMPLETED, CompletedRecord, DATASETS_EXPORTED)
