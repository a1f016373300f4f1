"""judge: scores responses with the flow's LLM-as-judge rubric.

A shell until its issue fills it in: it validates and logs what arrives on its input topic.
"""

from shared.events import RECORDS_GENERATED, RECORDS_JUDGED, Record
from shared.service import shell_service

SERVICE = shell_service("judge", __doc__, RECORDS_GENERATED, Record, RECORDS_JUDGED)
