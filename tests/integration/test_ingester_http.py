"""The ingester's HTTP API against the real broker: every error path, idempotency, routing."""

from __future__ import annotations

import uuid

import httpx

from shared.events import RECORDS_INGESTED, RECORDS_UNROUTED
from shared.settings import Settings
from tests.support.service_helpers import ADMIN_KEY, SUPPORT_KEY, read_records


def auth(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def unique_text(label: str) -> str:
    return f"{label} {uuid.uuid4().hex}"


async def test_health_and_readiness(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "alive"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    docs = await api.get("/openapi.json")
    assert "/v1/records" in docs.json()["paths"]


async def test_missing_key_is_401_and_nothing_ingested(
    api: httpx.AsyncClient, ingest_settings: Settings
) -> None:
    text = unique_text("no key")
    response = await api.post("/v1/records", json={"flow": "support", "instruction": text})
    assert response.status_code == 401
    assert response.json() == {"detail": "missing API key: send 'Authorization: Bearer <key>'"}
    assert response.headers["www-authenticate"] == "Bearer"
    malformed = await api.post(
        "/v1/records", json={"instruction": text}, headers={"authorization": "Token abc"}
    )
    assert malformed.status_code == 401
    assert "expected 'Bearer <key>'" in malformed.json()["detail"]


async def test_wrong_and_out_of_scope_keys_are_403(api: httpx.AsyncClient) -> None:
    wrong = await api.post("/v1/records", json={"instruction": "x"}, headers=auth("not-a-key"))
    assert wrong.status_code == 403
    assert wrong.json() == {"detail": "invalid API key"}
    batch = [
        {"flow": "support", "instruction": unique_text("in scope")},
        {"flow": "sampled", "instruction": unique_text("out of scope")},
    ]
    scoped = await api.post("/v1/records", json=batch, headers=auth(SUPPORT_KEY))
    assert scoped.status_code == 403
    assert scoped.json() == {"detail": "API key 'support-app' may not ingest into flow(s) sampled"}


async def test_wrong_content_type_is_415(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/records",
        content=b"instruction=hi",
        headers={**auth(), "content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert response.json() == {
        "detail": "content type application/x-www-form-urlencoded is not supported; "
        "send application/json"
    }


async def test_oversized_body_and_batch_are_413(api: httpx.AsyncClient) -> None:
    big = {"instruction": "x" * (70 * 1024)}
    response = await api.post("/v1/records", json=big, headers=auth())
    assert response.status_code == 413
    assert "exceeds the 65536" in response.json()["detail"]
    batch = [{"instruction": f"q{i}"} for i in range(51)]
    response = await api.post("/v1/records", json=batch, headers=auth())
    assert response.status_code == 413
    assert response.json() == {"detail": "batch of 51 records exceeds the limit of 50"}


async def test_bad_json_empty_batch_and_all_rejected(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/records", content=b"{not json", headers={**auth(), "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("body is not valid JSON")
    response = await api.post("/v1/records", json=[], headers=auth())
    assert response.status_code == 422
    assert response.json() == {"detail": "empty batch: send at least one record"}
    response = await api.post("/v1/records", json=[{"flow": "support"}], headers=auth())
    assert response.status_code == 422
    body = response.json()
    assert body["accepted"] == []
    [rejection] = body["rejected"]
    assert rejection["index"] == 0
    assert "needs an `instruction` or non-empty `messages`" in rejection["errors"][0]["message"]


async def test_batch_reports_each_item_and_accepted_ones_arrive(
    api: httpx.AsyncClient, ingest_settings: Settings
) -> None:
    good_a = {"flow": "support", "instruction": unique_text("good a"), "tags": ["prod"]}
    good_b = {
        "flow": "support",
        "record_id": f"client-{uuid.uuid4().hex[:8]}",
        "messages": [{"role": "user", "content": unique_text("good b")}],
        "responses": [{"text": "an answer", "model": "app-model", "source": "app"}],
    }
    bad_role = {"flow": "support", "messages": [{"role": "robot", "content": "hi"}]}
    unknown_flow = {"flow": "nope", "instruction": "hi"}
    typo = {"flow": "support", "instructions": "typo"}
    response = await api.post(
        "/v1/records", json=[good_a, bad_role, good_b, unknown_flow, typo], headers=auth()
    )
    assert response.status_code == 200
    body = response.json()
    assert len(body["accepted"]) == 2 and body["accepted"][1] == good_b["record_id"]
    rejected = {r["index"]: r["errors"] for r in body["rejected"]}
    assert set(rejected) == {1, 3, 4}
    assert rejected[1][0]["path"] == "messages.0.role"
    assert rejected[3] == [
        {
            "path": "flow",
            "message": "unknown flow 'nope'; defined: filtered, imports, near, sampled, support",
        }
    ]
    assert any(e["path"] == "instructions" for e in rejected[4])

    arrived = await read_records(ingest_settings.kafka, RECORDS_INGESTED, set(body["accepted"]))
    assert sorted(r.record_id for r in arrived) == sorted(body["accepted"])
    by_id = {r.record_id: r for r in arrived}
    assert by_id[body["accepted"][0]].instruction == good_a["instruction"]
    assert by_id[good_b["record_id"]].responses[0].source == "app"
    assert all(r.route is not None and r.route.routed for r in arrived)


async def test_retries_arrive_once(api: httpx.AsyncClient, ingest_settings: Settings) -> None:
    client_id = f"retry-{uuid.uuid4().hex[:8]}"
    record = {"flow": "support", "record_id": client_id, "instruction": unique_text("retry")}
    first = await api.post("/v1/records", json=record, headers=auth())
    second = await api.post("/v1/records", json=record, headers=auth())
    assert first.json()["accepted"] == second.json()["accepted"] == [client_id]
    assert second.json()["duplicates"] == [client_id]

    # No client id: the Idempotency-Key makes the retry a replay, not a second record.
    anonymous = [{"flow": "support", "instruction": unique_text("keyed")}]
    key = {"idempotency-key": uuid.uuid4().hex, **auth()}
    r1 = await api.post("/v1/records", json=anonymous, headers=key)
    r2 = await api.post("/v1/records", json=anonymous, headers=key)
    assert r2.headers.get("idempotent-replay") == "true"
    assert r1.json() == r2.json()

    # Same content again without either: an exact duplicate (normalised), dropped and counted.
    same = [{"flow": "support", "instruction": "  " + anonymous[0]["instruction"].upper() + " "}]
    r3 = await api.post("/v1/records", json=same, headers=auth())
    assert r3.json()["duplicates"] == r3.json()["accepted"]

    wanted = {client_id, *r1.json()["accepted"], *r3.json()["accepted"]}
    arrived = await read_records(ingest_settings.kafka, RECORDS_INGESTED, wanted, settle_s=2)
    assert sorted(r.record_id for r in arrived) == sorted({client_id, *r1.json()["accepted"]})
    stats = (await api.get("/v1/stats")).json()
    assert stats["duplicates"] >= 2


async def test_redaction_masks_before_anything_leaves(
    api: httpx.AsyncClient, ingest_settings: Settings
) -> None:
    record = {
        "flow": "support",
        "instruction": f"Mail jane.doe@example.com or call +1 (415) 555-0132 {uuid.uuid4().hex}",
        "context": "key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789 card 4111 1111 1111 1111",
        "responses": [{"text": "I emailed jane.doe@example.com", "model": "m", "source": "app"}],
        "metadata": {"user_email": "jane.doe@example.com"},
    }
    body = (await api.post("/v1/records", json=record, headers=auth())).json()
    [arrived] = await read_records(ingest_settings.kafka, RECORDS_INGESTED, set(body["accepted"]))
    wire = arrived.model_dump_json()
    for secret in ("jane.doe@example.com", "555-0132", "sk-proj-abc", "4111 1111"):
        assert secret not in wire
    assert "[EMAIL]" in (arrived.instruction or "") and "[PHONE]" in (arrived.instruction or "")
    assert "[SECRET]" in (arrived.context or "") and "[CREDIT_CARD]" in (arrived.context or "")
    assert arrived.responses[0].text == "I emailed [EMAIL]"
    assert arrived.metadata["user_email"] == "[EMAIL]"
    assert arrived.metadata["redactions"]["email"] == 3


async def test_sampling_and_filters_route_and_count(
    api: httpx.AsyncClient, ingest_settings: Settings
) -> None:
    sampled = [{"flow": "sampled", "instruction": unique_text(f"s{i}")} for i in range(40)]
    body = (await api.post("/v1/records", json=sampled, headers=auth())).json()
    routed = set(body["accepted"]) - set(body["unrouted"])
    assert 8 <= len(routed) <= 32  # a 0.5 sample of 40, deterministic per record id
    kept = await read_records(ingest_settings.kafka, RECORDS_UNROUTED, set(body["unrouted"]))
    assert {r.record_id for r in kept} == set(body["unrouted"])
    assert all(r.route and "sampled out" in r.route.reason for r in kept)
    passed = await read_records(ingest_settings.kafka, RECORDS_INGESTED, routed)
    assert {r.record_id for r in passed} == routed

    tagged = [
        {"flow": "filtered", "instruction": unique_text(f"f{i}"), "tags": ["prod"]}
        for i in range(5)
    ]
    untagged = {"flow": "filtered", "instruction": unique_text("untagged")}
    body = (await api.post("/v1/records", json=[*tagged, untagged], headers=auth())).json()
    assert len(body["unrouted"]) == 3  # the untagged one, and two over the cap of 3
    out = await read_records(ingest_settings.kafka, RECORDS_UNROUTED, set(body["unrouted"]))
    reasons = sorted(r.route.reason for r in out if r.route)
    assert reasons[0].startswith("cap of 3 records per 3600s reached")
    assert any("missing required tag(s) ['prod']" in reason for reason in reasons)


async def test_near_duplicates_are_dropped(
    api: httpx.AsyncClient, ingest_settings: Settings
) -> None:
    words = [f"w{uuid.uuid4().hex[:6]}" for _ in range(150)]
    base = "Explain " + " ".join(words)
    edited = "Please explain " + " ".join(words)
    first = (
        await api.post("/v1/records", json={"flow": "near", "instruction": base}, headers=auth())
    ).json()
    second = (
        await api.post("/v1/records", json={"flow": "near", "instruction": edited}, headers=auth())
    ).json()
    assert first["duplicates"] == []
    assert second["duplicates"] == second["accepted"]
    assert (await api.get("/v1/stats")).json()["near_duplicates"] >= 1
