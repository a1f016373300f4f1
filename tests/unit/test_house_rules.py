"""The layout's rules, read from the source: who may import whom, and how long a file may be.

* a service imports no other service, and neither the CLI nor the local stack;
* `shared/` (the kernel) imports no service, no CLI and no local stack;
* `devstack/` (a development tool) imports only the kernel, never a service or the CLI;
* the app client (`clients/python`) imports only the standard library and httpx;
* benchmarks import no tests; no Python file, tests included, is over 500 lines;
* no topic name reaches Kafka raw: what a Kafka client or the broker is given (publish, subscribe,
  consume, create) is never a topic constant, a topic's literal name, `dead_letter_topic(...)` or
  `next_topic(...)` as it is: it goes through `KafkaSettings.topic`, the one home of the flow
  set's topic prefix (functions that take the `KafkaSettings` themselves, like `ensure_topics`
  and `read_to_end`, take logical names and map them inside).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 500
SOURCE_DIRS = ("shared", "services", "cli", "devstack", "clients", "benchmarks")
LENGTH_CHECKED_DIRS = (*SOURCE_DIRS, "tests")


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, wherever in the file (functions included)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def violations(paths: list[Path], allowed: object) -> list[str]:
    bad = []
    for path in paths:
        for module in sorted(imported_modules(path)):
            if not allowed(path, module):  # type: ignore[operator]
                bad.append(f"{path.relative_to(REPO)} imports {module}")
    return bad


def test_a_service_imports_no_other_service_nor_the_cli_or_local_stack() -> None:
    def allowed(path: Path, module: str) -> bool:
        own = path.relative_to(REPO / "services").parts[0]
        if top(module) in ("cli", "devstack", "tests", "benchmarks"):
            return False
        parts = module.split(".")
        return not (parts[0] == "services" and len(parts) > 1 and parts[1] != own)

    assert violations(python_files("services"), allowed) == []


def test_the_kernel_imports_no_service_cli_or_local_stack() -> None:
    def allowed(path: Path, module: str) -> bool:
        return top(module) not in ("services", "cli", "devstack", "tests", "benchmarks")

    assert violations(python_files("shared"), allowed) == []


def test_the_local_stack_imports_only_the_kernel() -> None:
    def allowed(path: Path, module: str) -> bool:
        return top(module) not in ("services", "cli", "tests", "benchmarks")

    assert violations(python_files("devstack"), allowed) == []


def test_the_app_client_needs_only_the_standard_library_and_httpx() -> None:
    def allowed(path: Path, module: str) -> bool:
        name = top(module)
        return name in sys.stdlib_module_names or name in ("httpx", "loopline", "__future__")

    assert violations(python_files("clients"), allowed) == []


def test_benchmarks_import_no_tests() -> None:
    def allowed(path: Path, module: str) -> bool:
        return top(module) != "tests"

    assert violations(python_files("benchmarks"), allowed) == []


@pytest.mark.parametrize("folder", LENGTH_CHECKED_DIRS)
def test_no_python_file_is_over_500_lines(folder: str) -> None:
    long = {
        str(p.relative_to(REPO)): n
        for p in python_files(folder)
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_rules_see_the_code() -> None:
    """A check that reads nothing passes vacuously: each folder has files, and imports are read."""
    for folder in ("shared", "services", "cli", "devstack", "clients", "tests"):
        assert python_files(folder), folder
    assert "shared.events" in imported_modules(REPO / "services" / "judge" / "app.py")


# Calls that hand topic names to Kafka as they are: the broker's, aiokafka's, and the helper that
# lists partitions of topics named on the cluster.
KAFKA_CALLS = frozenset(
    {
        "publish",
        "publish_batch",
        "subscriber",
        "publisher",
        "send",
        "send_and_wait",
        "subscribe",
        "AIOKafkaConsumer",
        "NewTopic",
        "TopicPartition",
        "partitions_of",
    }
)
TOPIC_KEYWORDS = frozenset({"topic", "topics", "name"})
LOGICAL_NAME_MAKERS = frozenset({"dead_letter_topic", "next_topic"})
TOPIC_HOMES = ("shared/events.py", "shared/settings.py")


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def topic_constants() -> dict[str, str | None]:
    """Module-level constants naming topics, with their values (None: a tuple of topics):
    the topic names of `shared/events.py`, any `*_TOPIC`, and tuples made only of those."""
    found: dict[str, str | None] = {}
    tuples: dict[str, list[str]] = {}
    for path in python_files(*SOURCE_DIRS):
        events = path == REPO / TOPIC_HOMES[0]
        for node in ast.parse(path.read_text(), str(path)).body:
            if not (isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in (t for t in targets if isinstance(t, ast.Name) and t.id.isupper()):
                value = node.value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    topic = "." in value.value and not value.value.startswith(".")
                    if (events and topic) or target.id.endswith("_TOPIC"):
                        found[target.id] = value.value
                elif isinstance(value, ast.Tuple) and value.elts:
                    tuples[target.id] = [getattr(e, "id", "") for e in value.elts]
    found.update({n: None for n, names in tuples.items() if all(e in found for e in names)})
    return found


def raw_topic(node: ast.AST, constants: dict[str, str | None]) -> bool:
    """Whether `node` is a topic name that did not go through `KafkaSettings.topic`."""
    if isinstance(node, ast.Call):
        if _callee(node) == "topic":
            return False  # through the one home
        return _callee(node) in LOGICAL_NAME_MAKERS
    if isinstance(node, ast.Name | ast.Attribute):
        return (node.id if isinstance(node, ast.Name) else node.attr) in constants
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value in constants.values() or node.value.endswith(".dlq")
    if isinstance(node, ast.JoinedStr):
        return any(
            isinstance(v, ast.FormattedValue) and raw_topic(v.value, constants) for v in node.values
        )
    if isinstance(node, ast.Starred):
        return raw_topic(node.value, constants)
    if isinstance(node, ast.BinOp):
        return raw_topic(node.left, constants) or raw_topic(node.right, constants)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return any(raw_topic(e, constants) for e in node.elts)
    if isinstance(node, ast.GeneratorExp | ast.ListComp | ast.SetComp):
        return raw_topic(node.elt, constants)
    return False


def raw_topics_to_kafka(source: str, where: str, constants: dict[str, str | None]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, where)):
        if not (isinstance(node, ast.Call) and _callee(node) in KAFKA_CALLS):
            continue
        given = [*node.args, *(k.value for k in node.keywords if k.arg in TOPIC_KEYWORDS)]
        if any(raw_topic(arg, constants) for arg in given):
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)[:100]}")
    return found


def test_no_topic_name_reaches_kafka_without_the_sets_prefix() -> None:
    constants = topic_constants()
    bad = [
        line
        for path in python_files(*SOURCE_DIRS)
        if str(path.relative_to(REPO)) not in TOPIC_HOMES
        for line in raw_topics_to_kafka(path.read_text(), str(path.relative_to(REPO)), constants)
    ]
    assert bad == []


def test_the_topic_rule_sees_the_topics_and_a_raw_one() -> None:
    """The rule knows the topic constants, and would catch each way of passing one raw."""
    constants = topic_constants()
    assert constants["RECORDS_JUDGED"] == "records.judged"
    assert constants["STATE_TOPIC"] == "feedback.collector.state"
    assert constants["REPLAYS_TOPIC"] == "dlq.replays"
    assert constants["CONSUMES"] is None  # the exporter's (records.completed, records.judged)
    assert "DLQ_SUFFIX" not in constants
    raw = [
        "broker.publish(body, topic=RECORDS_JUDGED)",
        "broker.subscriber(*CONSUMES, group_id=g)",
        "producer.send_and_wait(dead_letter_topic(topic), body)",
        "broker.publish(body, topic=next_topic(flow, 'ingest'))",
        "AIOKafkaConsumer('records.ingested', group_id=None)",
        "partitions_of(consumer, [*topics, f'{RECORDS_JUDGED}.dlq'])",
        "NewTopic(name=STATE_TOPIC, num_partitions=1, replication_factor=1)",
    ]
    for line in raw:
        assert raw_topics_to_kafka(line, "x.py", constants), line
    through = [
        "broker.publish(body, topic=kafka.topic(RECORDS_JUDGED))",
        "broker.subscriber(*(kafka.topic(t) for t in CONSUMES), group_id=g)",
        "producer.send_and_wait(kafka.topic(dead_letter_topic(topic)), body)",
        "partitions_of(consumer, [self.kafka.topic(t) for t in topics])",
        "ensure_topics(kafka, [RECORDS_JUDGED])",  # takes logical names, maps them itself
    ]
    for line in through:
        assert raw_topics_to_kafka(line, "x.py", constants) == [], line
