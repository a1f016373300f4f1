"""LLM benchmark: Loopline's generator + judge vs distilabel 1.5.3 vs a bare client, one run.

Starts the local stack's Kafka broker (in memory) and llama.cpp server, then, one after the
other on the same endpoint, the same instructions and the same generation parameters:
  1. bare client: asyncio + httpx posting every generation request (instructions x 2) with
     as many in flight as the server has slots, then twice that (the tokens/s anchor);
  2. Loopline generator only: the generator service (in-process) on the broker, a flow with
     2 generations and no judge, instructions produced to `records.ingested`, all read back;
  3. Loopline generator + judge: the same plus the judge service with the multi-aspect rubric;
  4. distilabel 1.5.3 (its own virtualenv, a subprocess): TextGeneration (2 generations,
     grouped) -> UltraFeedback (overall-rating) through OpenAILLM at the same endpoint.
Completion tokens are counted the same way for everyone: the server's Prometheus counter
`llamacpp:tokens_predicted_total` before and after each contender. Every process it starts is
stopped by pid.

    python benchmarks/llm/run.py [--model 0.5b|1.5b] [--instructions 50] [--max-tokens 128]

The distilabel virtualenv is created under `.loopline/bench/distilabel` on first use (from
PyPI: distilabel==1.5.3, openai, requests); nothing is fetched from a model hub
(HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import devstack as stack
from devstack.config import StackConfig
from devstack.testing import config_for_tests
from shared.broker import admin_client_options
from shared.events import RECORDS_JUDGED, Record, dead_letter_topic
from shared.flows import FlowsConfig, parse_flows
from shared.service import ServiceSpec, run_service
from shared.settings import KafkaSettings, LLMSettings, Settings

REPO = Path(__file__).resolve().parents[2]
DISTILABEL_VENV = REPO / ".loopline" / "bench" / "distilabel"
DISTILABEL_REQUIREMENTS = ("distilabel==1.5.3", "openai", "requests")
DISTILABEL_SIDE = Path(__file__).resolve().parent / "distilabel_side.py"
GENERATIONS = 2
TEMPERATURE = 0.7
JUDGE_TEMPERATURE = 0.0  # Loopline's judge default; distilabel's judge gets the same
# Tokens a judge prompt takes besides the two responses (rubric text, instruction, tags).
JUDGE_PROMPT_OVERHEAD = 700

INSTRUCTIONS: tuple[str, ...] = (
    "Write a Python function that checks whether a string is a palindrome.",
    "Explain the difference between a list and a tuple in Python.",
    "How do I reverse a singly linked list in place?",
    "What does the `yield` keyword do in Python?",
    "Write a SQL query that returns the five most recent orders per customer.",
    "Explain what an HTTP 304 Not Modified response means.",
    "How can I read a large CSV file in Python without loading it all into memory?",
    "What is the difference between a process and a thread?",
    "Write a bash one-liner that counts the lines of every .py file in a directory tree.",
    "Explain Big-O notation with two short examples.",
    "How do I merge two dictionaries in Python 3.9 and later?",
    "What is a race condition, and how can a mutex prevent one?",
    "Write a JavaScript function that debounces another function.",
    "Explain the CAP theorem in a few sentences.",
    "How do I undo the last git commit but keep the changes?",
    "What is the difference between `==` and `is` in Python?",
    "Write a Python generator that yields the Fibonacci numbers.",
    "Explain what a database index is and when it helps.",
    "How do I handle a timeout with the Python requests library?",
    "What is dependency injection? Give a small example.",
    "Write a regular expression that matches an ISO 8601 date (YYYY-MM-DD).",
    "Explain the difference between TCP and UDP.",
    "How do I sort a list of dictionaries by a key in Python?",
    "What is memoization? Show it with a Python decorator.",
    "Write a Go function that returns the maximum of a slice of ints.",
    "Explain what a Docker volume is used for.",
    "How can I find the duplicate values in a Python list?",
    "What does `async`/`await` do in JavaScript?",
    "Write a Python class for a stack with push, pop and peek.",
    "Explain the difference between authentication and authorization.",
    "How do I convert a string to a datetime in Python?",
    "What is a closure in programming? Give an example.",
    "Write a function that flattens a nested list in Python.",
    "Explain how binary search works and its time complexity.",
    "How do I make an HTTP GET request with curl and show the response headers?",
    "What is the difference between a shallow copy and a deep copy?",
    "Write a Rust function that sums the even numbers of a vector.",
    "Explain what a REST API is in plain words.",
    "How do I remove the whitespace at both ends of a string in Python?",
    "What is the purpose of a virtual environment in Python?",
    "Write a Python script that prints the ten most common words of a text file.",
    "Explain the difference between horizontal and vertical scaling.",
    "How do I check whether a key exists in a JavaScript object?",
    "What is a deadlock, and how can it be avoided?",
    "Write a SQL statement that creates a table of users with a unique email.",
    "Explain what unit tests are and why they are useful.",
    "How do I compute the SHA-256 hash of a file in Python?",
    "What is the difference between `let`, `const` and `var` in JavaScript?",
    "Write a Python function that validates an email address roughly.",
    "Explain what a message queue is and when to use one.",
)


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Counters:
    """The LLM server's token counters and the machine's CPU time, at one moment."""

    predicted: float
    prompt: float
    busy_s: float  # CPU seconds the whole machine spent busy
    ours_s: float  # of which: this process (and its waited children), the LLM server, Kafka


@dataclass
class Result:
    name: str
    wall_s: float
    tokens: int  # completion tokens the server generated (its /metrics counter)
    prompt_tokens: int  # prompt tokens the server processed (cache hits excluded)
    done: str  # what came out
    other_cpu: float  # share of the machine's CPU used by processes not in the benchmark
    generation_tokens: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0


class Meter:
    """Reads the llama.cpp counters and the CPU time of the machine and of our processes."""

    def __init__(self, config: StackConfig) -> None:
        self.metrics_url = f"http://{config.host}:{config.ports.llm}/metrics"
        self.pids = [pid for name in ("llm", "kafka") if (pid := _pid_of(config, name))]
        self.ticks = os.sysconf("SC_CLK_TCK")

    def _metrics(self) -> dict[str, float]:
        text = httpx.get(self.metrics_url, timeout=10).text
        values: dict[str, float] = {}
        for line in text.splitlines():
            match = re.match(r"llamacpp:(\w+)\s+([0-9.eE+-]+)$", line)
            if match:
                values[match.group(1)] = float(match.group(2))
        return values

    def _machine_busy_s(self) -> float:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return (sum(fields[:8]) - idle) / self.ticks

    def _ours_s(self) -> float:
        times = os.times()
        total = times.user + times.system + times.children_user + times.children_system
        for pid in self.pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            parts = stat.rsplit(")", 1)[1].split()
            total += (int(parts[11]) + int(parts[12])) / self.ticks  # utime + stime
        return total

    def read(self) -> Counters:
        metrics = self._metrics()
        return Counters(
            predicted=metrics.get("tokens_predicted_total", 0.0),
            prompt=metrics.get("prompt_tokens_total", 0.0),
            busy_s=self._machine_busy_s(),
            ours_s=self._ours_s(),
        )

    def result(
        self,
        name: str,
        before: Counters,
        wall_s: float,
        done: str,
        after: Counters | None = None,
        **extra: Any,
    ) -> Result:
        after = after or self.read()
        foreign_s = max(0.0, (after.busy_s - before.busy_s) - (after.ours_s - before.ours_s))
        return Result(
            name=name,
            wall_s=wall_s,
            tokens=round(after.predicted - before.predicted),
            prompt_tokens=round(after.prompt - before.prompt),
            done=done,
            other_cpu=foreign_s / (wall_s * (os.cpu_count() or 1)) if wall_s > 0 else 0.0,
            **extra,
        )


@dataclass
class LooplineRun:
    wall_s: float
    records: list[Record]  # the first copy of each record that came out
    dead: int  # records dead-lettered
    copies: int  # records that came out again (redelivered and redone) within the run
    before: Counters
    after: Counters


def _pid_of(config: StackConfig, component: str) -> int | None:
    try:
        return int((config.run_dir / f"{component}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# --- contenders -----------------------------------------------------------------------------------


async def bare_client(
    base_url: str, model: str, instructions: list[str], max_tokens: int, concurrency: int
) -> tuple[float, int, int]:
    """Every generation request with `concurrency` in flight: (wall s, completions, tokens)."""
    bodies = [
        {
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "temperature": TEMPERATURE,
            "max_tokens": max_tokens,
        }
        for text in instructions
        for _ in range(GENERATIONS)
    ]
    pending = iter(bodies)
    completions = tokens = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal completions, tokens
        for body in pending:
            response = await client.post(f"{base_url}/chat/completions", json=body)
            response.raise_for_status()
            completions += 1
            tokens += response.json()["usage"]["completion_tokens"]

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.perf_counter() - started, completions, tokens


class Collector:
    """Reads `records.judged` and the dead-letter topics; keeps this benchmark's records by tag."""

    def __init__(self, kafka: KafkaSettings, topics: list[str]) -> None:
        self.consumer = AIOKafkaConsumer(
            *topics, **admin_client_options(kafka), auto_offset_reset="earliest", group_id=None
        )
        self.judged: dict[str, dict[str, tuple[float, Record]]] = {}
        self.dead: dict[str, set[str]] = {}
        self.copies: dict[str, int] = {}  # records seen again (redelivered and redone)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for messages in batch.values():
                for message in messages:
                    try:
                        record = Record.model_validate_json(message.value or b"")
                    except ValueError:
                        continue
                    tag = str(record.metadata.get("bench", ""))
                    if not tag:
                        continue
                    if message.topic == RECORDS_JUDGED:
                        seen = self.judged.setdefault(tag, {})
                        if record.record_id in seen:
                            self.copies[tag] = self.copies.get(tag, 0) + 1
                        seen.setdefault(record.record_id, (now, record))
                    else:
                        self.dead.setdefault(tag, set()).add(record.record_id)

    async def wait(self, tag: str, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.judged.get(tag, {})) + len(self.dead.get(tag, set())) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{tag}: {len(self.judged.get(tag, {}))} of {count} records came through "
                    f"in {timeout_s:.0f} s"
                )
            await asyncio.sleep(0.05)


async def produce(kafka: KafkaSettings, records: list[Record]) -> None:
    producer = AIOKafkaProducer(**admin_client_options(kafka), acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send("records.ingested", r.to_bytes(), key=r.record_id.encode())
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def bench_flows(max_tokens: int, judge_max_tokens: int) -> FlowsConfig:
    """The benchmark's flows, each with a warm-up twin (`bench-warm-...`) of tiny budgets."""
    generate = {
        "plugin": "openai",
        "generations": GENERATIONS,
        "options": {"temperature": TEMPERATURE, "max_tokens": max_tokens},
    }
    warm = {**generate, "options": {"temperature": TEMPERATURE, "max_tokens": 8}}
    judges: dict[str, dict[str, Any]] = {
        "judge": {"plugin": "multi-aspect"},
        "judge-overall": {"plugin": "multi-aspect", "options": {"aspects": ["overall"]}},
    }
    flows: dict[str, Any] = {
        "bench-generate": {"generate": [generate]},
        "bench-warm-generate": {"generate": [warm]},
    }
    for name, judge in judges.items():
        flows[f"bench-{name}"] = {
            "generate": [generate],
            "judge": {**judge, "max_tokens": judge_max_tokens},
        }
        flows[f"bench-warm-{name}"] = {"generate": [warm], "judge": {**judge, "max_tokens": 64}}
    return parse_flows({"flows": flows}, "benchmarks/llm/run.py")


async def loopline(
    specs: list[ServiceSpec],
    settings: Settings,
    flows: FlowsConfig,
    flow: str,
    instructions: list[str],
    meter: Meter,
    timeout_s: float = 3600,
) -> LooplineRun:
    """Run `specs` in-process; time `instructions` from the first produce to the last out.

    A warm-up record first goes through the whole pipeline (so the consumer groups are
    assigned and every stage has answered once). The counters are read right before the
    first produce and right after the last record came out.
    """
    run = uuid.uuid4().hex[:8]
    stops: list[asyncio.Event] = []
    tasks: list[asyncio.Task[Any]] = []
    dead_letters = [dead_letter_topic(topic) for spec in specs for topic in spec.consumes]
    collector = Collector(settings.kafka, [RECORDS_JUDGED, *dead_letters])
    try:
        for spec in specs:
            stop, ready = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(
                run_service(spec, settings, stop=stop, flows=flows, ready=ready)
            )
            stops.append(stop)
            tasks.append(task)
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait([task, waiter], timeout=60, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if task.done():
                task.result()
            if not ready.is_set():
                raise RuntimeError(f"{spec.name} did not start within 60 s")
        await collector.start()
        warm_tag = f"warm-{run}"
        warm = Record(
            flow=f"bench-warm-{flow.removeprefix('bench-')}",
            instruction=f"Say hello. ({run})",
            metadata={"bench": warm_tag},
        )
        await produce(settings.kafka, [warm])
        await collector.wait(warm_tag, 1, 300)

        tag = f"run-{run}"
        records = [
            Record(flow=flow, instruction=text, metadata={"bench": tag}) for text in instructions
        ]
        before = meter.read()
        started = time.perf_counter()
        await produce(settings.kafka, records)
        await collector.wait(tag, len(records), timeout_s)
        after = meter.read()
        out = collector.judged.get(tag, {})
        last = max((at for at, _ in out.values()), default=time.perf_counter())
        return LooplineRun(
            wall_s=last - started,
            records=[record for _, record in out.values()],
            dead=len(collector.dead.get(tag, set())),
            copies=collector.copies.get(tag, 0),
            before=before,
            after=after,
        )
    finally:
        await collector.stop()
        for stop in stops:
            stop.set()
        for task in tasks:
            try:
                await asyncio.wait_for(task, 60)
            except Exception as exc:
                print(f"  (a service stopped with {type(exc).__name__}: {exc})", file=sys.stderr)


# --- distilabel -----------------------------------------------------------------------------------


def ensure_distilabel_venv() -> Path:
    """The benchmark's distilabel virtualenv (created and installed from PyPI if missing)."""
    python = DISTILABEL_VENV / "bin" / "python"
    probe_code = "import distilabel, openai, requests; print(distilabel.__version__)"
    check = [str(python), "-c", probe_code]
    if python.exists():
        probe = subprocess.run(check, capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == "1.5.3":
            return python
    print(f"installing {' '.join(DISTILABEL_REQUIREMENTS)} into {DISTILABEL_VENV} ...")
    subprocess.run([sys.executable, "-m", "venv", str(DISTILABEL_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *DISTILABEL_REQUIREMENTS], check=True
    )
    subprocess.run(check, check=True, capture_output=True)
    return python


def run_distilabel(
    python: Path, job: dict[str, Any], work: Path, timeout_s: float
) -> tuple[dict[str, Any], float]:
    """Run the distilabel side; (its JSON result, the subprocess's own wall time)."""
    job_file = work / "distilabel-job.json"
    job_file.write_text(json.dumps(job))
    log_file = work / "distilabel.log"
    home = work / "home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "DISTILABEL_CACHE_DIR": job["cache_dir"],
    }
    for name in ("VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(name, None)
    started = time.perf_counter()
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [str(python), str(DISTILABEL_SIDE), str(job_file)],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=work,
            start_new_session=True,
        )
        try:
            stdout, _ = process.communicate(timeout=timeout_s)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
    elapsed = time.perf_counter() - started
    log_file.write_bytes(log_file.read_bytes() + stdout)
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith("DISTILABEL_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("DISTILABEL_RESULT "))
            return result, elapsed
    tail = log_file.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"distilabel exited {process.returncode} without a result:\n{tail}")


# --- the run --------------------------------------------------------------------------------------


def count_tokens(config: StackConfig, texts: list[str]) -> int:
    """How many tokens the served model's tokenizer makes of `texts` (llama.cpp /tokenize)."""
    url = f"http://{config.host}:{config.ports.llm}/tokenize"
    with httpx.Client(timeout=60) as client:
        return sum(len(client.post(url, json={"content": t}).json()["tokens"]) for t in texts)


def warm_up(base_url: str, model: str) -> None:
    """A few requests, so that no contender pays for the first ones."""

    async def go() -> None:
        await bare_client(base_url, model, list(INSTRUCTIONS[:4]), 16, 4)

    asyncio.run(go())


def _without(value: Any, key: str) -> Any:
    """`value` (JSON-like) with every `key` left out of every mapping in it."""
    if isinstance(value, dict):
        return {k: _without(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [_without(v, key) for v in value]
    return value


def probe_judge(base_url: str, model: str, max_tokens: int) -> list[str]:
    """One multi-aspect judge call on a fixed record, with the output constrained as the judge
    sends it (JSON schema), with the schema's string length limits left out, and free."""
    from services.judge.rubrics import MultiAspectRubric
    from services.judge.structured import response_format_for
    from shared.events import CandidateResponse

    rubric = MultiAspectRubric()
    record = Record(
        flow="probe",
        instruction=INSTRUCTIONS[0],
        responses=[
            CandidateResponse(
                text="def is_palindrome(s):\n    s = ''.join(c.lower() for c in s if c.isalnum())"
                "\n    return s == s[::-1]\n\nIt normalises the string and compares it with "
                "its reverse.",
                model=model,
            ),
            CandidateResponse(
                text="Compare the string with its reverse: `s == s[::-1]`.", model=model
            ),
        ],
    )
    messages = [m.model_dump(mode="json") for m in rubric.messages(record, list(record.responses))]
    schema = response_format_for(rubric.output_model(2))
    unbounded = _without(schema, "maxLength")
    modes: list[tuple[str, dict[str, Any] | None]] = [
        ("json_schema (as the judge sends it)", schema),
        ("json_schema without maxLength", unbounded),
        ("no response_format", None),
    ]
    lines = []
    for label, response_format in modes:
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": JUDGE_TEMPERATURE,
        }
        if response_format is not None:
            body["response_format"] = response_format
        started = time.perf_counter()
        answer = httpx.post(f"{base_url}/chat/completions", json=body, timeout=900).json()
        elapsed = time.perf_counter() - started
        timings = answer.get("timings", {})
        lines.append(
            f"{label:<38}{answer['usage']['completion_tokens']:5} tokens {elapsed:6.1f} s  "
            f"{timings.get('predicted_per_token_ms', 0):6.1f} ms/token"
        )
    return lines


def print_table(results: list[Result]) -> None:
    width = max(len(r.name) for r in results) + 2
    print()
    print(
        f"{'contender':<{width}}{'wall s':>9}{'compl. tokens':>15}{'tokens/s':>10}"
        f"{'prompt tok':>12}{'other CPU':>11}  output"
    )
    for r in results:
        print(
            f"{r.name:<{width}}{r.wall_s:9.1f}{r.tokens:15,}{r.tokens_per_s:10.1f}"
            f"{r.prompt_tokens:12,}{r.other_cpu:10.0%}  {r.done}"
        )
        for note in r.notes:
            print(f"{'':<{width + 2}}{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", choices=["0.5b", "1.5b"], default="0.5b")
    parser.add_argument("--instructions", type=int, default=len(INSTRUCTIONS))
    parser.add_argument("--max-tokens", type=int, default=128, help="per generation")
    parser.add_argument("--judge-max-tokens", type=int, default=900, help="per judge call")
    parser.add_argument("--skip-distilabel", action="store_true")
    parser.add_argument(
        "--probe-judge",
        action="store_true",
        help="also time one judge call with and without the JSON-schema constraint",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="per contender, seconds")
    args = parser.parse_args()
    if not 1 <= args.instructions <= len(INSTRUCTIONS):
        parser.error(f"--instructions must be between 1 and {len(INSTRUCTIONS)}")
    instructions = list(INSTRUCTIONS[: args.instructions])

    python = None if args.skip_distilabel else ensure_distilabel_venv()
    # A SIGTERM ends the run like Ctrl-C: the `finally`s stop the stack and the subprocess.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory(prefix="loopline-llm-bench-") as tmp:
        work = Path(tmp)
        config = config_for_tests(work / "stack", REPO / ".loopline" / "install")
        config = config.model_copy(update={"model": args.model})
        slot_tokens = config.llm_context // config.llm_parallel
        needed = GENERATIONS * args.max_tokens + args.judge_max_tokens + JUDGE_PROMPT_OVERHEAD
        if needed > slot_tokens:
            parser.error(
                f"a judge call needs about {needed} tokens but a server slot holds "
                f"{slot_tokens}: lower --max-tokens or --judge-max-tokens"
            )
        print(
            f"model {config.llm_model_name}, {len(instructions)} instructions x {GENERATIONS} "
            f"generations, max_tokens {args.max_tokens}, judge max_tokens "
            f"{args.judge_max_tokens}, {config.llm_parallel} slots x {slot_tokens} tokens"
        )
        stack.up(config, progress=lambda m: print(f"  {m}"), components=["kafka", "llm"])
        results: list[Result] = []
        try:
            base_url, model = config.llm_base_url, config.llm_model_name
            meter = Meter(config)
            warm_up(base_url, model)

            anchors: list[Result] = []
            for concurrency in (config.llm_parallel, 2 * config.llm_parallel):
                before = meter.read()
                wall, completions, usage_tokens = asyncio.run(
                    bare_client(base_url, model, instructions, args.max_tokens, concurrency)
                )
                anchors.append(
                    meter.result(
                        f"bare client, {concurrency} in flight",
                        before,
                        wall,
                        f"{completions} completions",
                        generation_tokens=usage_tokens,
                    )
                )
                print(f"  done: {anchors[-1].name} ({wall:.0f} s)")
            results.extend(anchors)

            from services.generator.app import SERVICE as GENERATOR

            flows = bench_flows(args.max_tokens, args.judge_max_tokens)
            settings = Settings(
                kafka=KafkaSettings(
                    bootstrap_servers=config.kafka_bootstrap,
                    group_prefix=f"llm-bench-{uuid.uuid4().hex[:8]}",
                    session_timeout_ms=6000,
                    heartbeat_interval_ms=1000,
                ),
                llm=LLMSettings(base_url=base_url, model=model),
            )

            def loopline_result(
                name: str, specs: list[ServiceSpec], flow: str, judged: bool
            ) -> Result:
                run = asyncio.run(
                    loopline(specs, settings, flows, flow, instructions, meter, args.timeout)
                )
                records = run.records
                candidates = [c for r in records for c in r.responses]
                generated = sum(c.usage.completion_tokens for c in candidates if c.usage)
                done = f"{len(records)} records, {len(candidates)} completions"
                if judged:
                    ok = sum(1 for r in records if any(j.status == "ok" for j in r.judgments))
                    done += f", {ok} judged ok"
                if run.dead:
                    done += f", {run.dead} dead-lettered"
                if run.copies:
                    done += f", {run.copies} records redone (redelivered)"
                result = meter.result(
                    name, run.before, run.wall_s, done, after=run.after, generation_tokens=generated
                )
                print(f"  done: {name} ({run.wall_s:.0f} s)")
                return result

            generator_only = loopline_result(
                "loopline generator", [GENERATOR], "bench-generate", judged=False
            )
            results.append(generator_only)

            from services.judge.app import SERVICE as JUDGE

            full = loopline_result(
                "loopline generator + judge (multi-aspect)",
                [GENERATOR, JUDGE],
                "bench-judge",
                judged=True,
            )
            results.append(full)
            # The same work as UltraFeedback's overall-rating: one score and reason per response.
            overall = loopline_result(
                "loopline generator + judge (1 aspect: overall)",
                [GENERATOR, JUDGE],
                "bench-judge-overall",
                judged=True,
            )
            results.append(overall)

            distilabel: Result | None = None
            if python is not None:
                job = {
                    "base_url": base_url,
                    "model": model,
                    "instructions": instructions,
                    "temperature": TEMPERATURE,
                    "max_tokens": args.max_tokens,
                    "judge_max_tokens": args.judge_max_tokens,
                    "judge_temperature": JUDGE_TEMPERATURE,
                    "generations": GENERATIONS,
                    "timeout_s": args.timeout,
                    "cache_dir": str(work / "distilabel-cache"),
                }
                before = meter.read()
                side, process_s = run_distilabel(python, job, work, args.timeout + 120)
                distilabel = meter.result(
                    "distilabel 1.5.3 TextGeneration + UltraFeedback",
                    before,
                    side["wall_s"],
                    f"{side['rows']} rows, {side['generations']} completions, "
                    f"{side['rated_rows']} rated",
                    generation_tokens=count_tokens(config, side["generation_texts"]),
                    notes=[f"(the whole subprocess, imports included: {process_s:.1f} s)"],
                )
                print(f"  done: {distilabel.name} ({side['wall_s']:.0f} s)")
                results.append(distilabel)
            probes = probe_judge(base_url, model, args.judge_max_tokens) if args.probe_judge else []
        finally:
            stack.down(config)

    print_table(results)
    print()
    for r in results:
        if r.generation_tokens is not None and r is not generator_only and r not in anchors:
            judge_tokens = r.tokens - r.generation_tokens
            print(
                f"{r.name}: {r.generation_tokens:,} generation + ~{judge_tokens:,} judge "
                "completion tokens"
            )
    anchor = max(anchors, key=lambda r: r.tokens_per_s)
    share = generator_only.tokens_per_s / anchor.tokens_per_s
    print()
    print(
        f"loopline generator / best bare client tokens/s  {share:6.1%}  "
        f"(target >= 90%: {'met' if share >= 0.9 else 'NOT met'})"
    )
    if distilabel is not None:
        speedup = distilabel.wall_s / full.wall_s
        rate = full.tokens_per_s / distilabel.tokens_per_s
        print(
            f"loopline vs distilabel, wall time speed-up     {speedup:6.2f}x  "
            f"(target >= 2x: {'met' if speedup >= 2 else 'NOT met'})"
        )
        print(f"loopline vs distilabel, tokens/s              {rate:6.2f}x")
        same_work = distilabel.wall_s / overall.wall_s
        print(
            f"loopline (1 aspect) vs distilabel, speed-up   {same_work:6.2f}x  "
            "(the same judge work as UltraFeedback overall-rating)"
        )
    if probes:
        print()
        print("one multi-aspect judge call, alone on the endpoint:")
        for probe in probes:
            print(f"  {probe}")


if __name__ == "__main__":
    main()
