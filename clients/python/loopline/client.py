"""Log records from an LLM app to Loopline without slowing the app down.

```python
from loopline.client import LooplineClient

loopline = LooplineClient("http://127.0.0.1:8100", api_key="...", flow="support")
loopline.log(instruction=question, responses=[{"text": answer, "model": "gpt-4o", "source": "app"}])
```

`log` never blocks and never raises: records go into a bounded queue that a background thread
sends in batches. When the queue is full the record is dropped, counted and logged. The queue is
flushed on `close()`, at interpreter exit, or on `flush()`. It works the same from sync and async
code (`await client.aflush()` in async code).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import random
import threading
import time
import uuid
from typing import Any

import httpx

log = logging.getLogger("loopline.client")

_STOP = object()


class LooplineClient:
    def __init__(
        self,
        url: str = "http://127.0.0.1:8100",
        api_key: str | None = None,
        flow: str = "default",
        batch_size: int = 100,
        flush_interval_s: float = 1.0,
        max_queue: int = 10_000,
        timeout_s: float = 10.0,
        max_retries: int = 4,
    ) -> None:
        self.url = url.rstrip("/") + "/v1/records"
        self.flow = flow
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_retries = max_retries
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="loopline-client", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def log(self, record: dict[str, Any] | None = None, **fields: Any) -> bool:
        """Queue a record (a dict, or fields as keywords); False if it had to be dropped."""
        item = {"flow": self.flow, **(record or {}), **fields}
        if self._closed:
            return self._drop("client is closed")
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return self._drop(f"queue full ({self._queue.maxsize} records)")
        return True

    def _drop(self, why: str) -> bool:
        with self._lock:
            self.dropped += 1
            dropped = self.dropped
        if dropped == 1 or dropped % 1000 == 0:
            log.warning("loopline: dropped %d record(s) so far: %s", dropped, why)
        return False

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued record was sent (or given up on); False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    async def aflush(self, timeout_s: float | None = None) -> bool:
        return await asyncio.to_thread(self.flush, timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued, then stop the background thread."""
        if self._closed:
            return
        self._closed = True
        self.flush(timeout_s)
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        self._http.close()
        atexit.unregister(self.close)

    def __enter__(self) -> LooplineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_batch(self) -> tuple[list[Any], bool]:
        batch: list[Any] = []
        deadline = time.monotonic() + self.flush_interval_s
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.task_done()
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._next_batch()
            if batch:
                self._send(batch)
                for _ in batch:
                    self._queue.task_done()

    def _send(self, batch: list[Any]) -> None:
        headers = {"idempotency-key": uuid.uuid4().hex}  # retries of this batch arrive once
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.post(self.url, json=batch, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    self.sent += len(batch)
                    return
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # the request itself is wrong: retrying cannot help
            if attempt < self.max_retries:
                time.sleep(min(10.0, 0.2 * 2**attempt) * (1 + random.random() / 10))
        with self._lock:
            self.failed += len(batch)
        log.error("loopline: could not send %d record(s): %s", len(batch), problem)
