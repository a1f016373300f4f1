"""`loopline dlq`: dead letters written as the services write them, on the real broker, counted,
shown and replayed to their source topic once, however often the replay runs."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer, ConsumerRecord
from typer.testing import CliRunner, Result

from cli.app import app
from shared.broker import build_broker, ensure_topics, producer_options
from shared.dead_letter_replay import H_REPLAY_OF, LetterFilter, read_dead_letters, replay
from shared.dead_letters import (
    H_ATTEMPTS,
    H_ERROR,
    H_ERROR_TYPE,
    H_OFFSET,
    H_PARTITION,
    H_REPLAYABLE,
    H_SERVICE,
    H_TOPIC,
)
from shared.events import Record, dead_letter_topic
from shared.failures import PermanentError
from shared.settings import Settings
from shared.topic_reader import read_to_end


def consumed(topic: str, offset: int, record: Record) -> ConsumerRecord[bytes, bytes]:
    body = record.to_bytes()
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=record.record_id.encode(),
        value=body,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(body),
        headers=[],
    )


async def messages(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    return [m async for batch in read_to_end(settings.kafka, [topic]) for m in batch]


async def test_dead_letters_are_listed_shown_and_replayed_once(settings: Settings) -> None:
    source = f"test.replay-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings.kafka, [source, dead_letter_topic(source)])
    broker, dead_letters = build_broker(settings, "test-service")
    records = [Record(flow="f", instruction=f"q{i}", record_id=f"r{i}") for i in range(3)]
    async with broker:
        await broker.start()
        for offset, record in enumerate(records):
            error = PermanentError("flow 'f' is not in this service's flow file")
            await dead_letters.send_record(consumed(source, offset, record), error, attempts=1)

    env = {"LOOPLINE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers}

    async def loopline(*args: str) -> Result:
        # The command runs its own event loop: in a thread, as from a shell.
        return await asyncio.to_thread(CliRunner().invoke, app, ["dlq", *args], env=env)

    listed = await loopline("list", "--topic", source)
    assert listed.exit_code == 0, listed.output
    assert "PermanentError" in listed.output and "3 dead letter(s)" in listed.output

    shown = await loopline("show", "--record-id", "r1")
    assert shown.exit_code == 0, shown.output
    assert "record r1" in shown.output and "not in this service's flow file" in shown.output
    assert f"from {source}[0]@1" in shown.output

    dry = await loopline("replay", "--topic", source)
    assert "would replay 3 dead letter(s)" in dry.output, dry.output
    assert await messages(settings, source) == []  # a dry run sends nothing

    one = await loopline("replay", "--topic", source, "--record-id", "r0", "--apply")
    assert f"replayed 1 dead letter(s): 1 to {source}" in one.output, one.output
    rest = await loopline("replay", "--topic", source, "--apply")
    assert "replayed 2 dead letter(s)" in rest.output, rest.output
    assert "1 matching dead letter(s) were replayed before" in rest.output
    again = await loopline("replay", "--topic", source, "--apply")
    assert "replayed 0 dead letter(s)" in again.output, again.output

    replayed = await messages(settings, source)
    assert sorted(Record.model_validate_json(m.value or b"").record_id for m in replayed) == [
        "r0",
        "r1",
        "r2",
    ]
    for message in replayed:
        assert message.key == Record.model_validate_json(message.value or b"").record_id.encode()
        headers = dict(message.headers)
        assert headers[H_REPLAY_OF].decode().startswith(f"{dead_letter_topic(source)}/")


async def test_a_reference_to_a_message_too_large_to_send_is_not_replayed(
    settings: Settings,
) -> None:
    source = f"test.replay-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings.kafka, [source, dead_letter_topic(source)])
    headers = {
        H_ERROR: "RecordTooLarge: record r9 is 2000000 bytes",
        H_ERROR_TYPE: "RecordTooLarge",
        H_SERVICE: "feedback-collector",
        H_ATTEMPTS: "1",
        H_TOPIC: source,
        H_PARTITION: "",
        H_OFFSET: "",
        H_REPLAYABLE: "false",
    }
    producer = AIOKafkaProducer(**producer_options(settings.kafka))
    await producer.start()
    try:
        await producer.send_and_wait(
            dead_letter_topic(source),
            b'{"record_id": "r9", "bytes": 2000000}',
            key=b"r9",
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
    finally:
        await producer.stop()
    [stored] = [
        s async for s in read_dead_letters(settings.kafka, LetterFilter(frozenset({source})))
    ]
    result = await replay(settings.kafka, [stored], apply=True)
    assert (result.replayed, result.not_replayable) == ([], [stored])
    assert await messages(settings, source) == []
