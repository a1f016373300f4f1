"""ingester: validates, dedupes, samples and routes incoming records.

A shell until its issue fills it in: it validates and logs what arrives on its input topic.
"""

from shared.events import RECORDS_INCOMING, RECORDS_INGESTED, Record
from shared.service import shell_service

SERVICE = shell_service("ingester", __doc__, RECORDS_INCOMING, Record, RECORDS_INGESTED)
