"""The `run-tests` policy: an annotator who runs each code response against the record's tests
and gives the correctness point only to responses that pass (a demo and test tool)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any

from devstack.annotators.agree import AgreePolicy
from devstack.annotators.answers import verdict_for
from devstack.annotators.base import Action, Answer, Task
from devstack.annotators.sandbox import Limits, TestRun, extract_code, run_with_tests
from shared.templates import QuestionRole, QuestionSpec

MAX_CACHED_RUNS = 4096


def record_tests(task: Task, key: str) -> str | None:
    """The tests in the Loopline record's metadata under `key`: Python source, or a list of
    statements (asserts) run one after the other. None when the record carries none."""
    if task.record is None:
        return None
    tests = task.record.metadata.get(key)
    if isinstance(tests, list):
        tests = "\n".join(str(line) for line in tests)
    return tests if isinstance(tests, str) and tests.strip() else None


class RunTestsPolicy(AgreePolicy):
    """For code records whose metadata carries tests (``metadata.tests``: Python source with
    asserts, or a list of assert lines): runs each shown response's code (its fenced Python
    blocks, else its text) followed by the tests in a separate process with a timeout and
    resource limits (`devstack.annotators.sandbox`), then answers like ``agree`` except that

    * criteria: passing responses get the ``criterion`` label (default ``correct``) on top of
      the agreed ones; failing responses get none ("none"): their edge cases, style and
      explanation do not make the code work, so a passing response always scores higher;
    * ratings: passing responses get the top of the scale, failing ones at most the second
      lowest value;
    * rankings: passing responses first (in the agreeing order), then the failing ones;
    * verdicts: good for passing responses, bad for failing ones.

    Records without tests are answered exactly like ``agree``. Options: ``agree``'s, plus
    ``timeout_s`` (wall clock per run), ``cpu_s``, ``memory_mb`` (address space), ``criterion``
    and ``tests_key`` (the metadata key holding the tests).
    """

    name = "run-tests"

    def __init__(
        self,
        disagree_rate: float = 0.0,
        discard_rate: float = 0.0,
        edit_rate: float = 0.2,
        correct_rate: float = 0.0,
        seed: int = 0,
        timeout_s: float = 10.0,
        cpu_s: int = 10,
        memory_mb: int = 512,
        criterion: str = "correct",
        tests_key: str = "tests",
    ) -> None:
        super().__init__(disagree_rate, discard_rate, edit_rate, correct_rate, seed)
        self.limits = Limits(timeout_s=timeout_s, cpu_s=cpu_s, memory_mb=memory_mb)
        if not isinstance(criterion, str) or not criterion:
            raise ValueError(f"annotator policy {self.name!r}: criterion must be a label")
        if not isinstance(tests_key, str) or not tests_key:
            raise ValueError(f"annotator policy {self.name!r}: tests_key must be a metadata key")
        self.criterion = criterion
        self.tests_key = tests_key
        self._runs: dict[str, TestRun] = {}
        self._lock = threading.Lock()

    def answer(self, task: Task) -> Answer:
        agreed = super().answer(task)
        tests = record_tests(task, self.tests_key)
        if agreed.action != Action.submit or tests is None:
            return agreed
        passed = [
            self.run(task.response_text(p) or "", tests).passed for p in range(task.positions)
        ]
        values = dict(agreed.values)
        for spec in task.questions:
            if spec.name in values:
                values[spec.name] = self._graded(spec, values[spec.name], passed)
        return Answer.submitted(values)

    def run(self, response: str, tests: str) -> TestRun:
        """The response's code run with `tests` (cached: every bot meets the same code)."""
        key = hashlib.sha256(f"{response}\0{tests}".encode()).hexdigest()
        with self._lock:
            known = self._runs.get(key)
        if known is not None:
            return known
        outcome = run_with_tests(extract_code(response), tests, self.limits)
        with self._lock:
            if len(self._runs) >= MAX_CACHED_RUNS:
                self._runs.clear()
            self._runs[key] = outcome
        return outcome

    def _graded(self, spec: QuestionSpec, value: Any, passed: Sequence[bool]) -> Any:
        if spec.role == QuestionRole.ranking:
            index = {label: i for i, label in enumerate(spec.labels)}
            first = [
                label for label in value if index[label] < len(passed) and passed[index[label]]
            ]
            return first + [label for label in value if label not in first]
        if spec.response is None or spec.response >= len(passed):
            return value
        ok = passed[spec.response]
        if spec.role == QuestionRole.rating:
            cap = spec.scale[min(1, len(spec.scale) - 1)]
            return spec.scale[-1] if ok else min(value, cap)
        if spec.role == QuestionRole.verdict:
            return verdict_for(spec, ok)
        if spec.role == QuestionRole.criteria and self.criterion in spec.labels:
            agreed = {label for label in value if label != spec.none_label}
            met = agreed | {self.criterion} if ok else set()
            labels = [label for label in spec.labels if label in met]
            if labels:
                return labels
            return [spec.none_label] if spec.none_label is not None else value
        return value
