"""feedback-collector: captures annotators' responses from Argilla.

Two ways in, one way out:

- **Webhooks** (`POST /argilla/webhooks` on `LOOPLINE_FEEDBACK__HOST:PORT`): Argilla's worker
  posts `response.created|updated|deleted` and `record.completed`, signed with Standard Webhooks;
  the signature is verified (5 minutes tolerance) before anything is emitted. At startup the
  collector registers one webhook for `LOOPLINE_FEEDBACK__PUBLIC_URL`, or reuses the one that
  exists (fixing its events), and takes its secret.
- **Reconciliation** on startup and every `LOOPLINE_FEEDBACK__RECONCILE_INTERVAL_S`: every dataset
  a flow publishes to is read back, and responses newer than the checkpoint are emitted. The
  checkpoint is the newest `responded_at` on `feedback.responses`, read back from the tail of the
  topic at startup: the collector keeps no local state (see `checkpoint.py`).

Out: `AnnotatorResponse` on `feedback.responses` and `CompletedRecord` (the Loopline record
rebuilt from the Argilla record's `loopline_record` metadata, with all its responses) on
`records.completed`, keyed by record id. Delivery is at least once: consumers dedupe by record id
and annotator. Deleted responses are logged, not emitted.

The service consumes no topic. Its background work (webhook registration, reconciliation) starts
with the service and ends when the service's broker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from services.feedback_collector.argilla_reader import ArgillaReader, ensure_webhook
from services.feedback_collector.checkpoint import read_checkpoint
from services.feedback_collector.emitter import Emitter
from services.feedback_collector.mapping import WatchedDatasets
from services.feedback_collector.reconcile import Reconciler
from services.feedback_collector.webhooks import WebhookReceiver, create_app
from shared.events import FEEDBACK_RESPONSES, RECORDS_COMPLETED
from shared.service import ServiceContext, ServiceSpec

log = logging.getLogger("loopline.feedback_collector")

BROKER_START_TIMEOUT_S = 300.0
RETRY_MAX_S = 30.0


class FeedbackCollector:
    """The collector's parts and its background loop, bound to one running service."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        settings = context.settings
        self.feedback = settings.feedback
        self.argilla = settings.argilla
        self.watched = WatchedDatasets.from_flows(context.flows, settings.argilla.workspace)
        self.reader = ArgillaReader(
            settings.argilla.api_url, settings.argilla.api_key.get_secret_value()
        )
        self.emitter = Emitter(self._send)
        self.secrets: tuple[str, ...] = ()
        self.receiver = WebhookReceiver(
            lambda: self.secrets,
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

    async def _send(self, topic: str, key: bytes, value: bytes) -> None:
        await self.context.broker.publish(value, topic=topic, key=key)
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
        delay = 1.0
        while not self.stopped():
            try:
                await attempt()
                return True
            except Exception as exc:
                log.warning("%s failed (%s); retrying in %.0f s", what, exc, delay)
                if not await self._sleep(delay):
                    return False
                delay = min(delay * 2, RETRY_MAX_S)
        return False

    async def register_webhook(self) -> None:
        registration = await asyncio.to_thread(
            ensure_webhook,
            self.argilla.api_url,
            self.argilla.api_key.get_secret_value(),
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

    async def load_checkpoint(self) -> None:
        self.reconciler.checkpoint = await read_checkpoint(
            self.context.settings.kafka,
            FEEDBACK_RESPONSES,
            self.feedback.checkpoint_tail_messages,
        )

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
        try:
            if not await self._retrying("registering the Argilla webhook", self.register_webhook):
                return
            if not await self._wait_for_broker():
                return
            if not await self._retrying("reading the checkpoint", self.load_checkpoint):
                return
            while not self.stopped():
                if not await self._retrying("reconciliation", self.reconcile):
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
    context.serve_http(
        create_app(collector.receiver), collector.feedback.host, collector.feedback.port
    )
    collector.start()


SERVICE = ServiceSpec(
    name="feedback-collector",
    consumes=(),
    produces=(FEEDBACK_RESPONSES, RECORDS_COMPLETED),
    register=register,
    description=__doc__ or "",
)
