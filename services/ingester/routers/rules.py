"""The `rules` router: filters on tags, metadata and prompt length, a sample rate and a cap."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.ingester.routers.base import Router
from shared.events import Record, RouteDecision
from shared.hashing import stable_fraction


class Cap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_records: int = Field(ge=0)
    per_s: float = Field(gt=0)


class RuleOptions(BaseModel):
    """Options of the `rules` router, checked in this order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    require_tags: list[str] = Field(default_factory=list)
    exclude_tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    min_prompt_chars: int = Field(default=0, ge=0)
    max_prompt_chars: int | None = Field(default=None, ge=1)
    sample_rate: float = Field(default=1.0, ge=0, le=1)
    cap: Cap | None = None


def sample_point(record_id: str) -> float:
    """A number in [0, 1) fixed by the record id, so a retried record is sampled the same way."""
    return stable_fraction(record_id)


class RulesRouter(Router):
    """Filters on tags, metadata and prompt length, then a sample rate, then a cap per window
    (`loopline.routers: rules`). The options are the fields of `RuleOptions`; `clock` (for the
    cap's window) is passed by the service or tests, never by a flow."""

    context: ClassVar[tuple[str, ...]] = ("clock",)

    def __init__(self, clock: Callable[[], float] = time.monotonic, **options: Any) -> None:
        try:
            self.options = RuleOptions.model_validate(options)
        except ValidationError as exc:  # one line per bad value, without pydantic's links
            problems = (f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError("; ".join(problems)) from None
        self.clock = clock
        self._window_start = clock()
        self._window_count = 0

    @classmethod
    def accepted_options(cls) -> list[str]:
        return list(RuleOptions.model_fields)

    def _no(self, reason: str) -> RouteDecision:
        return RouteDecision(routed=False, router="rules", reason=reason)

    def _filter(self, record: Record) -> str | None:
        o = self.options
        missing = [t for t in o.require_tags if t not in record.tags]
        if missing:
            return f"missing required tag(s) {missing}"
        excluded = [t for t in o.exclude_tags if t in record.tags]
        if excluded:
            return f"excluded tag(s) {excluded}"
        for key, wanted in o.metadata.items():
            if record.metadata.get(key) != wanted:
                return f"metadata {key}={record.metadata.get(key)!r}, wanted {wanted!r}"
        length = sum(len(m.content) for m in record.prompt_messages())
        if length < o.min_prompt_chars:
            return f"prompt of {length} chars is shorter than {o.min_prompt_chars}"
        if o.max_prompt_chars is not None and length > o.max_prompt_chars:
            return f"prompt of {length} chars is longer than {o.max_prompt_chars}"
        if o.sample_rate < 1 and sample_point(record.record_id) >= o.sample_rate:
            return f"sampled out (rate {o.sample_rate})"
        return None

    def _within_cap(self) -> bool:
        cap = self.options.cap
        if cap is None:
            return True
        now = self.clock()
        if now - self._window_start >= cap.per_s:
            self._window_start, self._window_count = now, 0
        if self._window_count >= cap.max_records:
            return False
        self._window_count += 1
        return True

    def decide(self, record: Record) -> RouteDecision:
        reason = self._filter(record)
        if reason is not None:
            return self._no(reason)
        if not self._within_cap():
            cap = self.options.cap
            assert cap is not None
            return self._no(f"cap of {cap.max_records} records per {cap.per_s:g}s reached")
        return RouteDecision(routed=True, router="rules", reason="passed every rule")
