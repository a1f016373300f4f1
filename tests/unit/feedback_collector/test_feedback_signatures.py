"""Standard Webhooks signature verification of the feedback collector."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from services.feedback_collector.argilla_reader import ArgillaReader
from services.feedback_collector.emitter import Emitter
from services.feedback_collector.mapping import WatchedDatasets
from services.feedback_collector.signatures import (
    SignatureError,
    secret_key,
    sign,
    verify,
)
from services.feedback_collector.webhooks import WebhookReceiver

# The example of the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID, SPEC_TS, SPEC_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

# Argilla's secrets are plain base64, without the `whsec_` prefix.
SECRET = base64.b64encode(b"argilla-webhook-secret-0123456789").decode()
OTHER_SECRET = base64.b64encode(b"someone-else's-secret-9876543210").decode()
NOW = 1_750_000_000
BODY = json.dumps({"type": "response.created", "version": 1, "data": {}}).encode()


def headers(
    signature: str | None = None,
    timestamp: int | str = NOW,
    msg_id: str = "msg_abc",
    body: bytes = BODY,
    secret: str = SECRET,
) -> dict[str, str]:
    stamp = int(timestamp) if isinstance(timestamp, int) else 0
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature or sign(secret, msg_id, stamp, body),
    }


def test_the_specification_example_signs_and_verifies() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    sent = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TS),
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert verify([SPEC_SECRET], sent, SPEC_BODY, now=SPEC_TS + 10) == SPEC_ID


def test_a_valid_delivery_verifies_with_or_without_the_whsec_prefix() -> None:
    assert verify([SECRET], headers(), BODY, now=NOW) == "msg_abc"
    assert verify([f"whsec_{SECRET}"], headers(), BODY, now=NOW) == "msg_abc"
    assert secret_key(SECRET) == secret_key(f"whsec_{SECRET}")


def test_a_forged_signature_is_refused() -> None:
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([SECRET], headers(secret=OTHER_SECRET), BODY, now=NOW)


def test_an_altered_body_id_or_timestamp_is_refused() -> None:
    signed = headers()
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([SECRET], signed, BODY.replace(b"created", b"updated"), now=NOW)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([SECRET], {**signed, "webhook-id": "msg_other"}, BODY, now=NOW)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([SECRET], {**signed, "webhook-timestamp": str(NOW + 1)}, BODY, now=NOW)


def test_a_stale_delivery_is_refused_even_when_correctly_signed() -> None:
    assert verify([SECRET], headers(), BODY, now=NOW + 299)
    with pytest.raises(SignatureError, match=r"301 s old \(tolerance 300 s\)"):
        verify([SECRET], headers(), BODY, now=NOW + 301)
    with pytest.raises(SignatureError, match="old"):
        verify([SECRET], headers(), BODY, now=NOW + 11, tolerance_s=10)


def test_a_delivery_from_the_future_is_refused() -> None:
    assert verify([SECRET], headers(), BODY, now=NOW - 299)
    with pytest.raises(SignatureError, match="in the future"):
        verify([SECRET], headers(), BODY, now=NOW - 301)


def test_one_matching_signature_among_several_is_enough() -> None:
    good = sign(SECRET, "msg_abc", NOW, BODY)
    forged = sign(OTHER_SECRET, "msg_abc", NOW, BODY)
    for header in (
        f"{forged} {good}",
        f"{good} {forged}",
        f"v1,{base64.b64encode(b'x' * 32).decode()} {good}",
        f"v1a,{good[3:]} {good}",  # another scheme's entry is skipped
        f"garbage {good}",
    ):
        assert verify([SECRET], headers(signature=header), BODY, now=NOW) == "msg_abc"
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([SECRET], headers(signature=f"{forged} {forged}"), BODY, now=NOW)


def test_any_of_several_known_secrets_may_have_signed() -> None:
    signed = headers(secret=OTHER_SECRET)
    assert verify([SECRET, OTHER_SECRET], signed, BODY, now=NOW) == "msg_abc"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_or_empty_header_is_refused(missing: str) -> None:
    without = {k: v for k, v in headers().items() if k != missing}
    with pytest.raises(SignatureError, match=f"missing header '{missing}'"):
        verify([SECRET], without, BODY, now=NOW)
    with pytest.raises(SignatureError, match=f"missing header '{missing}'"):
        verify([SECRET], {**headers(), missing: "  "}, BODY, now=NOW)


@pytest.mark.parametrize("timestamp", ["abc", "1.5e9", "-1750000000", "1750000000.0", "0x10"])
def test_a_timestamp_that_is_not_unix_seconds_is_refused(timestamp: str) -> None:
    with pytest.raises(SignatureError, match="not Unix time in seconds"):
        verify([SECRET], headers(timestamp=timestamp, signature="v1,AAAA"), BODY, now=NOW)


@pytest.mark.parametrize(
    "signature",
    ["nocomma", "v1,", "v1,not*base64!", "v2,AAAA", ",AAAA", "v1;AAAA"],
)
def test_a_signature_header_without_a_well_formed_v1_entry_is_refused(signature: str) -> None:
    with pytest.raises(SignatureError, match="no well-formed 'v1,<base64>' entry"):
        verify([SECRET], headers(signature=signature), BODY, now=NOW)


def test_nothing_verifies_without_a_secret() -> None:
    with pytest.raises(SignatureError, match="no webhook secret"):
        verify([], headers(), BODY, now=NOW)


def test_a_secret_that_is_not_base64_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="not base64"):
        secret_key("whsec_not base64!")


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def __call__(
        self, topic: str, key: bytes, value: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.sent.append((topic, key, value))


def _receiver(secrets: tuple[str, ...]) -> tuple[WebhookReceiver, _Recorder]:
    recorder = _Recorder()
    receiver = WebhookReceiver(
        lambda: secrets,
        ArgillaReader("http://127.0.0.1:9", "unused"),
        WatchedDatasets(frozenset({("admin", "support")})),
        Emitter(recorder),
        tolerance_s=300,
    )
    return receiver, recorder


def _response_payload() -> dict[str, Any]:
    dataset = {"id": "d1", "name": "support", "workspace": {"id": "w1", "name": "admin"}}
    record = {
        "id": "r1",
        "status": "pending",
        "external_id": "rec-1",
        "metadata": {},
        "dataset": dataset,
        "updated_at": "2025-01-01T00:00:00",
    }
    return {
        "type": "response.created",
        "version": 1,
        "timestamp": "2025-01-01T00:00:00.000000Z",
        "data": {
            "id": "resp-1",
            "values": {"rating": {"value": 4}},
            "status": "submitted",
            "record": record,
            "user": {"id": "u1", "username": "ann"},
            "updated_at": "2025-01-01T00:00:01",
        },
    }


async def test_the_receiver_refuses_forged_deliveries_and_emits_nothing() -> None:
    receiver, recorder = _receiver((SECRET,))
    body = json.dumps(_response_payload()).encode()
    forged = headers(body=body, secret=OTHER_SECRET, timestamp=int(time.time()))
    outcome = await receiver.receive(forged, body)
    assert outcome.code == 401
    assert "no signature matches" in outcome.body["detail"]
    assert recorder.sent == [] and receiver.rejected == 1


async def test_the_receiver_emits_a_verified_response() -> None:
    receiver, recorder = _receiver((SECRET,))
    body = json.dumps(_response_payload()).encode()
    signed = headers(body=body, timestamp=int(time.time()))
    outcome = await receiver.receive(signed, body)
    assert (outcome.code, outcome.body["status"]) == (200, "sent")
    [(topic, key, value)] = recorder.sent
    assert (topic, key) == ("feedback.responses", b"rec-1")
    event = json.loads(value)
    assert event["annotator"] == "ann" and event["values"] == {"rating": 4}
    assert event["responded_at"].startswith("2025-01-01T00:00:01")
    again = await receiver.receive(signed, body)  # a retried delivery: not sent twice
    assert again.body["status"] == "duplicate" and len(recorder.sent) == 1


async def test_the_receiver_asks_for_a_retry_until_it_knows_its_secret() -> None:
    receiver, recorder = _receiver(())
    outcome = await receiver.receive(headers(), BODY)
    assert outcome.code == 503 and recorder.sent == []
