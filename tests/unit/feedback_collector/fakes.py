"""Doubles for the feedback collector's unit tests: Argilla's REST API, the broker, and Kafka's
log read back (the collector consumes no topic, so there are no handlers to run under
`TestKafkaBroker`; this broker keeps what is published, in order, and refuses a message over
its size limit as aiokafka's producer does)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr

from services.feedback_collector.app import FeedbackCollector
from services.feedback_collector.signatures import sign
from shared.dead_letters import DeadLetters
from shared.events import CandidateResponse, Record
from shared.flows import parse_flows
from shared.service import ServiceContext
from shared.settings import Settings

SECRET = "YXJnaWxsYS13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5"
WORKSPACE = "admin"
DEFAULT_LIMIT = 1_048_576  # aiokafka's default max_request_size


def naive(moment: datetime) -> str:
    """As Argilla writes timestamps: naive UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat()


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


@dataclass
class Message:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    offset: int
    order: int = 0  # across topics, in publish order
    partition: int = 0


@dataclass
class FakeBroker:
    """What the collector publishes, per topic, as Kafka would keep it."""

    max_message_bytes: int = DEFAULT_LIMIT
    topics: dict[str, list[Message]] = field(default_factory=dict)
    running: bool = True
    refuse: Callable[[str, bytes], Exception | None] | None = None

    async def publish(
        self,
        message: bytes,
        topic: str,
        key: bytes | None = None,
        headers: dict[str, str] | None = None,
        **_: Any,
    ) -> None:
        if len(message) > self.max_message_bytes:
            raise MessageSizeTooLargeError(
                f"The message is {len(message)} bytes when serialized which is larger than "
                f"the maximum request size you have configured ({self.max_message_bytes})"
            )
        if self.refuse is not None and (error := self.refuse(topic, message)) is not None:
            raise error
        log = self.topics.setdefault(topic, [])
        order = sum(len(messages) for messages in self.topics.values())
        carried: dict[str, str] = {}
        propagate.inject(carried)  # the trace context, as FastStream's telemetry middleware does
        log.append(Message(topic, key, message, carried | dict(headers or {}), len(log), order))

    def values(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(m.value) for m in self.topics.get(topic, [])]

    def empty(self, topic: str) -> None:
        """Retention removed everything (offsets go on from where they were)."""
        self.topics[topic] = []


def fake_read_to_end(broker: FakeBroker) -> Callable[..., AsyncIterator[list[Message]]]:
    """`shared.topic_reader.read_to_end` over the fake broker's topics (the flow set's:
    `kafka.topic` of the logical names it is given, as the real one reads)."""

    async def read_to_end(
        kafka: Any,
        topics: Sequence[str],
        start_at: Callable[[TopicPartition, int, int], int] | None = None,
        timeout_s: float = 60.0,
    ) -> AsyncIterator[list[Message]]:
        for topic in (kafka.topic(name) for name in topics):
            log = broker.topics.get(topic, [])
            if not log:
                continue
            first, end = log[0].offset, log[-1].offset + 1
            start = first if start_at is None else start_at(TopicPartition(topic, 0), first, end)
            batch = [m for m in log if m.offset >= max(first, start)]
            if batch:
                yield batch

    return read_to_end


@dataclass
class FakeResponse:
    user_id: str
    status: str
    values: dict[str, Any]
    updated_at: datetime
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "values": {q: {"value": v} for q, v in self.values.items()},
            "status": self.status,
            "user_id": self.user_id,
            "updated_at": naive(self.updated_at),
        }


@dataclass
class FakeRecord:
    record: Record
    dataset_id: str
    min_submitted: int
    responses: list[FakeResponse] = field(default_factory=list)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    updated_at: datetime = field(default_factory=lambda: ago(3600))
    traceparent: str | None = None  # the record's trace, as the publisher stores it

    @property
    def metadata(self) -> dict[str, Any]:
        stored = {"loopline_record": self.record.model_dump_json()}
        return stored | ({"loopline_traceparent": self.traceparent} if self.traceparent else {})

    @property
    def status(self) -> str:
        submitted = sum(r.status == "submitted" for r in self.responses)
        return "completed" if submitted >= self.min_submitted else "pending"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "external_id": self.record.record_id,
            "metadata": self.metadata,
            "responses": [r.as_json() for r in self.responses],
            "dataset_id": self.dataset_id,
            "updated_at": naive(self.updated_at),
        }


PageHook = Callable[[str, int], None]  # (dataset id, offset) before a page is answered


class FakeArgilla:
    """The REST endpoints the collector reads, over records kept in memory."""

    url = "http://127.0.0.1:6900"

    def __init__(self) -> None:
        self.datasets: dict[str, tuple[str, str]] = {}  # id -> (workspace, name)
        self.records: dict[str, list[FakeRecord]] = {}  # dataset id -> in insertion order
        self.users: dict[str, str] = {}  # id -> username
        self.on_page: PageHook | None = None
        self.pages_read = 0

    def dataset(self, name: str, workspace: str = WORKSPACE) -> str:
        dataset_id = str(uuid.uuid4())
        self.datasets[dataset_id] = (workspace, name)
        self.records[dataset_id] = []
        return dataset_id

    def user(self, username: str) -> str:
        user_id = str(uuid.uuid4())
        self.users[user_id] = username
        return user_id

    def add(self, dataset_id: str, record: Record, min_submitted: int = 1) -> FakeRecord:
        added = FakeRecord(record, dataset_id, min_submitted)
        self.records[dataset_id].append(added)
        return added

    def respond(
        self,
        record: FakeRecord,
        username: str,
        status: str = "submitted",
        at: datetime | None = None,
        **values: Any,
    ) -> FakeResponse:
        """A response is created, or the user's response replaced (a new `updated_at`)."""
        user_id = next((i for i, n in self.users.items() if n == username), None)
        user_id = user_id or self.user(username)
        moment = at or datetime.now(UTC)
        record.responses = [r for r in record.responses if r.user_id != user_id]
        response = FakeResponse(user_id, status, values, moment)
        record.responses.append(response)
        record.updated_at = max(record.updated_at, moment)
        return response

    def find(self, argilla_id: str) -> FakeRecord | None:
        for records in self.records.values():
            for record in records:
                if record.id == argilla_id:
                    return record
        return None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        parts = path.strip("/").split("/")
        if path == "/api/v1/me/workspaces":
            names = sorted({w for w, _ in self.datasets.values()})
            return httpx.Response(200, json={"items": [{"id": n, "name": n} for n in names]})
        if path == "/api/v1/me/datasets":
            items = [
                {
                    "id": i,
                    "name": n,
                    "workspace_id": w,
                    "last_activity_at": naive(ago(7200)),
                }
                for i, (w, n) in self.datasets.items()
            ]
            return httpx.Response(200, json={"items": items})
        if parts[:3] == ["api", "v1", "datasets"] and parts[4:] == ["records"]:
            offset = int(request.url.params.get("offset", "0"))
            limit = int(request.url.params.get("limit", "50"))
            if self.on_page is not None:
                self.on_page(parts[3], offset)
            self.pages_read += 1
            records = self.records.get(parts[3], [])
            page = records[offset : offset + limit]
            items = [r.as_json() for r in page]
            return httpx.Response(200, json={"items": items, "total": len(records)})
        if parts[:3] == ["api", "v1", "records"] and len(parts) == 4:
            found = self.find(parts[3])
            if found is None:
                return httpx.Response(404, json={"detail": "Record not found"})
            return httpx.Response(200, json=found.as_json())
        if parts[:3] == ["api", "v1", "users"] and len(parts) == 4:
            username = self.users.get(parts[3])
            if username is None:
                return httpx.Response(404, json={"detail": "User not found"})
            return httpx.Response(200, json={"id": parts[3], "username": username})
        return httpx.Response(404, json={"detail": f"no route {path}"})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, transport=httpx.MockTransport(self.handle), timeout=5
        )

    # Webhook payloads, as Argilla's worker posts them.
    def _hook_record(self, record: FakeRecord) -> dict[str, Any]:
        workspace, name = self.datasets[record.dataset_id]
        return {
            "id": record.id,
            "status": record.status,
            "external_id": record.record.record_id,
            "metadata": record.metadata,
            "dataset": {
                "id": record.dataset_id,
                "name": name,
                "workspace": {"id": workspace, "name": workspace},
            },
            "updated_at": naive(record.updated_at),
        }

    def response_hook(self, record: FakeRecord, response: FakeResponse) -> dict[str, Any]:
        data = {
            **response.as_json(),
            "record": self._hook_record(record),
            "user": {"id": response.user_id, "username": self.users[response.user_id]},
        }
        data.pop("user_id")
        return {"type": "response.created", "version": 1, "timestamp": naive(ago(0)), "data": data}

    def completed_hook(self, record: FakeRecord) -> dict[str, Any]:
        return {
            "type": "record.completed",
            "version": 1,
            "timestamp": naive(ago(0)),
            "data": self._hook_record(record),
        }


def signed(
    payload: dict[str, Any] | bytes, msg_id: str | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a delivery signed with `SECRET`, stamped now."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    stamp = int(time.time())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(SECRET, msg_id, stamp, body),
    }
    return headers, body


def loopline_record(record_id: str, text: str = "Paris.") -> Record:
    return Record(
        record_id=record_id,
        flow="feedback-test",
        instruction=f"What is the capital of France? ({record_id})",
        responses=[
            CandidateResponse(text=text, model="m-a"),
            CandidateResponse(text="Lyon.", model="m-b"),
        ],
    )


FLOWS = parse_flows(
    {"flows": {"feedback-test": {"publish": {"plugin": "preference", "dataset": "support"}}}},
    "feedback unit test flows",
)


class Life:
    """One life of the collector process, over a broker (Kafka) and an Argilla that outlive it."""

    def __init__(
        self,
        argilla: FakeArgilla,
        broker: FakeBroker,
        monkeypatch: pytest.MonkeyPatch,
        settings: Settings | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        settings = settings or Settings()
        settings = settings.model_copy(
            update={
                "argilla": settings.argilla.model_copy(
                    update={"workspace": WORKSPACE, "api_key": SecretStr("fake-argilla-key")}
                ),
                "feedback": settings.feedback.model_copy(update={"page_size": 2}),
                "kafka": settings.kafka.model_copy(
                    update={"max_message_bytes": broker.max_message_bytes}
                ),
            }
        )
        # Whatever the collector reads back from Kafka at startup comes from this broker.
        import services.feedback_collector as package

        for name in dir(package):
            module = getattr(package, name)
            if hasattr(module, "read_to_end"):
                monkeypatch.setattr(module, "read_to_end", fake_read_to_end(broker))
            if hasattr(module, "create_state_topic"):
                monkeypatch.setattr(module, "create_state_topic", _no_topic_to_create)
        context = ServiceContext(
            name="feedback-collector",
            settings=settings,
            flows=FLOWS,
            broker=broker,  # type: ignore[arg-type]
            dead_letters=DeadLetters("feedback-collector", settings.retry),
            tracer_provider=tracer_provider,
        )
        self.collector = FeedbackCollector(context)
        self.collector.reader._http = argilla.client()
        self.collector.secrets = (SECRET,)

    async def start(self) -> None:
        await self.collector.load_state()

    async def reconcile(self) -> Any:
        return await self.collector.reconciler.run_pass()

    async def webhook(self, payload: dict[str, Any]) -> Any:
        headers, body = signed(payload)
        return await self.collector.receiver.receive(headers, body)


async def _no_topic_to_create(*_: Any, **__: Any) -> None:
    return None
