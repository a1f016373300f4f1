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
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from distilabel_runner import ensure_distilabel_venv, run_distilabel
from instructions import INSTRUCTIONS
from judge_probe import JUDGE_TEMPERATURE, probe_judge
from metering import Counters, Meter, Result, count_tokens, print_table

import devstack as stack
from devstack.testing import config_for_tests
from shared.broker import admin_client_options
from shared.events import RECORDS_INGESTED, RECORDS_JUDGED, Record, dead_letter_topic
from shared.flows import FlowsConfig, parse_flows
from shared.service import ServiceSpec, run_service
from shared.settings import KafkaSettings, LLMSettings, Settings

REPO = Path(__file__).resolve().parents[2]
GENERATIONS = 2
TEMPERATURE = 0.7
# Tokens a judge prompt takes besides the two responses (rubric text, instruction, tags).
JUDGE_PROMPT_OVERHEAD = 700


@dataclass
class LooplineRun:
    wall_s: float
    records: list[Record]  # the first copy of each record that came out
    dead: int  # records dead-lettered
    copies: int  # records that came out again (redelivered and redone) within the run
    before: Counters
    after: Counters


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
        self.kafka = kafka
        self.consumer = AIOKafkaConsumer(
            *(kafka.topic(t) for t in topics),
            **admin_client_options(kafka),
            auto_offset_reset="earliest",
            group_id=None,
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
                    if message.topic == self.kafka.topic(RECORDS_JUDGED):
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
            await producer.send(
                kafka.topic(RECORDS_INGESTED), r.to_bytes(), key=r.record_id.encode()
            )
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


# --- the run --------------------------------------------------------------------------------------


def warm_up(base_url: str, model: str) -> None:
    """A few requests, so that no contender pays for the first ones."""

    async def go() -> None:
        await bare_client(base_url, model, list(INSTRUCTIONS[:4]), 16, 4)

    asyncio.run(go())


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
