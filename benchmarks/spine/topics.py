"""The spine's three topics, read back after a run: each record's message timestamp on each
(the time the stage that wrote it produced it) and the bytes written (the anchor's payloads).

Loopline's run and the anchor's use the same logical names, each under a prefix of its own:
`records.ingested`, `records.generated`, `records.judged`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shared.broker import ensure_topics
from shared.events import RECORDS_GENERATED, RECORDS_INGESTED, RECORDS_JUDGED
from shared.settings import KafkaSettings
from shared.topic_reader import read_to_end

SPINE = (RECORDS_INGESTED, RECORDS_GENERATED, RECORDS_JUDGED)


@dataclass
class TopicRead:
    """One topic: per record id, its first message's timestamp (epoch s) and bytes."""

    stamps: dict[str, float] = field(default_factory=dict)
    values: dict[str, bytes] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)  # every message's value size, in order read

    def payload_file(self, path: Path, keys: set[str]) -> Path:
        """`<key>\t<value>` lines for `keys` (the anchor's relay input)."""
        with path.open("wb") as out:
            for key, value in self.values.items():
                if key in keys:
                    out.write(key.encode() + b"\t" + value + b"\n")
        return path


async def read_spine(kafka: KafkaSettings) -> list[TopicRead]:
    """The three topics of `kafka`'s prefix, as they are now."""
    reads = []
    for topic in SPINE:
        read = TopicRead()
        async for messages in read_to_end(kafka, [topic]):
            for message in messages:
                key = (message.key or b"").decode()
                value = message.value or b""
                read.sizes.append(len(value))
                if key not in read.stamps:
                    read.stamps[key] = message.timestamp / 1000
                    read.values[key] = value
        reads.append(read)
    return reads


async def create_spine(kafka: KafkaSettings) -> None:
    await ensure_topics(kafka, SPINE)
