"""Bot annotators at work: real Argilla annotator users answering a flow's pending records
through Argilla's REST API as the UI does, with a policy making up the answers.

A demo, test and benchmark tool (`loopline annotate`, `loopline demo`, the loop benchmark):
its answers stand in for people's. Each round, the owner lists the flow's datasets (records,
their status and everyone's responses, from the database), hands each pending record to as
many bots as it still needs submissions (bots that have not answered it, least busy first),
and each bot answers its share in bulk with its own API key, so every answer fires Argilla's
response webhook exactly like a person's. A discarded record needs someone else; a record every
bot has answered or skipped is left to people.

The run ends after `limit` answers, or once no bot has had anything to answer for
`idle_timeout_s` seconds (0: as soon as a round finds nothing to do).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from devstack.annotators.accounts import Account, Seat, ensure_account, publish_of, seats
from devstack.annotators.base import Action, AnnotatorPolicy, Answer, Task, check_answer
from devstack.annotators.rest import BULK, ArgillaREST, ListedRecord
from devstack.annotators.tasks import make_task
from shared.flows import Flow, FlowsConfig
from shared.plugins import PluginKind, PluginRegistry
from shared.settings import ArgillaSettings, Settings
from shared.templates import QuestionSpec, Template

log = logging.getLogger("loopline.annotators")
MAX_VERSIONS = 50  # the publisher's `-v<N>` versions of a dataset
MAX_ERRORS = 20


@dataclass(frozen=True)
class RunOptions:
    """When a run stops and how fast it answers."""

    limit: int | None = None  # answers (submitted or discarded) across bots
    rate_per_s: float | None = None  # answers per second across bots
    idle_timeout_s: float = 10.0  # stop after this long with nothing to answer
    poll_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be at least 1")
        if self.rate_per_s is not None and self.rate_per_s <= 0:
            raise ValueError("rate_per_s must be above 0")
        if self.idle_timeout_s < 0 or self.poll_interval_s <= 0:
            raise ValueError("idle_timeout_s must be >= 0 and poll_interval_s > 0")


@dataclass
class Tally:
    """One bot's answers so far."""

    submitted: int = 0
    discarded: int = 0
    skipped: int = 0
    failed: int = 0

    @property
    def answered(self) -> int:
        return self.submitted + self.discarded


@dataclass
class RunReport:
    """Progress of a run, and its summary at the end."""

    flow: str
    tallies: dict[str, Tally] = field(default_factory=dict)  # by bot username
    datasets: list[str] = field(default_factory=list)  # "<workspace>/<dataset>" found
    pending: int = 0  # records still waiting for submissions, in the last round
    left_to_people: int = 0  # pending records that every bot has answered or skipped
    errors: list[str] = field(default_factory=list)
    stopped: str = ""  # why the run ended
    elapsed_s: float = 0.0

    def total(self, name: str) -> int:
        return sum(getattr(tally, name) for tally in self.tallies.values())

    @property
    def answered(self) -> int:
        return self.total("answered")

    def line(self) -> str:
        return (
            f"answered {self.answered} (submitted {self.total('submitted')}, discarded "
            f"{self.total('discarded')}), skipped {self.total('skipped')}, failed "
            f"{self.total('failed')}"
        )


@dataclass(frozen=True)
class _Dataset:
    id: str
    label: str  # workspace/name
    min_submitted: int
    question_names: Mapping[str, str]  # question id -> name
    required: frozenset[str]


@dataclass
class _Bot:
    seat: Seat
    account: Account
    client: ArgillaREST
    passed: set[str] = field(default_factory=set)  # records it skipped or failed on


class _Throttle:
    """What the bots may still send: at most `limit` answers in all, `rate_per_s` a second
    (None: no bound). Shared by the bots of a run."""

    def __init__(self, limit: int | None, rate_per_s: float | None) -> None:
        self.left = limit
        self.rate_per_s = rate_per_s
        self._next = 0.0

    @property
    def chunk(self) -> int:
        """Answers per request: a bulk, or a second's worth."""
        return BULK if self.rate_per_s is None else max(1, min(BULK, int(self.rate_per_s)))

    def take(self, wanted: int) -> int:
        """How many of `wanted` answers the limit still allows (reserved now)."""
        if self.left is None:
            return wanted
        granted = min(wanted, self.left)
        self.left -= granted
        return granted

    def give_back(self, unused: int) -> None:
        if self.left is not None:
            self.left += unused

    async def wait(self, answers: int) -> None:
        """Until `answers` more may be sent."""
        if self.rate_per_s is None:
            return
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + answers / self.rate_per_s
        await asyncio.sleep(start - now)


def argilla_values(values: Mapping[str, Any], specs: Sequence[QuestionSpec]) -> dict[str, Any]:
    """Plain answer values as Argilla takes them: `{question: {"value": ...}}`, a ranking as
    `[{"value": label, "rank": 1}, ...]`."""
    kinds = {spec.name: spec.kind for spec in specs}
    wire: dict[str, Any] = {}
    for name, value in values.items():
        if kinds.get(name) == "ranking":
            value = [{"value": label, "rank": i + 1} for i, label in enumerate(value)]
        wire[name] = {"value": value}
    return wire


def dispatch(
    records: Sequence[ListedRecord],
    bots: Sequence[str],
    min_submitted: int,
    passed: Mapping[str, set[str]],
) -> tuple[dict[str, list[ListedRecord]], int]:
    """Each pending record to as many bots (user ids) as it still needs submissions, among
    those that have not answered or passed it, least loaded first (ties by a stable hash);
    and the number of pending records no bot can take."""
    work: dict[str, list[ListedRecord]] = {bot: [] for bot in bots}
    stuck = 0
    for record in records:
        if record.status != "pending":
            continue
        need = max(min_submitted - record.submitted(), 0)
        answered = record.answered_by()
        free = [b for b in bots if b not in answered and record.id not in passed.get(b, set())]
        if need and not free:
            stuck += 1
        chosen = sorted(free, key=lambda b: (len(work[b]), _stable(b, record.id)))[:need]
        for bot in chosen:
            work[bot].append(record)
    return work, stuck


def _stable(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


def build_template(flow_name: str, flow: Flow, registry: PluginRegistry) -> Template:
    publish = publish_of(flow_name, flow)
    template = registry.build(PluginKind.templates, publish.plugin, publish.options)
    if not isinstance(template, Template):
        raise TypeError(f"template {publish.plugin!r} does not implement the contract")
    return template


async def _find_dataset(owner: ArgillaREST, seat: Seat, template: Template) -> _Dataset | None:
    """The seat's dataset: the first version (`name`, `name-v2`, ...) with the template's
    questions, as the publisher picks it; None while it does not exist."""
    workspace = await owner.workspace(seat.workspace)
    if workspace is None:
        return None
    existing = {d["name"]: d for d in await owner.datasets(str(workspace["id"]))}
    wanted = {spec.name for spec in template.questions()}
    for version in range(1, MAX_VERSIONS + 1):
        name = seat.dataset if version == 1 else f"{seat.dataset}-v{version}"
        found = existing.get(name)
        if found is None:
            return None
        questions = await owner.questions(str(found["id"]))
        if {q["name"] for q in questions} == wanted:
            return _Dataset(
                id=str(found["id"]),
                label=f"{seat.workspace}/{name}",
                min_submitted=int(found["distribution"]["min_submitted"]),
                question_names={str(q["id"]): q["name"] for q in questions},
                required=frozenset(q["name"] for q in questions if q["required"]),
            )
    return None


def annotate(
    settings: Settings,
    flows: FlowsConfig,
    flow_name: str,
    *,
    annotators: int | None = None,
    policy: str = "agree",
    policy_options: Mapping[str, Any] | None = None,
    limit: int | None = None,
    rate_per_s: float | None = None,
    idle_timeout_s: float = 10.0,
    progress: Callable[[RunReport], None] | None = None,
    registry: PluginRegistry | None = None,
) -> RunReport:
    """`annotate_flow` from names, blocking: the policy plugin `policy` built from
    `policy_options`, Argilla from `settings.argilla` (what `loopline annotate` runs)."""
    registry = registry or PluginRegistry()
    built = registry.build(PluginKind.annotators, policy, dict(policy_options or {}))
    options = RunOptions(limit=limit, rate_per_s=rate_per_s, idle_timeout_s=idle_timeout_s)
    run = annotate_flow(
        settings.argilla,
        flow_name,
        flows.get(flow_name),
        built,
        bots=annotators,
        options=options,
        progress=progress,
        registry=registry,
    )
    return asyncio.run(run)


async def annotate_flow(
    argilla: ArgillaSettings,
    flow_name: str,
    flow: Flow,
    policy: AnnotatorPolicy,
    *,
    bots: int | None = None,
    options: RunOptions | None = None,
    progress: Callable[[RunReport], None] | None = None,
    registry: PluginRegistry | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RunReport:
    """Run bot annotators on a flow's Argilla datasets until done (see the module).

    `argilla` holds the owner's URL and key and the default workspace; `bots` the number of
    bots (default: as many as a record needs submissions; split mode: the flow's annotators).
    Raises `AccountError` for a flow people cannot annotate, `ArgillaError` when Argilla
    refuses the owner or stays unreachable. `transport` replaces the network (tests).
    """
    options = options or RunOptions()
    template = build_template(flow_name, flow, registry or PluginRegistry())
    places = seats(flow_name, flow, argilla.workspace, bots)
    report = RunReport(flow=flow_name, tallies={seat.username: Tally() for seat in places})
    started = time.monotonic()
    owner = ArgillaREST(argilla.api_url, argilla.api_key_value(), transport=transport)
    crew: list[_Bot] = []
    try:
        for seat in places:
            account = await ensure_account(owner, seat.username, seat.workspace)
            client = ArgillaREST(argilla.api_url, account.api_key, transport=transport)
            crew.append(_Bot(seat, account, client))
        await _Run(owner, crew, template, policy, options, report, progress).rounds()
    finally:
        await owner.close()
        for bot in crew:
            await bot.client.close()
    report.elapsed_s = time.monotonic() - started
    return report


@dataclass
class _Run:
    owner: ArgillaREST
    crew: list[_Bot]
    template: Template
    policy: AnnotatorPolicy
    options: RunOptions
    report: RunReport
    progress: Callable[[RunReport], None] | None
    datasets: dict[tuple[str, str], _Dataset] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.throttle = _Throttle(self.options.limit, self.options.rate_per_s)

    async def rounds(self) -> None:
        """List, dispatch, answer; again, until the limit or `idle_timeout_s` idle."""
        report, options = self.report, self.options
        last_work = time.monotonic()
        while True:
            jobs = await self._round()
            if report.stopped:
                return
            if jobs:
                await asyncio.gather(*jobs)
                last_work = time.monotonic()
                if options.limit is not None and report.answered >= options.limit:
                    # One more round to count what is still pending, then stop.
                    report.stopped = f"reached the limit of {options.limit} answers"
                continue
            if time.monotonic() - last_work >= options.idle_timeout_s:
                report.stopped = (
                    "no pending records"
                    if report.pending == 0 and self.datasets
                    else f"nothing to answer for {options.idle_timeout_s:g} s"
                )
                return
            await asyncio.sleep(options.poll_interval_s)

    async def _round(self) -> list[Coroutine[Any, Any, None]]:
        """This round's work, one coroutine per bot with records to answer."""
        for bot in self.crew:
            key = (bot.seat.workspace, bot.seat.dataset)
            if key not in self.datasets:
                found = await _find_dataset(self.owner, bot.seat, self.template)
                if found is not None:
                    self.datasets[key] = found
                    self.report.datasets.append(found.label)
        jobs = []
        self.report.pending = self.report.left_to_people = 0
        for key, dataset in self.datasets.items():
            records = await self.owner.records(dataset.id, dataset.question_names)
            here = [bot for bot in self.crew if (bot.seat.workspace, bot.seat.dataset) == key]
            users = [bot.account.user_id for bot in here]
            passed = {bot.account.user_id: bot.passed for bot in here}
            work, stuck = dispatch(records, users, dataset.min_submitted, passed)
            self.report.pending += sum(record.status == "pending" for record in records)
            self.report.left_to_people += stuck
            jobs += [
                self._answer(bot, work[bot.account.user_id], dataset)
                for bot in here
                if work[bot.account.user_id]
            ]
        return jobs

    async def _answer(self, bot: _Bot, records: list[ListedRecord], dataset: _Dataset) -> None:
        """One bot answers its share of a round, in chunks (one bulk request each)."""
        for start in range(0, len(records), self.throttle.chunk):
            chunk = records[start : start + self.throttle.chunk]
            chunk = chunk[: self.throttle.take(len(chunk))]
            if not chunk:
                return
            name, required = bot.seat.username, dataset.required
            tasks = [make_task(r, name, self.template, required) for r in chunk]
            answers = await asyncio.to_thread(_answers, self.policy, tasks)
            await self._send(bot, list(zip(chunk, answers, strict=True)))
            if self.progress is not None:
                self.progress(self.report)

    async def _send(self, bot: _Bot, answered: list[tuple[ListedRecord, Answer | str]]) -> None:
        tally = self.report.tallies[bot.seat.username]
        specs = self.template.questions()
        items: list[dict[str, Any]] = []
        sent: list[tuple[ListedRecord, Answer]] = []
        for record, answer in answered:
            if isinstance(answer, str):
                self._failed(bot, record, answer)
            elif answer.action == Action.skip:
                bot.passed.add(record.id)
                tally.skipped += 1
            else:
                status = "submitted" if answer.action == Action.submit else "discarded"
                # A discarded response with `values: null` breaks Argilla 2.8: send `{}`.
                values = argilla_values(answer.values, specs)
                items.append({"record_id": record.id, "status": status, "values": values})
                sent.append((record, answer))
        self.throttle.give_back(len(answered) - len(items))  # skips and failures are free
        if not items:
            return
        await self.throttle.wait(len(items))
        errors = await bot.client.upsert_responses(items)
        for (record, answer), error in zip(sent, errors, strict=True):
            if error is not None:
                self.throttle.give_back(1)
                self._failed(bot, record, f"Argilla refused the answer: {error}")
            elif answer.action == Action.submit:
                tally.submitted += 1
            else:
                tally.discarded += 1

    def _failed(self, bot: _Bot, record: ListedRecord, why: str) -> None:
        bot.passed.add(record.id)
        self.report.tallies[bot.seat.username].failed += 1
        if len(self.report.errors) < MAX_ERRORS:
            self.report.errors.append(f"{bot.seat.username} on {record.external_id}: {why}")
        log.warning("%s on record %s: %s", bot.seat.username, record.external_id, why)


def _answers(policy: AnnotatorPolicy, tasks: list[Task]) -> list[Answer | str]:
    return [_checked(policy, task) for task in tasks]


def _checked(policy: AnnotatorPolicy, task: Task) -> Answer | str:
    """The policy's answer, or why it cannot be sent."""
    try:
        answer = policy.answer(task)
        check_answer(answer, task.questions, task.required)
    except ValueError as exc:
        return f"policy {policy.name!r}: {exc}"
    return answer
