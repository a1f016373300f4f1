"""Standard Webhooks signatures, as Argilla's worker sends them.

A delivery carries three headers:

- `webhook-id`: the message id (the same on every retry of one message);
- `webhook-timestamp`: when this attempt was signed, in whole Unix seconds;
- `webhook-signature`: space-separated `<version>,<base64 signature>` entries. A `v1` signature
  is HMAC-SHA256 over `f"{id}.{timestamp}.{body}"` with the secret's bytes as the key.

A secret is base64, optionally prefixed with `whsec_` (Argilla's have no prefix). More than one
entry in the header (key rotation) and more than one accepted secret are both fine: one match is
enough. Comparison is constant-time; a timestamp outside the tolerance either way is refused so a
captured delivery cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300.0
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)


_UNIX_SECONDS = re.compile(r"[0-9]{1,15}")


class SignatureError(ValueError):
    """The delivery is not authentic (or not fresh); the message says why, without secrets."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (`whsec_` prefix optional)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "webhook secret is not base64 (after an optional 'whsec_' prefix)"
        ) from None


def _digest(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for a delivery (one `v1` entry)."""
    digest = _digest(secret_key(secret), msg_id, str(timestamp), body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None or not value.strip():
        raise SignatureError(f"missing header {name!r}: not a signed webhook delivery")
    return value.strip()


def _v1_signatures(header: str) -> list[bytes]:
    """The well-formed `v1` signatures of a `webhook-signature` header: base64 of 32 bytes.

    Entries of other versions, and malformed ones, are ignored.
    """
    found: list[bytes] = []
    for entry in header.split(" "):
        version, comma, encoded = entry.partition(",")
        if not comma or version != SIGNATURE_VERSION:
            continue
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(decoded) == hashlib.sha256().digest_size:
            found.append(decoded)
    return found


def verify(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> str:
    """Check a delivery; return its message id, or raise `SignatureError` saying what is wrong.

    `headers` must look names up in lower case (Starlette's headers do, whatever the case sent).
    """
    msg_id = _header(headers, ID_HEADER)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature_header = _header(headers, SIGNATURE_HEADER)
    # ASCII digits only, and few enough for a float (`str.isdigit` accepts "²" and other
    # scripts' digits that `int` refuses; 5000 digits would overflow).
    if not _UNIX_SECONDS.fullmatch(timestamp):
        raise SignatureError(f"{TIMESTAMP_HEADER} {timestamp[:32]!r} is not Unix time in seconds")
    age = (time.time() if now is None else now) - int(timestamp)
    if age > tolerance_s:
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is {age:.0f} s old (tolerance {tolerance_s:.0f} s): "
            "a replayed or long-delayed delivery"
        )
    if -age > tolerance_s:
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is {-age:.0f} s in the future (tolerance {tolerance_s:.0f} s): "
            "check the clocks"
        )
    candidates = _v1_signatures(signature_header)
    if not candidates:
        raise SignatureError(
            f"{SIGNATURE_HEADER} has no well-formed '{SIGNATURE_VERSION},<base64>' entry"
        )
    if not secrets:
        raise SignatureError("no webhook secret is known yet: cannot verify the delivery")
    for secret in secrets:
        expected = _digest(secret_key(secret), msg_id, timestamp, body)
        # Check every candidate (no early exit on the first mismatch) in constant time each.
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return msg_id
    raise SignatureError("no signature matches: forged, altered, or signed with another secret")
