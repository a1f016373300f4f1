"""`loopline status`: where the records are, and which stage is behind.

Per stage (each service's consumer group): consumer lag per partition and in total, throughput,
in-flight work, what it waits on and its last error (from its health endpoint). Dead letters
per dead-letter topic. Per flow: records at each stage and how many are stuck. The report
comes from the broker (cli/status_report.py) and the services' `/healthz`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from datetime import datetime
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaError
from rich.table import Table

from cli.options import FlowsFile, StateDir, settings_with
from cli.output import console, err, fail
from cli.status_report import HealthTarget, StatusReader, health_target, parse_since
from shared.flows import FlowFileError, FlowsConfig, load_flows
from shared.settings import Settings
from shared.stages import PEOPLE_STAGES, STAGE_NAMES, stage_key

BROKER_TIMEOUT_S = 30.0
JSON_KEYS = """JSON (--json; one document per refresh with --watch, one per line): at (ISO
time); kafka {bootstrap_servers, topic_prefix, group_prefix}; window_s (the throughput
window measured); stages: one per service {service, group (null: reads no topic), topics,
lag (null: no partition), partitions [{topic, partition, committed (null: never), end,
lag}], consumed_per_s, produced_per_s (into its topics), health (null: no health URL) {url,
service, reachable, error, status, processed, in_flight, waiting_on, last_error {at, error,
kind}, uptime_s, partitions {consumer: ["topic/partition", ...]}}}; health: every health
URL's answer as above (one whose service is not known is only here); dead_letters: one per
dead-letter topic {topic, messages, latest {at, error, error_type, service, record_id}};
records {since, stuck_after_s, messages_read, messages_counted, error (the flow file's),
flows [{flow, stages {ingested, generated, judged, in_argilla, answered, completed: null
when the flow skips it, else {reached, at, stuck, failed}}, exported {format: {version,
rows, at}}, auto_accepted, failed, stuck, stuck_waiting_on_people}], unknown_flows {flow:
records}}."""


def default_health(settings: Settings, state_dir: Any) -> list[HealthTarget]:
    """The services' health URLs on the local stack (its layout), when the broker is the local
    stack's; none otherwise."""
    from cli.stack import stack_config
    from devstack.services import SERVICE_NAMES, health_url

    config = stack_config(state_dir)
    if settings.kafka.bootstrap_servers != config.kafka_bootstrap:
        return []
    return [HealthTarget(health_url(config, name), name) for name in SERVICE_NAMES]


def _flows(settings: Settings) -> tuple[FlowsConfig | None, str | None]:
    try:
        return load_flows(settings.flows_file), None
    except FlowFileError as exc:
        return None, str(exc)


def status(
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh every --every seconds until Ctrl-C.")
    ] = False,
    every: Annotated[float, typer.Option(help="Seconds between refreshes (--watch).")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (keys below).")] = False,
    window: Annotated[float, typer.Option(help="Seconds over which throughput is measured.")] = 2.0,
    since: Annotated[
        str,
        typer.Option(
            help="Count records from messages since then: a duration (24h, 90m, 7d) or an ISO "
            "time. Bounds the reading of big topics."
        ),
    ] = "24h",
    stuck_after: Annotated[
        float,
        typer.Option(help="A record at a stage for longer than this many seconds is stuck."),
    ] = 300.0,
    health: Annotated[
        list[str] | None,
        typer.Option(
            "--health",
            help="A service's health URL (http://host:port/healthz), or SERVICE=URL "
            "(repeatable). Default: the local stack's services, when LOOPLINE_KAFKA__"
            "BOOTSTRAP_SERVERS is the local stack's broker.",
        ),
    ] = None,
    flows_file: FlowsFile = None,
    state_dir: StateDir = None,
) -> None:
    """Per stage: consumer lag, throughput, in-flight work, what it waits on, its last error;
    dead letters; per flow: records at each stage and how many are stuck.

    Lag is the group's committed offsets against the partitions' ends; throughput the change of
    the committed offsets (consumed) and of the ends (produced) over --window. Records are
    counted from the set's topics (LOOPLINE_KAFKA__TOPIC_PREFIX) since --since.
    """
    quiet_kafka_client()
    settings = settings_with(flows_file=flows_file)
    try:
        since_at = parse_since(since)
    except ValueError as exc:
        raise fail(f"--since: {exc}") from None
    targets = (
        [health_target(value) for value in health]
        if health
        else default_health(settings, state_dir)
    )
    flows, flows_error = _flows(settings)
    reader = StatusReader(settings, flows, since_at, targets, window, stuck_after, flows_error)
    try:
        asyncio.run(_run(reader, watch, every, as_json))
    except KeyboardInterrupt:
        return


def _unwrapped(text: str) -> str:
    """`text` with each paragraph on one line (the help is re-wrapped to the terminal)."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


status.__doc__ = _unwrapped(f"{inspect.cleandoc(status.__doc__ or '')}\n\n{JSON_KEYS}")


def quiet_kafka_client() -> None:
    """aiokafka logs each failed connection; the command says what went wrong, once."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def broker_error(settings: Settings, exc: BaseException) -> str:
    name = type(exc).__name__
    detail = str(exc) if str(exc).startswith(name) else f"{name}: {exc}".rstrip(": ")
    return (
        f"cannot reach the Kafka broker at {settings.kafka.bootstrap_servers} "
        f"(LOOPLINE_KAFKA__BOOTSTRAP_SERVERS): {detail}. Is it running? "
        "(`loopline stack status` for the local stack)"
    )


async def _run(reader: StatusReader, watch: bool, every: float, as_json: bool) -> None:
    while True:
        began = time.monotonic()
        try:
            await asyncio.wait_for(reader.start(), BROKER_TIMEOUT_S)
            try:
                while True:
                    report = await asyncio.wait_for(reader.report(), BROKER_TIMEOUT_S + 600)
                    show_report(report, as_json, watch)
                    if not watch:
                        return
                    await asyncio.sleep(max(0.0, every - (time.monotonic() - began)))
                    began = time.monotonic()
            finally:
                await reader.stop()
        except (KafkaError, OSError, TimeoutError) as exc:
            message = broker_error(reader.settings, exc)
            if not watch:
                raise fail(message, code=1) from None
            err.print(f"[red]error:[/red] {message}; trying again in {every:.0f} s")
            await asyncio.sleep(every)


def show_report(report: dict[str, Any], as_json: bool, watch: bool) -> None:
    if as_json:
        # Plain print: no markup, no wrapping. One line per report when watching.
        print(json.dumps(report, indent=None if watch else 2), flush=True)
        return
    if watch and console.is_terminal:
        console.clear()
    elif watch:
        console.rule(f"status at {report['at']}")
    for block in render(report):
        console.print(block)


def _age(iso: str) -> str:
    seconds = max(0.0, time.time() - datetime.fromisoformat(iso).timestamp())
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _health_cell(health: dict[str, Any] | None) -> tuple[str, str, str]:
    """(health, in flight, waiting on / last error) of one stage."""
    if health is None:
        return "[dim]no URL[/dim]", "-", ""
    if not health["reachable"]:
        return "[red]unreachable[/red]", "-", health.get("error") or ""
    state = health.get("status") or "?"
    shown = "[green]ok[/green]" if state == "ok" else f"[red]{state}[/red]"
    notes = []
    if health.get("waiting_on"):
        notes.append(f"waiting on: {health['waiting_on']}")
    last = health.get("last_error")
    if last:
        notes.append(f"last error ({_age(last['at'])}): {last['error']}")
    consumers = health.get("partitions")
    if consumers:  # the replica this URL reaches; --json lists them
        held = {p for ps in consumers.values() for p in ps}
        notes.append(f"holds {len(held)} partition{'' if len(held) == 1 else 's'}")
    return shown, str(health.get("in_flight", "-")), "\n".join(notes)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def stages_table(report: dict[str, Any]) -> Table:
    table = Table(
        "stage",
        "lag",
        "per partition",
        "consumed/s",
        "produced/s",
        "in flight",
        "health",
        "waiting on / last error",
        title=f"stages (throughput over {report['window_s']:.1f} s)",
    )
    for row in report["stages"]:
        if row["group"] is None:
            lag = per_partition = "[dim]reads Argilla[/dim]"
        elif row["lag"] is None:
            lag, per_partition = "-", "[dim]no topic yet[/dim]"
        else:
            lag = f"[yellow]{row['lag']}[/yellow]" if row["lag"] else "0"
            per_partition = " ".join(
                f"{p['topic']}[{p['partition']}]={p['lag']}" for p in row["partitions"]
            )
        health, in_flight, notes = _health_cell(row["health"])
        table.add_row(
            row["service"],
            lag,
            per_partition,
            _rate(row["consumed_per_s"]),
            _rate(row["produced_per_s"]),
            in_flight,
            health,
            notes,
        )
    return table


def dead_letters_table(report: dict[str, Any]) -> Table | str:
    letters = [d for d in report["dead_letters"] if d["messages"]]
    if not letters:
        return "dead letters: none"
    table = Table("dead-letter topic", "messages", "latest", "reason", title="dead letters")
    for d in letters:
        latest = d["latest"]
        when = _age(latest["at"]) if latest else "-"
        reason = f"{latest['service']}: {latest['error']}" if latest else ""
        table.add_row(d["topic"], str(d["messages"]), when, reason)
    return table


def flows_table(records: dict[str, Any]) -> Table:
    names = list(STAGE_NAMES)
    table = Table(
        "flow", *names, "exported", "auto-accepted", "failed", "stuck", title="records per flow"
    )
    for flow in records["flows"]:
        cells = []
        for name in names:
            at = flow["stages"][stage_key(name)]
            if at is None:
                cells.append("[dim]-[/dim]")
                continue
            cell = str(at["reached"])
            if at["stuck"]:
                why = "waiting on people" if name in PEOPLE_STAGES else "stuck"
                cell += f"\n[red]{at['stuck']} {why}[/red]"
            if at["failed"]:
                cell += f"\n[red]{at['failed']} failed[/red]"
            cells.append(cell)
        exported = ", ".join(
            f"{fmt} v{e['version']} ({e['rows']} rows)" for fmt, e in flow["exported"].items()
        )
        table.add_row(
            flow["flow"],
            *cells,
            exported or "-",
            str(flow["auto_accepted"]),
            str(flow["failed"]),
            str(flow["stuck"]),
        )
    return table


def render(report: dict[str, Any]) -> list[Any]:
    """The report as printable blocks: the stages, the dead letters, the records per flow."""
    records = report["records"]
    blocks: list[Any] = [stages_table(report)]
    for answer in report["health"]:
        if answer["service"] is None:
            blocks.append(f"[red]health {answer['url']} unreachable:[/red] {answer['error']}")
    blocks.append(dead_letters_table(report))
    if records["error"]:
        blocks.append(f"[red]flow file:[/red] {records['error']}")
    seen = [f for f in records["flows"] if any(s and s["reached"] for s in f["stages"].values())]
    if seen:
        blocks.append(flows_table({**records, "flows": seen}))
    if len(seen) < len(records["flows"]):
        idle = [f["flow"] for f in records["flows"] if f not in seen]
        blocks.append(f"no records since --since: {', '.join(idle)}")
    if records["unknown_flows"]:
        other = ", ".join(f"{n} ({c})" for n, c in records["unknown_flows"].items())
        blocks.append(f"records of flows not in the flow file: {other}")
    blocks.append(
        f"[dim]records counted from messages since {records['since'][:19]} UTC (--since; "
        f"{records['messages_read']} messages read). Stuck: at a stage for more than "
        f"{records['stuck_after_s']:g} s (--stuck-after); in Argilla and answered, that is "
        "waiting on people.[/dim]"
    )
    return blocks
