"""The `run-tests` policy and its sandbox: the point goes only to a response that passes, and
a response that never ends is stopped at the timeout."""

from __future__ import annotations

import time
from pathlib import Path

from devstack.annotators.agree import AgreePolicy
from devstack.annotators.base import Action, check_answer
from devstack.annotators.run_tests import RunTestsPolicy
from devstack.annotators.sandbox import Limits, extract_code, run_with_tests
from devstack.annotators.tasks import offline_task
from shared.events import Judgment, Record
from tests.unit.devstack.annotators.records import (
    ADD_TESTS,
    BAD_CODE,
    GOOD_CODE,
    LOOPING_CODE,
    checklist,
    rated,
    record,
    template,
)

FAST = Limits(timeout_s=1.0, cpu_s=2, memory_mb=256)


def test_code_is_taken_from_fenced_python_blocks_else_the_whole_text() -> None:
    text = "Here:\n```python\nx = 1\n```\nand\n```py\ny = 2\n```\n```bash\nrm -rf /\n```"
    assert extract_code(text) == "x = 1\n\n\ny = 2\n"
    assert extract_code("def f():\n    return 1") == "def f():\n    return 1"


def test_a_passing_and_a_failing_run() -> None:
    assert run_with_tests(extract_code(GOOD_CODE), ADD_TESTS, FAST).passed
    failed = run_with_tests(extract_code(BAD_CODE), ADD_TESTS, FAST)
    assert not failed.passed
    assert "AssertionError" in failed.detail


def test_an_endless_loop_is_stopped_at_the_timeout() -> None:
    started = time.monotonic()
    outcome = run_with_tests(extract_code(LOOPING_CODE), ADD_TESTS, FAST)
    assert not outcome.passed
    assert outcome.detail == "timed out after 1 s"
    assert time.monotonic() - started < FAST.timeout_s + 2


def running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_a_sleeping_process_and_its_children_are_stopped_at_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import pathlib, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    outcome = run_with_tests(code, "", Limits(timeout_s=3.0))
    assert not outcome.passed and "timed out" in outcome.detail
    assert time.monotonic() - started < 6
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(child)


def test_memory_beyond_the_limit_fails_the_run() -> None:
    hog = "blocks = [bytearray(64 * 1024 * 1024) for _ in range(16)]"
    outcome = run_with_tests(hog, "", Limits(timeout_s=10, memory_mb=256))
    assert not outcome.passed
    assert "MemoryError" in outcome.detail


def test_cpu_seconds_are_limited_below_the_wall_clock() -> None:
    started = time.monotonic()
    outcome = run_with_tests("while True:\n    pass", "", Limits(timeout_s=30, cpu_s=1))
    assert not outcome.passed and "exit status" in outcome.detail
    assert time.monotonic() - started < 10


def code_record(first: str, second: str, *judgments: Judgment, tests: object = ADD_TESTS) -> Record:
    return record(responses=(first, second), judgments=judgments, tests=tests)


def test_only_the_passing_response_gets_the_correctness_point() -> None:
    # The judge thinks both are correct; the tests say only the second is.
    judged = code_record(BAD_CODE, GOOD_CODE, checklist(["correct", "explained"], ["correct"]))
    task = offline_task(template("code-scoring"), judged)
    given = RunTestsPolicy().answer(task)
    check_answer(given, task.questions, task.required)
    assert given.values["criteria_response_2"] == ["correct"]


def test_a_failing_response_earns_no_point_so_the_passing_one_scores_higher() -> None:
    # The judge gives the failing response more points than the passing one; code that fails
    # its tests earns none (its edge cases, style and explanation do not make it work), so the
    # passing response is the one `dpo` and `sft` choose.
    many = ["correct", "edge_cases", "idiomatic", "explained"]
    judged = code_record(BAD_CODE, GOOD_CODE, checklist(many, ["idiomatic"]))
    task = offline_task(template("code-scoring"), judged)
    given = RunTestsPolicy().answer(task).values
    assert given["criteria_response_1"] == ["none"]
    assert given["criteria_response_2"] == ["correct", "idiomatic"]


def test_a_failing_response_with_no_other_point_meets_none() -> None:
    judged = code_record(BAD_CODE, GOOD_CODE, checklist(["correct"], []))
    task = offline_task(template("code-scoring"), judged)
    given = RunTestsPolicy().answer(task).values
    assert given["criteria_response_1"] == ["none"]
    assert given["criteria_response_2"] == ["correct"]


def test_ratings_and_ranking_put_the_passing_response_first() -> None:
    judged = code_record(BAD_CODE, GOOD_CODE, rated(5, 3))
    task = offline_task(template("preference"), judged)
    agreed = AgreePolicy().answer(task).values
    assert agreed["ranking"] == ["response_1", "response_2"]
    given = RunTestsPolicy().answer(task).values
    assert given["ranking"] == ["response_2", "response_1"]
    assert given["rating_response_1"] == 2
    assert given["rating_response_2"] == 5


def test_verdicts_follow_the_tests() -> None:
    thumbs = template("thumbs")
    good = offline_task(thumbs, record(responses=(GOOD_CODE,), tests=ADD_TESTS))
    bad = offline_task(thumbs, record(responses=(BAD_CODE,), tests=[ADD_TESTS]))
    assert RunTestsPolicy(disagree_rate=1.0).answer(good).values["verdict"] == "good"
    assert RunTestsPolicy().answer(bad).values["verdict"] == "bad"


def test_an_endless_response_loses_the_point_within_the_timeout() -> None:
    judged = code_record(LOOPING_CODE, GOOD_CODE, checklist(["correct"], ["correct"]))
    task = offline_task(template("code-scoring"), judged)
    started = time.monotonic()
    given = RunTestsPolicy(timeout_s=1.5, cpu_s=1).answer(task).values
    assert time.monotonic() - started < 6
    assert given["criteria_response_1"] == ["none"]
    assert given["criteria_response_2"] == ["correct"]


def test_without_tests_it_answers_like_agree() -> None:
    judged = code_record(BAD_CODE, GOOD_CODE, rated(5, 3), tests=None)
    task = offline_task(template("preference"), judged)
    assert RunTestsPolicy(seed=5).answer(task) == AgreePolicy(seed=5).answer(task)


def test_a_discard_stays_a_discard_and_runs_nothing() -> None:
    judged = code_record(LOOPING_CODE, LOOPING_CODE)
    task = offline_task(template("code-scoring"), judged)
    started = time.monotonic()
    assert RunTestsPolicy(discard_rate=1.0).answer(task).action == Action.discard
    assert time.monotonic() - started < 1


def test_each_code_runs_once_for_every_bot() -> None:
    policy = RunTestsPolicy()
    judged = code_record(BAD_CODE, GOOD_CODE)
    shown = template("code-scoring")
    policy.answer(offline_task(shown, judged, "bot-1"))
    started = time.monotonic()
    policy.answer(offline_task(shown, judged, "bot-2"))
    assert time.monotonic() - started < 0.05
