"""The span/event join store on a fake clock: either side waits for the other up to the wait,
complete pairs leave at once, the bounds evict the oldest, bytes are accounted exactly."""

from __future__ import annotations

from services.ingester.otlp.content import ContentEvent
from services.ingester.otlp.genai import DETAILS_EVENT, LLMSpan
from services.ingester.otlp.join import ENTRY_OVERHEAD, JoinStore

DETAILS = ContentEvent(DETAILS_EVENT, {"gen_ai.input.messages": []})
USER = ContentEvent("gen_ai.user.message", {"body": {"content": "Hi"}})
CHOICE = ContentEvent("gen_ai.choice", {"body": {"message": {"content": "Hello"}}})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def span(n: int, size: int = 300, failed: bool = False) -> LLMSpan:
    return LLMSpan(
        trace_id=f"{n:032x}",
        span_id=f"{n:016x}",
        name="chat",
        start=1,
        end=2,
        attrs={"gen_ai.operation.name": "chat"},
        resource_attrs={},
        flow="default",
        failed=failed,
        joinable=True,
        size=size,
    )


def store(clock: Clock, max_entries: int = 100, max_bytes: int = 1 << 20) -> JoinStore:
    return JoinStore(10.0, max_entries, max_bytes, clock)


def test_span_first_then_its_details_event() -> None:
    clock = Clock()
    join = store(clock)
    assert join.add_span(span(1)) is None
    assert join.bytes == ENTRY_OVERHEAD + 300
    clock.now += 9.9
    entry = join.add_events(span(1).key, [DETAILS], 50)
    assert entry is not None and entry.span is not None and entry.events == [DETAILS]
    assert (len(join), join.bytes) == (0, 0)


def test_older_events_wait_for_the_choice() -> None:
    clock = Clock()
    join = store(clock)
    key = span(1).key
    assert join.add_events(key, [USER], 40) is None
    assert join.add_span(span(1)) is None  # the answer's event has not come
    entry = join.add_events(key, [CHOICE], 60)
    assert entry is not None and entry.events == [USER, CHOICE]
    # A failed call's messages are all there is.
    assert join.add_events(span(2).key, [USER], 40) is None
    assert join.add_span(span(2, failed=True)) is not None
    assert join.bytes == 0


def test_the_wait_runs_from_arrival() -> None:
    clock = Clock()
    join = store(clock)
    join.add_span(span(1))
    clock.now += 5
    join.add_events(span(2).key, [USER], 40)
    assert join.next_deadline() == 110.0
    clock.now = 109.9
    assert join.due() == []
    clock.now = 110.0
    [first] = join.due()
    assert first.key == span(1).key and first.events == []
    clock.now = 115.0
    [second] = join.due()
    assert second.span is None and second.events == [USER]
    assert (join.next_deadline(), join.bytes) == (None, 0)


def test_bounds_evict_the_oldest_early() -> None:
    clock = Clock()
    join = store(clock, max_entries=2, max_bytes=2 * (ENTRY_OVERHEAD + 300))
    for n in (1, 2, 3):
        join.add_span(span(n))
    assert join.evicted == 1 and len(join) == 2
    assert join.next_deadline() == clock.now  # the evicted one is due now
    [evicted] = join.due()
    assert evicted.key == span(1).key
    join.add_events(span(4).key, [USER], 40)  # a third entry: the oldest leaves
    assert join.evicted == 2 and span(2).key not in join
    assert join.bytes <= 2 * (ENTRY_OVERHEAD + 300)
    assert join.add_span(span(5, size=10_000)) is None  # alone over the bound: not held
    assert span(5).key not in join and join.bytes <= join.max_bytes
    assert span(3).key in join and span(4).key in join  # and the others stay
    assert [entry.key for entry in join.due()] == [span(2).key, span(5).key]


def test_made_keys_drop_late_events_for_one_wait() -> None:
    clock = Clock()
    join = store(clock)
    join.mark_made([span(1).key])
    assert join.made(span(1).key)
    assert join.add_events(span(1).key, [DETAILS], 50) is None and len(join) == 0
    clock.now += 10
    join.due()
    assert not join.made(span(1).key)
    assert join.add_events(span(1).key, [DETAILS], 50) is None and len(join) == 1


def test_put_back_waits_again_and_merges_what_came_meanwhile() -> None:
    clock = Clock()
    join = store(clock)
    join.add_events(span(1).key, [USER], 40)
    entry = join.add_span(span(1, failed=True))
    assert entry is not None and join.bytes == 0
    clock.now += 3
    join.add_events(span(1).key, [CHOICE], 60)
    join.put_back([entry])
    assert len(join) == 1 and join.next_deadline() == 113.0
    clock.now = 113.0
    [back] = join.due()
    assert back.span is not None and back.events == [USER, CHOICE]
    assert join.bytes == 0
    assert join.span_flows([span(1).key]) == set()
