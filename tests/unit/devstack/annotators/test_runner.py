"""The bot runner against an in-memory Argilla: who answers what, and when a run ends."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pydantic import SecretStr

from devstack.annotators.accounts import AccountError, ensure_account, person_seat, seats
from devstack.annotators.agree import AgreePolicy
from devstack.annotators.base import AnnotatorPolicy, Answer, Task
from devstack.annotators.rest import ArgillaREST, ListedRecord, ListedResponse
from devstack.annotators.runner import (
    RunOptions,
    RunReport,
    annotate_flow,
    argilla_values,
    dispatch,
)
from devstack.annotators.tasks import make_task, plain_suggestion
from shared.flows import Flow, parse_flows
from shared.settings import ArgillaSettings
from tests.unit.devstack.annotators.fake_argilla import OWNER_KEY, FakeArgilla
from tests.unit.devstack.annotators.records import rated, record, template

ARGILLA = ArgillaSettings(api_url="http://argilla.test", api_key=SecretStr(OWNER_KEY))
NOW: RunOptions = RunOptions(idle_timeout_s=0, poll_interval_s=0.01)


def flow(**publish: Any) -> Flow:
    return parse_flows({"flows": {"f": {"publish": publish}}}, "test").flows["f"]


def judged(n: int) -> list[Any]:
    return [record(f"rec-{i}", judgments=(rated(2, 5),)) for i in range(n)]


async def run(
    fake: FakeArgilla,
    chosen: Flow,
    policy: AnnotatorPolicy,
    bots: int | None = None,
    options: RunOptions = NOW,
) -> RunReport:
    return await annotate_flow(
        ARGILLA, "f", chosen, policy, bots=bots, options=options, transport=fake.transport
    )


class DiscardingBot(AgreePolicy):
    """Discards every record as the bot named `who`; agrees as any other."""

    def __init__(self, who: str = "bot-f-1") -> None:
        super().__init__()
        self.who = who

    def answer(self, task: Task) -> Answer:
        return Answer.discarded() if self.who in (task.annotator, "*") else super().answer(task)


class Skipper(AgreePolicy):
    def answer(self, task: Task) -> Answer:
        return Answer.skipped()


class Broken(AgreePolicy):
    """Agrees, but rates the first response 9 on a 1-5 scale."""

    def answer(self, task: Task) -> Answer:
        return Answer.submitted({**super().answer(task).values, "rating_response_1": 9})


async def test_two_bots_answer_every_record_that_needs_two_submissions() -> None:
    fake = FakeArgilla()
    dataset = fake.add_dataset("admin", "f", template("preference"), judged(5), min_submitted=2)
    report = await run(fake, flow(plugin="preference", min_submitted=2), AgreePolicy())
    assert report.stopped == "no pending records" and report.pending == 0
    stored = fake.responses(dataset)
    assert all(set(by_user) == {"bot-f-1", "bot-f-2"} for by_user in stored.values())
    answer = stored["rec-0"]["bot-f-1"]
    assert answer["status"] == "submitted"
    assert answer["values"]["ranking"]["value"] == [
        {"value": "response_2", "rank": 1},
        {"value": "response_1", "rank": 2},
    ]
    assert report.tallies["bot-f-1"].submitted == report.tallies["bot-f-2"].submitted == 5


async def test_one_submission_each_shares_the_records_between_bots() -> None:
    fake = FakeArgilla()
    dataset = fake.add_dataset("admin", "f", template("preference"), judged(8))
    report = await run(fake, flow(plugin="preference"), AgreePolicy(), bots=2)
    assert [t.submitted for t in report.tallies.values()] == [4, 4]
    assert all(len(by_user) == 1 for by_user in fake.responses(dataset).values())


async def test_a_discarded_record_goes_to_another_bot() -> None:
    fake = FakeArgilla()
    dataset = fake.add_dataset("admin", "f", template("preference"), judged(6))
    report = await run(fake, flow(plugin="preference"), DiscardingBot(), bots=2)
    assert report.pending == 0
    assert report.tallies["bot-f-2"].submitted == 6
    assert report.tallies["bot-f-1"].discarded == 3
    for by_user in fake.responses(dataset).values():
        assert by_user["bot-f-2"]["status"] == "submitted"


async def test_records_every_bot_discarded_are_left_to_people() -> None:
    fake = FakeArgilla()
    fake.add_dataset("admin", "f", template("preference"), judged(3))
    report = await run(fake, flow(plugin="preference"), DiscardingBot("*"), bots=2)
    assert report.pending == 3 and report.left_to_people == 3
    assert report.total("discarded") == 6
    assert report.stopped == "nothing to answer for 0 s"


async def test_skipped_records_stay_pending_and_the_run_ends() -> None:
    fake = FakeArgilla()
    dataset = fake.add_dataset("admin", "f", template("preference"), judged(3))
    report = await run(fake, flow(plugin="preference"), Skipper(), bots=1)
    assert report.total("skipped") == 3 and report.answered == 0
    assert fake.responses(dataset) == {f"rec-{i}": {} for i in range(3)}


async def test_the_limit_caps_the_answers() -> None:
    fake = FakeArgilla()
    fake.add_dataset("admin", "f", template("preference"), judged(10), min_submitted=2)
    report = await run(
        fake, flow(plugin="preference", min_submitted=2), AgreePolicy(), options=RunOptions(limit=3)
    )
    assert report.answered == 3
    assert report.stopped == "reached the limit of 3 answers"
    assert report.pending == 10


async def test_the_rate_paces_the_answers() -> None:
    fake = FakeArgilla()
    fake.add_dataset("admin", "f", template("preference"), judged(6))
    started = time.monotonic()
    options = RunOptions(rate_per_s=4, idle_timeout_s=0)
    report = await run(fake, flow(plugin="preference"), AgreePolicy(), bots=1, options=options)
    assert report.answered == 6
    assert fake.bulk_calls == 2  # 4 answers, then 2 a second later
    assert time.monotonic() - started >= 0.95


async def test_a_policy_answer_argilla_would_refuse_fails_with_the_reason() -> None:
    fake = FakeArgilla()
    dataset = fake.add_dataset("admin", "f", template("preference"), judged(2))
    report = await run(fake, flow(plugin="preference"), Broken(), bots=1)
    assert report.total("failed") == 2
    assert "9 is not a rating of [1, 2, 3, 4, 5]" in report.errors[0]
    assert fake.responses(dataset) == {"rec-0": {}, "rec-1": {}}


async def test_split_mode_bots_are_the_flows_annotators_in_their_own_workspaces() -> None:
    fake = FakeArgilla()
    curation = template("curation")
    texts = ("The answer.",)
    alice = fake.add_dataset(
        "admin-alice", "f", curation, [record("a1", texts), record("a2", texts)]
    )
    bob = fake.add_dataset("admin-bob", "f", curation, [record("b1", texts)])
    chosen = flow(plugin="curation", mode="split", annotators=["alice", "bob"])
    report = await run(fake, chosen, AgreePolicy())
    assert report.tallies["alice"].submitted == 2 and report.tallies["bob"].submitted == 1
    assert set(fake.responses(alice)["a1"]) == {"alice"}
    assert set(fake.responses(bob)["b1"]) == {"bob"}
    assert sorted(report.datasets) == ["admin-alice/f", "admin-bob/f"]


async def test_the_version_with_the_templates_questions_is_answered() -> None:
    fake = FakeArgilla()
    fake.add_dataset("admin", "f", template("thumbs"), [record("old", ("x",))])
    current = fake.add_dataset("admin", "f-v2", template("preference"), judged(2))
    report = await run(fake, flow(plugin="preference"), AgreePolicy(), bots=1)
    assert report.datasets == ["admin/f-v2"]
    assert set(fake.responses(current)) == {"rec-0", "rec-1"}
    assert report.pending == 0


async def test_a_dataset_not_published_yet_ends_an_impatient_run_with_nothing_done() -> None:
    report = await run(FakeArgilla(), flow(plugin="preference"), AgreePolicy())
    assert report.datasets == [] and report.answered == 0
    assert report.stopped == "nothing to answer for 0 s"


def test_dispatch_balances_skips_answered_and_passed_records_and_counts_the_stuck() -> None:
    def listed(rid: str, *responses: tuple[str, str], status: str = "pending") -> ListedRecord:
        given = tuple(ListedResponse(user, state) for user, state in responses)
        return ListedRecord(rid, rid, status, {}, {}, given, {})

    records = [
        listed("a"),
        listed("b", ("u1", "submitted")),
        listed("c", ("u1", "discarded"), ("u2", "discarded")),
        listed("d", ("u1", "submitted"), ("u2", "submitted"), status="completed"),
        listed("e", ("u2", "draft")),
        listed("f"),
    ]
    work, stuck = dispatch(records, ["u1", "u2"], 2, {"u1": {"f"}})
    assert {bot: [r.id for r in got] for bot, got in work.items()} == {
        "u1": ["a", "e"],
        "u2": ["a", "b", "e", "f"],
    }
    assert stuck == 1  # c: both discarded it and it still needs two submissions
    single, _ = dispatch([listed(str(i)) for i in range(10)], ["u1", "u2", "u3"], 1, {})
    assert sorted(len(got) for got in single.values()) == [3, 3, 4]


def test_answers_and_suggestions_convert_to_and_from_argillas_form() -> None:
    specs = template("preference").questions()
    wire = argilla_values({"ranking": ["response_2", "response_1"], "rating_response_1": 3}, specs)
    assert wire == {
        "ranking": {
            "value": [{"value": "response_2", "rank": 1}, {"value": "response_1", "rank": 2}]
        },
        "rating_response_1": {"value": 3},
    }
    ranking = next(spec for spec in specs if spec.name == "ranking")
    stored = [{"value": "response_2", "rank": None}, {"value": "response_1", "rank": None}]
    assert plain_suggestion(ranking, stored) == ["response_2", "response_1"]
    ranked = [{"value": "response_1", "rank": 2}, {"value": "response_2", "rank": 1}]
    assert plain_suggestion(ranking, ranked) == ["response_2", "response_1"]


def test_a_record_without_loopline_metadata_is_still_a_task() -> None:
    preference = template("preference")
    listed = ListedRecord("id", "ext", "pending", {"prompt": "p"}, {"flow": "f"}, (), {})
    task = make_task(listed, "bot", preference, frozenset({"ranking"}))
    assert task.record is None and task.positions == 2
    answer = AgreePolicy().answer(task)
    assert answer.values["ranking"] == ["response_1", "response_2"]


def test_seats_per_mode() -> None:
    overlap = flow(plugin="preference", min_submitted=3, workspace="team", dataset="prefs")
    assert [s.username for s in seats("f", overlap, "admin", None)] == [
        "bot-f-1",
        "bot-f-2",
        "bot-f-3",
    ]
    assert {(s.workspace, s.dataset) for s in seats("f", overlap, "admin", 1)} == {
        ("team", "prefs")
    }
    split = flow(plugin="curation", mode="split", annotators=["al", "bo", "cy"])
    expected = [("al", "admin-al"), ("bo", "admin-bo"), ("cy", "admin-cy")]
    for bots in (None, 1, 5):  # every record waits for its annotator: all of them answer
        assert [(s.username, s.workspace) for s in seats("f", split, "admin", bots)] == expected
    with pytest.raises(AccountError, match="at least 1"):
        seats("f", overlap, "admin", 0)
    with pytest.raises(AccountError, match="has no `publish` stage"):
        seats("f", Flow(), "admin", 2)
    assert person_seat("f", split, "admin", "bo").workspace == "admin-bo"
    assert person_seat("f", overlap, "admin", "zed").workspace == "team"
    with pytest.raises(AccountError, match="'zed' is not one of them"):
        person_seat("f", split, "admin", "zed")


async def test_accounts_are_created_once_joined_to_the_workspace_and_other_roles_refused() -> None:
    fake = FakeArgilla()
    async with ArgillaREST(ARGILLA.api_url, OWNER_KEY, transport=fake.transport) as owner:
        first = await ensure_account(owner, "ann", "team", "password-1")
        again = await ensure_account(owner, "ann", "team")
        assert first.created and not again.created and again.password is None
        assert first.api_key == again.api_key == "k-ann"
        assert fake.members[fake.workspace("team")] == {"u-ann"}
        await ensure_account(owner, "ann", "team", "password-2")
        assert fake.users["u-ann"]["password"] == "password-2"
        fake.add_user("boss", role="admin")
        with pytest.raises(AccountError, match="exists with the role 'admin'"):
            await ensure_account(owner, "boss", "team")
        with pytest.raises(AccountError, match="at least 8 characters"):
            await ensure_account(owner, "new", "team", "short")


async def test_a_waiting_run_stops_when_its_task_is_cancelled() -> None:
    patient = RunOptions(idle_timeout_s=600, poll_interval_s=0.05)
    task = asyncio.create_task(
        run(FakeArgilla(), flow(plugin="preference"), AgreePolicy(), options=patient)
    )
    await asyncio.sleep(0.3)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
