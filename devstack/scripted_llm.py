"""A scripted OpenAI-compatible chat-completions server for tests.

A real HTTP/1.1 server on 127.0.0.1 (an ephemeral port), running in the test's own event loop
(`asyncio.start_server` and a minimal parser: Content-Length bodies, keep-alive unless either
side says `connection: close`). `POST /v1/chat/completions` plays a script: a queue of
behaviours, one per request, then a fallback `responder` computing the reply from the request.

    async with ScriptedLLM(script=[status(429, headers={"Retry-After": "1"}), reply("hi")]) as s:
        llm = OpenAICompatibleLLM(s.base_url, "m")
        ...
        assert len(s.requests) == 2

Behaviours: `reply(text, ...)`, `status(code, body, headers)`, `malformed()`, `hang(seconds)`.
Every request body is recorded (`requests`) with its headers and arrival time (`received`), as
is the highest number of requests in flight at once (`max_in_flight`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any

CHAT_PATH = "/v1/chat/completions"
MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Reply:
    """A 200 chat completion. Token counts default to rough estimates from the texts."""

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None
    delay_s: float = 0.0


@dataclass(frozen=True)
class Status:
    """Any status with a JSON body (or none) and extra headers."""

    code: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Malformed:
    """A 200 whose body is not valid JSON."""

    body: bytes = b'{"choices": [{"message": {"content": "cut of'
    delay_s: float = 0.0


@dataclass(frozen=True)
class Hang:
    """Say nothing for `seconds`, then drop the connection without an answer."""

    seconds: float = 30.0


Behaviour = Reply | Status | Malformed | Hang
Responder = Callable[[dict[str, Any]], "str | Behaviour"]


def reply(
    text: str,
    finish_reason: str = "stop",
    *,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    model: str | None = None,
    delay_s: float = 0.0,
) -> Reply:
    return Reply(text, finish_reason, prompt_tokens, completion_tokens, model, delay_s)


def status(
    code: int,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    delay_s: float = 0.0,
) -> Status:
    return Status(code, body, dict(headers or {}), delay_s)


def malformed(body: bytes | None = None, *, delay_s: float = 0.0) -> Malformed:
    return Malformed(body, delay_s) if body is not None else Malformed(delay_s=delay_s)


def hang(seconds: float = 30.0) -> Hang:
    return Hang(seconds)


def context_too_long(prompt_tokens: int = 9000, context: int = 4096) -> Status:
    """llama.cpp's answer to a prompt longer than its context."""
    return status(
        400,
        {
            "error": {
                "code": 400,
                "message": f"request ({prompt_tokens} tokens) exceeds the available context "
                f"size ({context} tokens), try increasing it",
                "type": "exceed_context_size_error",
            }
        },
    )


def echo_last_user_message(body: dict[str, Any]) -> str:
    """The default responder: repeat the last user message."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return f"echo: {message.get('content', '')}"
    return "echo:"


@dataclass(frozen=True)
class ReceivedRequest:
    body: dict[str, Any]
    headers: dict[str, str]
    arrived_at: float  # time.monotonic()


class _BadRequest(Exception):
    pass


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def wants_close(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()


class ScriptedLLM:
    """The server; use as `async with ScriptedLLM(...) as server:`."""

    def __init__(
        self,
        script: Iterable[Behaviour] = (),
        *,
        responder: Responder = echo_last_user_message,
        delay_s: float = 0.0,
        model: str = "scripted-model",
    ) -> None:
        self.script: deque[Behaviour] = deque(script)
        self.responder = responder
        self.delay_s = delay_s  # for replies computed by the responder
        self.model = model
        self.received: list[ReceivedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._port = 0

    # -- the test's side ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the server is not running; use `async with ScriptedLLM()`")
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The bodies of the chat requests received, in order of arrival."""
        return [request.body for request in self.received]

    @property
    def arrivals(self) -> list[float]:
        return [request.arrived_at for request in self.received]

    def add(self, *behaviours: Behaviour) -> None:
        """Queue behaviours after the ones already scripted."""
        self.script.extend(behaviours)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None

    async def __aenter__(self) -> ScriptedLLM:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- the HTTP side ------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        try:
            while True:
                try:
                    request = await self._read_request(reader)
                except _BadRequest as exc:
                    await self._send(writer, 400, _error_body(str(exc)), close=True)
                    return
                if request is None:
                    return
                keep_open = await self._serve(request, writer)
                if not keep_open or request.wants_close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # `stop()` cancels connections still open. Ending normally spares asyncio 3.11's
            # done-callback, which logs a cancelled connection task as an error.
            return
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise _BadRequest("incomplete request head") from exc
            return None  # the client closed an idle keep-alive connection
        except asyncio.LimitOverrunError as exc:
            raise _BadRequest("request head too large") from exc
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, path, _version = lines[0].split(" ", 2)
        except ValueError as exc:
            raise _BadRequest(f"bad request line {lines[0]!r}") from exc
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest(f"bad header line {line!r}")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise _BadRequest("chunked request bodies are not supported")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError as exc:
            raise _BadRequest("bad content-length") from exc
        body = await reader.readexactly(length) if length else b""
        return _Request(method.upper(), path, headers, body)

    async def _serve(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must be closed."""
        path = request.path.split("?", 1)[0]
        if path != CHAT_PATH:
            await self._send(writer, 404, _error_body(f"no route {path}"), close=False)
            return True
        if request.method != "POST":
            await self._send(writer, 405, _error_body("use POST"), close=False)
            return True
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            await self._send(writer, 400, _error_body("the body must be a JSON object"), False)
            return True
        self.received.append(ReceivedRequest(body, dict(request.headers), time.monotonic()))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._play(self._next_behaviour(body), body, writer)
        finally:
            self.in_flight -= 1

    def _next_behaviour(self, body: dict[str, Any]) -> Behaviour:
        if self.script:
            return self.script.popleft()
        answer = self.responder(body)
        return Reply(answer, delay_s=self.delay_s) if isinstance(answer, str) else answer

    async def _play(
        self, behaviour: Behaviour, body: dict[str, Any], writer: asyncio.StreamWriter
    ) -> bool:
        if isinstance(behaviour, Hang):
            await asyncio.sleep(behaviour.seconds)
            return False
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if isinstance(behaviour, Malformed):
            await self._send(writer, 200, behaviour.body, close=False)
        elif isinstance(behaviour, Status):
            payload = b"" if behaviour.body is None else json.dumps(behaviour.body).encode()
            await self._send(writer, behaviour.code, payload, False, behaviour.headers)
        else:
            await self._send(writer, 200, json.dumps(self._completion(behaviour, body)).encode())
        return True

    def _completion(self, behaviour: Reply, body: dict[str, Any]) -> dict[str, Any]:
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        prompt_tokens = behaviour.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = max(1, prompt_chars // 4)
        completion_tokens = behaviour.completion_tokens
        if completion_tokens is None:
            completion_tokens = max(1, len(behaviour.text) // 4)
        return {
            "id": f"chatcmpl-{len(self.received)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": behaviour.model or str(body.get("model") or self.model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": behaviour.text},
                    "finish_reason": behaviour.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        code: int,
        payload: bytes,
        close: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        try:
            reason = HTTPStatus(code).phrase
        except ValueError:
            reason = "Unknown"
        lines = [
            f"HTTP/1.1 {code} {reason}",
            "content-type: application/json",
            f"content-length: {len(payload)}",
            f"connection: {'close' if close else 'keep-alive'}",
        ]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        await writer.drain()


def _error_body(message: str) -> bytes:
    return json.dumps({"error": {"message": message}}).encode()
