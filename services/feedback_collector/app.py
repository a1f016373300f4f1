"""feedback-collector: captures annotators' responses from Argilla.

Two ways in, one way out:

- **Webhooks** (`POST /argilla/webhooks` on `LOOPLINE_FEEDBACK__HOST:PORT`): Argilla's worker
  posts `response.created|updated|deleted` and `record.completed`, signed with Standard Webhooks;
  the signature is verified (5 minutes tolerance) before anything is emitted. At startup the
  collector registers one webhook for `LOOPLINE_FEEDBACK__PUBLIC_URL`, or reuses the one that
  exists (fixing its events), and takes its secret.
- **Reconciliation** on startup and every `LOOPLINE_FEEDBACK__RECONCILE_INTERVAL_S`: every dataset
  a flow publishes to is read back a page at a time, and responses newer than the dataset's
  progress (minus the overlap) are emitted as they are read (see `reconcile.py`).

State: the progress per dataset and the completions announced live on the compacted topic
`feedback.collector.state` (behind the flow set's topic prefix, as every topic), which the
collector creates and reads back at startup (see `state.py`): nothing on local disk. Webhooks
are answered 503 until it is loaded.

Out: `AnnotatorResponse` on `feedback.responses` and `CompletedRecord` (the Loopline record
rebuilt from the Argilla record's `loopline_record` metadata, with all its responses) on
`records.completed`, keyed by record id; an event too large for the message limit goes to the
topic's `.dlq` with the reason (see `emitter.py`). Responses are delivered at least once
(consumers dedupe by record id and annotator); a record is announced completed once per set of
responses. Deleted responses are logged, not emitted.

The service consumes no topic. Its background work (webhook registration, reconciliation) starts
with the service and ends when the service's broker stops. Whatever fails there (Argilla not
answering yet, at start or later) is retried with backoff for as long as it lasts, `/healthz`
saying what it waits on (`waiting_on`, naming Argilla's address).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from services.feedback_collector.argilla_reader import ArgillaReader, ensure_webhook
from services.feedback_collector.emitter import Emitter
from services.feedback_collector.mapping import WatchedDatasets
from services.feedback_collector.reconcile import Reconciler
from services.feedback_collector.state import (
    STATE_TOPIC,
    CollectorState,
    create_state_topic,
    read_state,
)
from services.feedback_collector.webhooks import (
    DEFAULT_MAX_BODY_BYTES,
    WebhookReceiver,
    create_app,
)
from shared.events import FEEDBACK_RESPONSES, RECORDS_COMPLETED, dead_letter_topic
from shared.failures import TransientError
from shared.service import ServiceContext, ServiceSpec

log = logging.getLogger("loopline.feedback_collector")

BROKER_START_TIMEOUT_S = 300.0
STOP_CHECK_S = 0.25


class FeedbackCollector:
    """The collector's parts and its background loop, bound to one running service."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        settings = context.settings
        self.feedback = settings.feedback
        self.argilla = settings.argilla
        self.watched = WatchedDatasets.from_flows(context.flows, settings.argilla.workspace)
        self.reader = ArgillaReader(settings.argilla.api_url, settings.argilla.api_key_value())
        self.state = CollectorState(self._send, settings.kafka.topic(STATE_TOPIC))
        self.emitter = Emitter(
            self._send,
            self.state,
            max_message_bytes=settings.kafka.max_message_bytes,
            kafka=settings.kafka,
            tracer=context.tracer,
        )
        self.emitter.flow_of = self.watched.flow_of
        self.secrets: tuple[str, ...] = ()
        self.state_loaded = False
        self.receiver = WebhookReceiver(
            lambda: self.secrets if self.state_loaded else (),
            self.reader,
            self.watched,
            self.emitter,
            self.feedback.signature_tolerance_s,
        )
        self.reconciler = Reconciler(
            self.reader,
            self.watched,
            self.emitter,
            overlap_s=self.feedback.reconcile_overlap_s,
            page_size=self.feedback.page_size,
        )
        self._broker_seen_running = False
        self.task: asyncio.Task[None] | None = None

    async def _send(
        self, topic: str, key: bytes, value: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Publish to `topic`, as named on the cluster (the emitter and the state name it)."""
        await self.context.broker.publish(value, topic=topic, key=key, headers=headers)
        if topic != self.state.topic:
            self.context.stats.processed += 1

    # The service runner offers no start/stop hooks: the loop watches the broker instead.
    def stopped(self) -> bool:
        running = bool(self.context.broker.running)
        self._broker_seen_running = self._broker_seen_running or running
        return self._broker_seen_running and not running

    async def _sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; False as soon as the service stops."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.stopped():
                return False
            await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        return not self.stopped()

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[None]]) -> bool:
        """`attempt` until it succeeds, True; False as soon as the service stops. Any failure is
        retried with backoff under `dead_letters.with_retries`, so `/healthz` says meanwhile
        what the collector waits on."""

        async def retried_until_it_works() -> None:
            try:
                await attempt()
            except Exception as exc:
                raise TransientError(f"{type(exc).__name__}: {exc}") from exc

        task = asyncio.create_task(
            self.context.dead_letters.with_retries(retried_until_it_works, what)
        )
        try:
            while not task.done():
                if self.stopped():
                    return False
                await asyncio.wait({task}, timeout=STOP_CHECK_S)
            task.result()
            return True
        finally:
            task.cancel()  # a no-op once it is done

    async def register_webhook(self) -> None:
        registration = await asyncio.to_thread(
            ensure_webhook,
            self.argilla.api_url,
            self.argilla.api_key_value(),
            self.feedback.public_url,
        )
        if registration.action != "reused" or not self.secrets:
            log.info(
                "Argilla webhook %s (%s) posts to %s",
                registration.webhook_id,
                registration.action,
                self.feedback.public_url,
            )
        self.secrets = registration.secrets

    async def load_state(self) -> None:
        """Create the state topic if need be and read it back (before any event is sent)."""
        kafka = self.context.settings.kafka
        await create_state_topic(kafka, STATE_TOPIC)
        self.state.load(await read_state(kafka, STATE_TOPIC))
        self.state_loaded = True

    async def reconcile(self) -> None:
        # Re-registering is cheap and repairs a webhook deleted or disabled meanwhile.
        await self.register_webhook()
        await self.reconciler.run_pass()

    async def _wait_for_broker(self) -> bool:
        deadline = time.monotonic() + BROKER_START_TIMEOUT_S
        while not self.context.broker.running:
            if time.monotonic() > deadline:
                log.error("the broker did not start within %.0f s", BROKER_START_TIMEOUT_S)
                return False
            await asyncio.sleep(0.05)
        self._broker_seen_running = True
        return True

    async def run(self) -> None:
        argilla = f"the Argilla at {self.argilla.api_url}"
        try:
            if not await self._retrying(
                f"registering a webhook in {argilla}", self.register_webhook
            ):
                return
            if not await self._wait_for_broker():
                return
            if not await self._retrying("reading the collector's state", self.load_state):
                return
            while not self.stopped():
                if not await self._retrying(f"reconciling with {argilla}", self.reconcile):
                    return
                if not await self._sleep(self.feedback.reconcile_interval_s):
                    return
        finally:
            with contextlib.suppress(Exception):
                await self.reader.close()
            log.info(
                "feedback-collector loop stopped: %d response(s), %d completed record(s) sent",
                self.emitter.responses_sent,
                self.emitter.completed_sent,
            )

    def start(self) -> None:
        """Start the background loop (called from `register`, inside the service's event loop)."""
        self.task = asyncio.get_running_loop().create_task(self.run(), name="feedback-collector")


def register(context: ServiceContext) -> None:
    collector = FeedbackCollector(context)
    if not collector.watched.targets:
        log.warning("no flow has a `publish` stage: no Argilla dataset is watched")
    # A delivery holds one record and its metadata (the Loopline record, under the message
    # limit, JSON-escaped inside JSON): room for several times the limit.
    max_body = max(DEFAULT_MAX_BODY_BYTES, 8 * context.settings.kafka.max_message_bytes)
    context.serve_http(
        create_app(collector.receiver, max_body), collector.feedback.host, collector.feedback.port
    )
    collector.start()


SERVICE = ServiceSpec(
    name="feedback-collector",
    consumes=(),
    # The state topic is not listed: the collector creates it itself, compacted (`state.py`).
    produces=(
        FEEDBACK_RESPONSES,
        RECORDS_COMPLETED,
        dead_letter_topic(FEEDBACK_RESPONSES),
        dead_letter_topic(RECORDS_COMPLETED),
    ),
    register=register,
    description=__doc__ or "",
)
