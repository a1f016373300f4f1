"""`loopline dlq list|show|replay`: what is in the dead-letter topics, and sending it back.

A record is dead-lettered when it is itself bad (it does not validate, a template refuses it, it
is too large) or when an unexpected error outlasted the retries; transient trouble never is.
Once the cause is fixed (a flow added, a bug fixed, a limit raised), `replay` sends the original
bytes back to the topic they came from. Replay is a dry run unless `--apply`; a dead letter is
replayed once, however often the command runs (`shared.dead_letter_replay`). Only the flow set's
topics are read and written (LOOPLINE_KAFKA__TOPIC_PREFIX).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from cli.options import settings_with
from cli.output import console, fail
from shared.dead_letter_replay import (
    LetterFilter,
    StoredDeadLetter,
    Tally,
    read_dead_letters,
    replay,
    sources,
)
from shared.settings import KafkaSettings

dlq_app = typer.Typer(
    help="The dead-letter topics: count, show and replay what they hold. A record is "
    "dead-lettered when it is itself bad, or when an unexpected error outlasted the retries "
    "(transient trouble never is). Replay is a dry run unless --apply, and replays each dead "
    "letter once however often it runs.",
    no_args_is_help=True,
)

TopicOption = Annotated[
    list[str] | None,
    typer.Option(
        "--topic",
        help="A dead-letter topic or its source topic, by its name (records.judged) or as on "
        "the cluster, behind LOOPLINE_KAFKA__TOPIC_PREFIX (repeatable).",
    ),
]
ErrorOption = Annotated[
    list[str] | None,
    typer.Option("--error-type", help="An error type, e.g. ValidationError (repeatable)."),
]
SinceOption = Annotated[
    str | None, typer.Option(help="Only dead letters written at or after this ISO time (UTC).")
]
UntilOption = Annotated[
    str | None, typer.Option(help="Only dead letters written at or before this ISO time (UTC).")
]
RecordOption = Annotated[
    list[str] | None, typer.Option("--record-id", help="Only this record (repeatable).")
]


def _time(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise fail(
            f"{flag}: {value!r} is not an ISO date-time (e.g. 2026-12-03T10:00)", code=2
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _filter(
    topic: list[str] | None,
    error_type: list[str] | None,
    since: str | None,
    until: str | None,
    record_id: list[str] | None,
) -> LetterFilter:
    return LetterFilter(
        topics=frozenset(topic or ()),
        error_types=frozenset(error_type or ()),
        since=_time(since, "--since"),
        until=_time(until, "--until"),
        record_ids=frozenset(record_id or ()),
    )


async def _collect(kafka: KafkaSettings, wanted: LetterFilter) -> list[StoredDeadLetter]:
    return [stored async for stored in read_dead_letters(kafka, wanted)]


@dlq_app.command("list")
def list_command(
    topic: TopicOption = None,
    error_type: ErrorOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    record_id: RecordOption = None,
) -> None:
    """Count dead letters per topic and error type, with when they were written."""
    settings = settings_with()
    wanted = _filter(topic, error_type, since, until, record_id)
    letters = asyncio.run(_collect(settings.kafka, wanted))
    tally = Tally()
    for stored in letters:
        tally.add(stored)
    if not letters:
        console.print("no dead letters")
        return
    table = Table("dead-letter topic", "error type", "count", "first", "last")
    for key, count in sorted(tally.counts.items()):
        first, last = tally.first[key], tally.last[key]
        table.add_row(key[0], key[1], str(count), f"{first:%Y-%m-%d %H:%M:%S}", f"{last:%H:%M:%S}")
    console.print(table)
    console.print(f"{len(letters)} dead letter(s); `loopline dlq show` for one, with its reason")


@dlq_app.command("show")
def show_command(
    topic: TopicOption = None,
    error_type: ErrorOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    record_id: RecordOption = None,
    limit: Annotated[int, typer.Option(help="Show at most this many.")] = 1,
) -> None:
    """Show dead letters in full: where they came from, why, and the original message."""
    settings = settings_with()
    wanted = _filter(topic, error_type, since, until, record_id)
    letters = asyncio.run(_collect(settings.kafka, wanted))
    if not letters:
        raise fail("no dead letter matches", code=1)
    for stored in letters[:limit]:
        letter = stored.letter
        console.print(f"[bold]{stored.coordinates}[/bold] written {stored.at:%Y-%m-%d %H:%M:%S}")
        console.print(
            f"  from {letter.source_topic}[{letter.source_partition}]@{letter.source_offset}"
        )
        console.print(f"  by {letter.service} after {letter.attempts} attempt(s)")
        console.print(f"  record {stored.record_id or '-'}")
        console.print(f"  {letter.error_type}: {letter.error}", markup=False)
        try:
            body = json.dumps(json.loads(letter.body), indent=2, ensure_ascii=False)
        except ValueError:
            body = repr(letter.body[:2000])
        console.print(body, markup=False, highlight=False)
    if len(letters) > limit:
        console.print(f"... and {len(letters) - limit} more (--limit)")


@dlq_app.command("replay")
def replay_command(
    topic: TopicOption = None,
    error_type: ErrorOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    record_id: RecordOption = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Replay (without it: only say what would be).")
    ] = False,
) -> None:
    """Send matching dead letters back to the topics they came from (dry run by default).

    Each dead letter is replayed at most once: running the command again replays nothing that
    was replayed before.
    """
    settings = settings_with()
    wanted = _filter(topic, error_type, since, until, record_id)
    letters = asyncio.run(_collect(settings.kafka, wanted))
    result = asyncio.run(replay(settings.kafka, letters, apply))
    verb = "replayed" if apply else "would replay"
    per_source = ", ".join(f"{n} to {t}" for t, n in sorted(sources(result.replayed).items()))
    console.print(
        f"{verb} {len(result.replayed)} dead letter(s){': ' + per_source if per_source else ''}"
    )
    if result.not_replayable:
        console.print(
            f"{len(result.not_replayable)} matching dead letter(s) only describe a message too "
            "large to send (not replayable; `loopline dlq show` says which record)"
        )
    if result.already:
        console.print(f"{len(result.already)} matching dead letter(s) were replayed before")
    if not apply and result.replayed:
        console.print("add --apply to replay them")
