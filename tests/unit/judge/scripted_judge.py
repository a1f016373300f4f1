"""A scripted fake judge for the rubric tests: it answers each chat request with whatever a
script computes from it (no network), plus records to judge and scripts that favour the
response marked MARK."""

import json
import re
from collections.abc import Callable
from typing import Any

from services.judge.rubrics.base import Rubric
from shared.events import CandidateResponse, ChatMessage, Record
from shared.llm.base import ChatCompletion
from shared.llm.telemetry import LLMTelemetry
from shared.plugins import PluginKind, PluginRegistry

Reply = str | Exception
Script = Callable[["Call"], Reply]
RESPONSE_TAG = re.compile(r'<response id="([A-Z])">\n(.*?)\n</response>', re.DOTALL)


class Call:
    """One request the fake judge received."""

    def __init__(
        self, messages: list[ChatMessage], response_format: dict[str, Any] | None, index: int
    ) -> None:
        self.messages = messages
        self.response_format = response_format
        self.index = index

    def shown(self) -> list[tuple[str, str]]:
        """(label, text) of the responses in the first message that lists them."""
        for message in self.messages:
            found = RESPONSE_TAG.findall(message.content)
            if found:
                return found
        raise AssertionError("no responses in the prompt")


class ScriptedLLM:
    """Answers each chat request with whatever the script computes from it; no network."""

    model = "scripted-judge"
    telemetry = LLMTelemetry()  # the process's global tracer provider, as an LLM's default

    def __init__(self, script: Script, finish_reason: str = "stop") -> None:
        self.script = script
        self.finish_reason = finish_reason
        self.calls: list[Call] = []

    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        response_format: dict[str, Any] | None = None,
        **params: Any,
    ) -> ChatCompletion:
        call = Call(list(messages), response_format, len(self.calls))
        self.calls.append(call)
        reply = self.script(call)
        if isinstance(reply, Exception):
            raise reply
        return ChatCompletion(
            text=reply,
            model=self.model,
            finish_reason=self.finish_reason,
            usage=None,
            latency_ms=1.0,
        )


def record(texts: list[str], **fields: Any) -> Record:
    fields.setdefault("instruction", "Write a function that reverses a string.")
    return Record(
        flow="test",
        responses=[CandidateResponse(text=t, model=f"gen-{i}") for i, t in enumerate(texts)],
        **fields,
    )


def texts_with_mark(n: int, mark: int) -> list[str]:
    return [f"answer {i} MARK" if i == mark else f"answer {i}" for i in range(n)]


ASPECTS = ["helpfulness", "honesty", "instruction_following", "truthfulness", "overall"]


def multi_aspect_marker(call: Call, aspects: list[str] = ASPECTS, per_aspect: bool = False) -> str:
    """5 on every aspect for the response with MARK in it, 1 for the others."""
    entries = []
    for label, text in call.shown():
        score = 5 if "MARK" in text else 1
        entry: dict[str, Any] = {"response": label}
        if per_aspect:
            entry.update({a: {"rationale": f"{a} of {label}", "score": score} for a in aspects})
        else:
            entry["rationale"] = f"all about {label}"
            entry.update({a: score for a in aspects})
        entries.append(entry)
    return json.dumps({"responses": entries})


def pairwise_marker(call: Call) -> str:
    winner = next(label for label, text in call.shown() if "MARK" in text)
    return json.dumps({"rationale": "the marked one is better", "winner": winner})


def build_rubric(name: str, **options: Any) -> Rubric:
    """A rubric built as a flow builds it (the unknown-option check lives in the registry)."""
    rubric: Rubric = PluginRegistry().build(PluginKind.rubrics, name, options)
    return rubric
