"""`loopline trace RECORD_ID`: one record's path through the stages, and its trace.

Every topic is keyed by record id, so the record's messages are found by key (or, for an
unkeyed one, by the id in its body) on each of the set's topics, in stage order, each followed
by its dead-letter topic. Each message says when the record got there, which service wrote it
and what became of it (passed on, dead-lettered and why, auto-accepted or sent to people).
Its trace id comes from the W3C `traceparent` header of its messages; the trace viewer's URL
from LOOPLINE_TELEMETRY__VIEWER_URL (a Phoenix), or the local stack's Phoenix.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer
from aiokafka.errors import KafkaError
from opentelemetry import trace as otel_trace
from rich.table import Table

from cli.options import FlowsFile, StateDir, settings_with
from cli.output import console, fail
from cli.status import BROKER_TIMEOUT_S, broker_error, quiet_kafka_client
from cli.status_report import parse_since
from shared.dead_letters import H_ATTEMPTS, H_ERROR, H_SERVICE
from shared.events import (
    ALL_TOPICS,
    DATASETS_EXPORTED,
    DLQ_SUFFIX,
    FEEDBACK_RESPONSES,
    RECORDS_COMPLETED,
    RECORDS_GENERATED,
    RECORDS_INCOMING,
    RECORDS_INGESTED,
    RECORDS_JUDGED,
    RECORDS_PUBLISHED,
    RECORDS_UNROUTED,
    Record,
)
from shared.flows import Flow, FlowFileError, load_flows
from shared.review import review
from shared.settings import Settings
from shared.stages import Message, TopicFollower
from shared.telemetry import context_from_headers

# Every topic a record's own messages are on, in stage order (exports are per version).
TRACED_TOPICS = tuple(topic for topic in ALL_TOPICS if topic != DATASETS_EXPORTED)
STAGE_OF = {
    RECORDS_INCOMING: "received",
    RECORDS_INGESTED: "ingested",
    RECORDS_UNROUTED: "not routed",
    RECORDS_GENERATED: "generated",
    RECORDS_JUDGED: "judged",
    RECORDS_PUBLISHED: "in Argilla",
    FEEDBACK_RESPONSES: "answered",
    RECORDS_COMPLETED: "completed",
}
PHOENIX_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Step:
    """One message about the record."""

    at: str  # ISO time the message was written
    topic: str  # logical name
    partition: int
    offset: int
    stage: str
    service: str
    outcome: str
    trace_id: str | None


def traced_topics() -> list[str]:
    """The topics a record's path is read from, in stage order, each with its dead letters."""
    return [name for topic in TRACED_TOPICS for name in (topic, topic + DLQ_SUFFIX)]


def trace_id_of(message: Message) -> str | None:
    """The trace id (32 hex digits) of the W3C `traceparent` header, if any."""
    context = otel_trace.get_current_span(context_from_headers(message.headers)).get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def writer(topic: str, flow: Flow | None) -> str:
    """The service that writes a record to `topic` (a skipped stage passes it on earlier)."""
    generates = flow is None or bool(flow.generate)
    judges = flow is None or flow.judge is not None
    if topic == RECORDS_INCOMING:
        return "an app"
    if topic in (RECORDS_INGESTED, RECORDS_UNROUTED):
        return "ingester"
    if topic == RECORDS_GENERATED:
        return "generator" if generates else "ingester"
    if topic == RECORDS_JUDGED:
        return "judge" if judges else ("generator" if generates else "ingester")
    if topic == RECORDS_PUBLISHED:
        return "argilla-publisher"
    return "feedback-collector"


def _judged(body: dict[str, Any], flow: Flow | None) -> str:
    try:
        record = Record.model_validate(body)
    except ValueError:
        return "judged"
    margins = [j.margin for j in record.judgments if j.margin is not None]
    failed = [j for j in record.judgments if j.status != "ok"]
    said = "judged" if record.judgments else "passed on (no judge)"
    if margins:
        said += f" (margin {min(margins):g})"
    if failed:
        said += f", {len(failed)} judgment(s) failed"
    if flow is None:
        return said
    if flow.publish is None:
        return f"{said}; auto-accepted: the flow sends nothing to people"
    decision = review(record, flow.publish.when)
    detail = f": {decision.detail}" if decision.detail else ""
    if decision.to_people:
        return f"{said}; to people ({decision.reason.value}{detail})"
    return f"{said}; auto-accepted ({decision.reason.value})"


def outcome(topic: str, body: dict[str, Any], flow: Flow | None) -> str:
    """What a message about the record says became of it."""
    if topic == RECORDS_INCOMING:
        return "sent to records.incoming"
    if topic in (RECORDS_INGESTED, RECORDS_UNROUTED):
        route = body.get("route") or {}
        reason = f": {route['reason']}" if isinstance(route, dict) and route.get("reason") else ""
        if topic == RECORDS_UNROUTED:
            return f"not taken by the flow's router{reason}"
        return f"ingested into flow {body.get('flow')}{reason}"
    if topic == RECORDS_GENERATED:
        made = [r for r in body.get("responses") or [] if r.get("source") == "generator"]
        return f"{len(made)} response(s) generated" if made else "passed on"
    if topic == RECORDS_JUDGED:
        return _judged(body, flow)
    if topic == RECORDS_PUBLISHED:
        return f"in Argilla: {body.get('workspace')}/{body.get('dataset')}"
    if topic == FEEDBACK_RESPONSES:
        return f"answered by {body.get('annotator')}: {body.get('status')}"
    return f"completed with {len(body.get('responses') or [])} response(s)"


@dataclass
class Path:
    """What was found of one record."""

    record_id: str
    since: datetime
    steps: list[Step]
    flow: str | None = None
    messages_read: int = 0

    @property
    def trace_ids(self) -> list[str]:
        return list(dict.fromkeys(s.trace_id for s in self.steps if s.trace_id))


class PathFinder:
    """Collects the messages about one record (`seen`) into steps, in stage order."""

    def __init__(self, settings: Settings, record_id: str, flows: dict[str, Flow]) -> None:
        self.kafka = settings.kafka
        self.record_id = record_id
        self.key = record_id.encode()
        self.flows = flows
        self.found: list[tuple[str, Message, dict[str, Any]]] = []

    def seen(self, message: Message) -> None:
        if message.key is not None and message.key != self.key:
            return
        try:
            body = json.loads(message.value or b"{}")
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if message.key is None and _record_id(body) != self.record_id:
            return
        self.found.append((self.kafka.logical_topic(message.topic), message, body))

    def steps(self) -> tuple[list[Step], str | None]:
        """The steps in stage order (then time), and the record's flow."""
        flow_name = next((_flow(body) for _, _, body in self.found if _flow(body)), None)
        flow = self.flows.get(flow_name or "")
        order = {name: i for i, name in enumerate(traced_topics())}
        steps = []
        for topic, message, body in sorted(
            self.found, key=lambda f: (order.get(f[0], 99), f[1].timestamp, f[1].offset)
        ):
            at = datetime.fromtimestamp(message.timestamp / 1000, UTC).isoformat()
            base = topic.removesuffix(DLQ_SUFFIX)
            if topic.endswith(DLQ_SUFFIX):
                headers = {k: v.decode(errors="replace") for k, v in message.headers or ()}
                stage = f"dead-lettered from {base}"
                service = headers.get(H_SERVICE, "?")
                attempts = headers.get(H_ATTEMPTS, "?")
                said = f"dead-lettered after {attempts} attempt(s): {headers.get(H_ERROR, '?')}"
            else:
                stage, service = STAGE_OF.get(base, base), writer(base, flow)
                said = outcome(base, body, flow)
            steps.append(
                Step(
                    at,
                    topic,
                    message.partition,
                    message.offset,
                    stage,
                    service,
                    said,
                    trace_id_of(message),
                )
            )
        return steps, flow_name


def _record_id(body: dict[str, Any]) -> str | None:
    nested = body.get("record")
    found = body.get("record_id") or (nested.get("record_id") if isinstance(nested, dict) else None)
    return found if isinstance(found, str) else None


def _flow(body: dict[str, Any]) -> str | None:
    nested = body.get("record")
    found = body.get("flow") or (nested.get("flow") if isinstance(nested, dict) else None)
    return found if isinstance(found, str) else None


async def find_path(
    settings: Settings, record_id: str, since: datetime, flows: dict[str, Flow]
) -> Path:
    """The record's messages on the set's topics since `since`."""
    follower = TopicFollower(settings.kafka, traced_topics(), since.timestamp())
    finder = PathFinder(settings, record_id, flows)
    await asyncio.wait_for(follower.start(), BROKER_TIMEOUT_S)
    try:
        await follower.catch_up(finder.seen)
    finally:
        await follower.stop()
    steps, flow = finder.steps()
    return Path(record_id, since, steps, flow, follower.read)


def viewer_base(settings: Settings, viewer: str | None, state_dir: Any) -> str | None:
    """The trace viewer: the flag, else LOOPLINE_TELEMETRY__VIEWER_URL, else the local stack's
    Phoenix when the broker is the local stack's."""
    if viewer or settings.telemetry.viewer_url:
        return (viewer or settings.telemetry.viewer_url or "").rstrip("/")
    from cli.stack import stack_config

    config = stack_config(state_dir)
    if settings.kafka.bootstrap_servers == config.kafka_bootstrap:
        return config.phoenix_url
    return None


def trace_link(base: str | None, project: str, trace_id: str | None) -> dict[str, Any]:
    """Where to see the trace: {trace_id, viewer, url, spans, note} (Phoenix's API)."""
    link: dict[str, Any] = {
        "trace_id": trace_id,
        "viewer": base,
        "url": None,
        "spans": None,
        "note": None,
    }
    if trace_id is None:
        link["note"] = "its messages carry no traceparent header"
        return link
    if base is None:
        link["note"] = "no trace viewer configured (--viewer, LOOPLINE_TELEMETRY__VIEWER_URL)"
        return link
    try:
        with httpx.Client(base_url=base, timeout=PHOENIX_TIMEOUT_S) as client:
            answer = client.get("/v1/projects")
            answer.raise_for_status()
            ids = {p.get("name"): p.get("id") for p in answer.json().get("data", [])}
            if project not in ids:
                link["note"] = f"Phoenix at {base} has no project {project!r}"
                return link
            link["url"] = f"{base}/projects/{ids[project]}/traces/{trace_id}"
            spans = client.get(f"/v1/projects/{project}/spans", params={"trace_id": trace_id})
            if spans.status_code == 200:
                link["spans"] = len(spans.json().get("data", []))
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        link["note"] = f"Phoenix at {base} did not answer ({type(exc).__name__}: {exc})"
    return link


def trace(
    record_id: Annotated[str, typer.Argument(help="The record's id.")],
    since: Annotated[
        str,
        typer.Option(help="Read messages since then: a duration (7d, 24h) or an ISO time."),
    ] = "7d",
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print JSON: record_id, flow, since, messages_read, steps [{at, topic, "
            "partition, offset, stage, service, outcome, trace_id}], trace_ids, trace "
            "{trace_id, viewer, url, spans, note}.",
        ),
    ] = False,
    viewer: Annotated[
        str | None,
        typer.Option(
            help="The trace viewer's (Phoenix's) base URL (default LOOPLINE_TELEMETRY__"
            "VIEWER_URL, else the local stack's Phoenix)."
        ),
    ] = None,
    flows_file: FlowsFile = None,
    state_dir: StateDir = None,
) -> None:
    """A record's path through the stages (time, stage, service, outcome) and its trace URL."""
    quiet_kafka_client()
    settings = settings_with(flows_file=flows_file)
    try:
        since_at = parse_since(since)
    except ValueError as exc:
        raise fail(f"--since: {exc}") from None
    try:
        flows = dict(load_flows(settings.flows_file).flows)
    except FlowFileError:
        flows = {}  # outcomes without the flow's rules
    try:
        path = asyncio.run(find_path(settings, record_id, since_at, flows))
    except (KafkaError, OSError, TimeoutError) as exc:
        raise fail(broker_error(settings, exc), code=1) from None
    ids = path.trace_ids
    base = viewer_base(settings, viewer, state_dir)
    link = trace_link(base, settings.telemetry.viewer_project, ids[0] if ids else None)
    if as_json:
        document = {
            "record_id": path.record_id,
            "flow": path.flow,
            "since": path.since.isoformat(),
            "messages_read": path.messages_read,
            "steps": [asdict(step) for step in path.steps],
            "trace_ids": ids,
            "trace": link,
        }
        print(json.dumps(document, indent=2))
    else:
        show_path(path, link)
    if not path.steps:
        raise typer.Exit(1)


def show_path(path: Path, link: dict[str, Any]) -> None:
    window = f"since {path.since:%Y-%m-%d %H:%M} UTC, {path.messages_read} messages read"
    if not path.steps:
        console.print(f"no message about {path.record_id} on the set's topics ({window}; --since)")
        return
    table = Table(
        "time (UTC)",
        "stage",
        "service",
        "outcome",
        title=f"record {path.record_id} (flow {path.flow or '?'}; {window})",
    )
    for step in path.steps:
        style = "red" if step.topic.endswith(DLQ_SUFFIX) else None
        table.add_row(
            step.at[:23].replace("T", " "), step.stage, step.service, step.outcome, style=style
        )
    console.print(table)
    if link["url"]:
        spans = f" ({link['spans']} spans)" if link["spans"] is not None else ""
        console.print(f"trace {link['trace_id']}: {link['url']}{spans}")
    elif link["trace_id"]:
        console.print(f"trace {link['trace_id']} ({link['note']})")
    else:
        console.print(f"no trace: {link['note']}")
    if len(path.trace_ids) > 1:
        console.print(
            f"its messages name {len(path.trace_ids)} traces: {', '.join(path.trace_ids)}"
        )
