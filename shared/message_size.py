"""The one message limit (`LOOPLINE_KAFKA__MAX_MESSAGE_BYTES`), and the rule that keeps a record
under it as it grows from stage to stage.

Producers send at most the limit (`max_request_size`), topics are created to accept it
(`max.message.bytes`), and the ingester refuses a record that cannot fit (413). A record grows
downstream (candidates, judgments); when it no longer fits, the judges' raw outputs are cut
first (they are kept for debugging; the parsed ratings, criteria and rationales are what every
later stage reads), each to `RAW_OUTPUT_KEEP` characters with a note saying so. If it still does
not fit, it is refused (`RecordTooLarge`, a permanent failure: the record is dead-lettered with
its size and the limit).
"""

from __future__ import annotations

from shared.events import Record
from shared.failures import PermanentError

# Room left under the limit for the message's key, headers (trace context, dead-letter headers)
# and the batch framing.
OVERHEAD_BYTES = 16 * 1024
RAW_OUTPUT_KEEP = 2000
CUT_NOTE = "\n[... cut to fit the message limit]"


class RecordTooLarge(PermanentError):
    """A record that cannot fit the message limit, even with its raw judge outputs cut."""


def payload_limit(max_message_bytes: int) -> int:
    """The bytes an event's body may take under the message limit."""
    return max(1024, max_message_bytes - OVERHEAD_BYTES)


def fit(record: Record, max_message_bytes: int) -> bytes:
    """`record`'s bytes, its judges' raw outputs cut if that makes it fit; else RecordTooLarge."""
    body = record.to_bytes()
    limit = payload_limit(max_message_bytes)
    if len(body) <= limit:
        return body
    cut = [
        judgment.model_copy(update={"raw_output": judgment.raw_output[:RAW_OUTPUT_KEEP] + CUT_NOTE})
        if judgment.raw_output is not None and len(judgment.raw_output) > RAW_OUTPUT_KEEP
        else judgment
        for judgment in record.judgments
    ]
    smaller = record.model_copy(update={"judgments": cut}).to_bytes()
    if len(smaller) <= limit:
        return smaller
    raise RecordTooLarge(
        f"record {record.record_id} is {len(smaller)} bytes as an event, over the "
        f"{limit}-byte room under the message limit of {max_message_bytes} bytes "
        "(LOOPLINE_KAFKA__MAX_MESSAGE_BYTES)"
    )
