"""generator: asks the flow's LLMs for candidate responses.

A shell until its issue fills it in: it validates and logs what arrives on its input topic.
"""

from shared.events import RECORDS_GENERATED, RECORDS_INGESTED, Record
from shared.service import shell_service

SERVICE = shell_service("generator", __doc__, RECORDS_INGESTED, Record, RECORDS_GENERATED)
