"""Request bodies read within bounds: the bytes on the wire, then what they inflate to.

Both `/v1/records` and `/v1/traces` take `Content-Encoding: gzip` or `deflate` (the OpenTelemetry
Collector compresses with gzip by default). The limit holds twice: for the bytes read and for
the bytes they decompress to, which stops at the limit instead of inflating a small bomb whole.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import TypeVar

from fastapi import HTTPException, Request

__all__ = ["decode_content", "off_the_loop", "read_body"]

ENCODINGS = ("gzip", "deflate", "identity")
# Bodies up to this size are parsed on the event loop; larger ones in a worker thread, so one
# large request does not hold up the others.
THREAD_FROM_BYTES = 256 * 1024

T = TypeVar("T")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body as sent; 413 as soon as it is larger than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body of {declared} bytes exceeds the {limit} limit")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise HTTPException(413, f"request body exceeds the {limit} bytes limit")
    return bytes(body)


def _wbits(encoding: str, body: bytes) -> int:
    if encoding in ("gzip", "x-gzip"):
        return 16 + zlib.MAX_WBITS
    # HTTP's deflate is zlib-wrapped (RFC 9110), but some clients send raw deflate.
    wrapped = len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
    return zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    out = bytearray()
    rest = body
    while rest:  # gzip allows several members one after another
        inflater = zlib.decompressobj(_wbits(encoding, rest))
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise HTTPException(400, f"body is not valid {encoding} data: {exc}") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise HTTPException(413, f"request body inflates past the {limit} bytes limit")
        if not inflater.eof:
            raise HTTPException(400, f"body is not valid {encoding} data: it ends too early")
        rest = inflater.unused_data if encoding != "deflate" else b""
    return bytes(out)


def decode_content(body: bytes, content_encoding: str, limit: int) -> bytes:
    """`body` decompressed as its `Content-Encoding` header says (codings applied in order)."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding not in ("gzip", "x-gzip", "deflate"):
            raise HTTPException(
                415,
                f"content encoding {coding} is not supported; send {', '.join(ENCODINGS)}",
            )
        body = _inflate(body, coding, limit)
    return body


async def off_the_loop(size: int, work: Callable[[], T]) -> T:
    """`work()`, in a worker thread when the body it works on is large."""
    if size < THREAD_FROM_BYTES:
        return work()
    return await asyncio.to_thread(work)
