"""`POST /argilla/webhooks` over HTTP: bounded bodies, refused forgeries, never a server error."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.feedback_collector.argilla_reader import ArgillaReader
from services.feedback_collector.emitter import Emitter
from services.feedback_collector.mapping import WatchedDatasets
from services.feedback_collector.signatures import sign
from services.feedback_collector.webhooks import WEBHOOK_PATH, WebhookReceiver, create_app
from shared.events import FEEDBACK_RESPONSES, RECORDS_COMPLETED
from tests.unit.feedback_collector.fakes import (
    SECRET,
    FakeArgilla,
    FakeBroker,
    loopline_record,
    signed,
)

LIMIT = 64_000


def _app(argilla: FakeArgilla, broker: FakeBroker, limit: int = LIMIT) -> Any:
    reader = ArgillaReader(argilla.url, "owner-key")
    reader._http = argilla.client()
    receiver = WebhookReceiver(
        lambda: (SECRET,),
        reader,
        WatchedDatasets(frozenset({("admin", "support")})),
        Emitter(
            lambda topic, key, value, headers=None: broker.publish(
                value, topic=topic, key=key, headers=headers
            )
        ),
        tolerance_s=300,
    )
    try:
        return create_app(receiver, max_body_bytes=limit)
    except TypeError:  # an app without a body limit
        return create_app(receiver)


def _scenario() -> tuple[FakeArgilla, FakeBroker, Any]:
    argilla, broker = FakeArgilla(), FakeBroker()
    dataset = argilla.dataset("support")
    record = argilla.add(dataset, loopline_record("r1"))
    argilla.respond(record, "ann1", rating=4)
    return argilla, broker, record


Client = tuple[httpx.AsyncClient, FakeArgilla, FakeBroker, Any]


def _client(app: Any) -> httpx.AsyncClient:
    # Headers go to the app as the bytes sent (a test client would re-encode them).
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    argilla, broker, record = _scenario()
    async with _client(_app(argilla, broker)) as http:
        yield http, argilla, broker, record


async def test_a_body_over_the_limit_is_refused_before_it_is_read() -> None:
    argilla, broker, _ = _scenario()
    app = _app(argilla, broker)
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):  # 100 chunks of 10 kB, no Content-Length (chunked)
            sent.append(1)
            yield b" " * 10_000

    async with _client(app) as http:
        answer = await http.post(WEBHOOK_PATH, content=chunks(), headers=signed(b"{}")[0])
    assert answer.status_code == 413
    assert f"{LIMIT} bytes" in answer.json()["detail"]
    assert len(sent) <= LIMIT // 10_000 + 2  # it stopped reading soon after the limit
    assert broker.topics == {}


async def test_a_declared_length_over_the_limit_is_refused_at_once(
    client: Client,
) -> None:
    http, argilla, broker, record = client
    headers, body = signed(argilla.completed_hook(record))
    answer = await http.post(
        WEBHOOK_PATH, content=body + b" " * LIMIT, headers={**headers, "content-type": "json"}
    )
    assert answer.status_code == 413
    assert "webhook body" in answer.json()["detail"]
    assert broker.topics == {}


async def test_a_body_within_the_limit_is_handled(
    client: Client,
) -> None:
    http, argilla, broker, record = client
    headers, body = signed(argilla.completed_hook(record))
    answer = await http.post(WEBHOOK_PATH, content=body, headers=headers)
    assert (answer.status_code, answer.json()["status"]) == (200, "sent")
    assert [e["record"]["record_id"] for e in broker.values(RECORDS_COMPLETED)] == ["r1"]


@pytest.mark.parametrize(
    "timestamp",
    [
        "²".encode("latin-1"),  # str.isdigit() says yes, int() says no
        "\u0661\u0667\u0665\u0660\u0660\u0660\u0660\u0660\u0660\u0660".encode(),  # Arabic-Indic
        b"9" * 400,  # a number no float holds
        b"9" * 5000,  # past int()'s digit limit
        b"99999999999999999999",
        b"",
        b"\xff\xfe",
    ],
)
async def test_a_malformed_timestamp_is_refused_with_401(client: Client, timestamp: bytes) -> None:
    http, argilla, broker, record = client
    headers, body = signed(argilla.completed_hook(record))
    answer = await http.post(
        WEBHOOK_PATH,
        content=body,
        headers={
            **{k.encode(): v.encode() for k, v in headers.items()},
            b"webhook-timestamp": timestamp,
        },
    )
    assert answer.status_code == 401, answer.text
    assert "webhook-timestamp" in answer.json()["detail"] or "missing header" in answer.text
    assert broker.topics == {}


async def test_a_completion_of_a_record_argilla_no_longer_has_is_ignored(
    client: Client,
) -> None:
    http, argilla, broker, record = client
    payload = argilla.completed_hook(record)
    argilla.records[record.dataset_id].clear()  # deleted since
    answer = await http.post(WEBHOOK_PATH, content=signed(payload)[1], headers=signed(payload)[0])
    assert answer.status_code == 200 and answer.json()["status"] == "ignored", answer.text
    assert "no longer" in answer.json()["reason"]
    payload["data"]["id"] = "../users/me"
    headers, body = signed(payload)
    answer = await http.post(WEBHOOK_PATH, content=body, headers=headers)
    assert answer.status_code == 400 and "data.id" in answer.text, answer.text
    assert broker.topics == {}


# Fuzzing: whatever arrives, the answer is never a server error.
header_values = st.one_of(
    st.binary(max_size=64).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.text(alphabet=st.characters(max_codepoint=255), max_size=64).map(
        lambda s: s.encode("latin-1")
    ),
    st.integers(min_value=-(10**400), max_value=10**400).map(lambda n: str(n).encode()),
    # Digits of every kind Latin-1 has (str.isdigit() accepts superscripts), and a now.
    st.text(alphabet=st.characters(categories=["Nd", "No"], max_codepoint=255), max_size=12).map(
        lambda s: s.encode("latin-1")
    ),
    st.text(alphabet="0123456789\u00b2\u00b3\u00b9", min_size=1, max_size=12).map(
        lambda s: s.encode("latin-1")
    ),
    st.just(str(int(time.time())).encode()),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(
    headers=st.fixed_dictionaries(
        {},
        optional={
            name: header_values
            for name in ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type")
        },
    ),
    body=st.binary(max_size=2000),
)
async def test_fuzzed_deliveries_never_get_a_server_error(
    client: Client, headers: dict[str, bytes], body: bytes
) -> None:
    http, _, broker, _ = client
    raw = {name.encode(): value for name, value in headers.items()}
    answer = await http.post(WEBHOOK_PATH, content=body, headers=raw)
    assert answer.status_code < 500, answer.text
    assert answer.status_code in (401, 413), answer.text  # nothing here is signed
    assert broker.topics == {}


@FUZZ
@given(
    kind=st.sampled_from(
        ["response.created", "response.updated", "response.deleted", "record.completed", "x"]
    ),
    data=st.one_of(json_values, st.dictionaries(st.text(max_size=10), json_values)),
    mutate=st.dictionaries(
        st.sampled_from(["id", "status", "external_id", "metadata", "updated_at", "values"]),
        json_values,
        max_size=3,
    ),
    envelope=st.booleans(),
)
async def test_fuzzed_signed_deliveries_never_get_a_server_error(
    client: Client,
    kind: str,
    data: Any,
    mutate: dict[str, Any],
    envelope: bool,
) -> None:
    """Signed with the right secret (so they get past verification) but not what Argilla sends:
    random data, or a real payload with some fields replaced."""
    http, argilla, broker, record = client
    real = argilla.completed_hook(record) if "record" in kind else _response_hook(argilla, record)
    payload: Any = {"type": kind, "version": 1, "timestamp": real["timestamp"], "data": data}
    if envelope:
        payload = {**real, "type": kind, "data": {**real["data"], **mutate}}
    stamp = int(time.time())
    body = json.dumps(payload).encode()
    answer = await http.post(
        WEBHOOK_PATH,
        content=body,
        headers={
            "webhook-id": "msg_fuzz",
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(SECRET, "msg_fuzz", stamp, body),
        },
    )
    assert answer.status_code < 500, answer.text
    assert answer.status_code in (200, 400), answer.text
    for topic in (FEEDBACK_RESPONSES, RECORDS_COMPLETED):
        assert all(e.get("record_id", "r1") == "r1" for e in broker.values(topic)), topic


def _response_hook(argilla: FakeArgilla, record: Any) -> dict[str, Any]:
    return argilla.response_hook(record, record.responses[0])
