"""argilla-publisher: publishes judged records into Argilla datasets.

A shell until its issue fills it in: it validates and logs what arrives on its input topic.
"""

from shared.events import RECORDS_JUDGED, RECORDS_PUBLISHED, Record
from shared.service import shell_service

SERVICE = shell_service("argilla-publisher", __doc__, RECORDS_JUDGED, Record, RECORDS_PUBLISHED)
