"""The LLM contract (`loopline.llms`): what the generator and the judge call.

An LLM plugin is one model behind one endpoint. The generator asks it for candidate responses,
the judge for structured verdicts. It is built from a flow's `options` by `from_options`, with
the process's default endpoint (`LLMSettings`, LOOPLINE_LLM__*) for what the flow leaves out;
`loopline check-flows` builds it from the options alone, so building must not need a running
event loop or the network (open connections on the first `chat`). An unknown option is refused
by the shared checker (`shared.plugins`) naming it and the accepted ones: a plugin whose
constructor takes ``**anything`` overrides `accepted_options` to say what it takes.

A built LLM has:

* ``model``: the model name it asks for (recorded on every candidate and judgment);
* ``params``: the generation parameters it sends with every request (recorded on every
  candidate), e.g. ``{"temperature": 0.7}``;
* ``chat(messages, *, response_format=None, **params)``: one chat completion. ``params``
  override the built-in ones for this call (the judge passes ``max_tokens`` and
  ``temperature``); ``response_format`` is the OpenAI ``response_format`` object (the judge
  sends a ``json_schema`` one). Returns a `ChatCompletion`; fails with `LLMError`, whose
  ``retryable`` says whether trying again later could help (the judge lets those propagate
  and turns any other into a failed judgment), and whose ``status_code`` is the HTTP status,
  if there was one (the judge asks again without ``response_format`` when a 400 or 422 says
  it was refused);
* ``aclose()``: release its connections (the services call it when they stop);
* ``telemetry``: where its calls are reported (spans, content capture), set by the services
  through ``instrument`` (`shared.llm.telemetry`); a plugin that reports nothing ignores it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel

from shared.events import ChatMessage, TokenUsage
from shared.llm.telemetry import LLMTelemetry
from shared.plugins import Plugin
from shared.settings import LLMSettings

# Statuses a retry can fix: also every 5xx (see `is_retryable_status`).
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def is_retryable_status(status_code: int) -> bool:
    return status_code in RETRYABLE_STATUS or status_code >= 500


class LLMError(RuntimeError):
    """A chat completion failed.

    `retryable` says whether trying again later could help; `attempts` is how many requests were
    made; `retry_after_s` is the wait the server asked for, if it did. `error_type` is a
    low-cardinality name of what went wrong, for spans and metrics (`error.type`): the HTTP
    status ("429"), "timeout", the exception's class name, or "malformed_response".
    """

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        *,
        retryable: bool | None = None,
        attempts: int = 1,
        retry_after_s: float | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type or (str(status_code) if status_code else type(self).__name__)
        self.status_code = status_code
        self.attempts = attempts
        self.retry_after_s = retry_after_s
        self._retryable = retryable

    @property
    def retryable(self) -> bool:
        if self._retryable is not None:
            return self._retryable
        return self.status_code is None or is_retryable_status(self.status_code)


class ChatCompletion(BaseModel):
    """One answer: its text, the model the server says answered, why it stopped, the cost, and
    the server's id of the completion (`gen_ai.response.id`) when it gave one."""

    text: str
    model: str
    finish_reason: str | None
    usage: TokenUsage | None
    latency_ms: float
    response_id: str | None = None


class LLM(Plugin):
    """One model behind one endpoint; see the module's docstring for the contract."""

    model: str
    params: Mapping[str, Any]
    telemetry: LLMTelemetry = LLMTelemetry()  # the process's global tracer, no content

    def instrument(self, telemetry: LLMTelemetry) -> None:
        """Report this LLM's calls through `telemetry` from now on."""
        self.telemetry = telemetry

    @classmethod
    def from_options(  # type: ignore[override]  # the only context an LLM gets is `defaults`
        cls, options: Mapping[str, Any], *, defaults: LLMSettings | None = None
    ) -> Self:
        """The LLM a flow's `options` describe; `defaults` (None: `LLMSettings()`) fill the rest.

        This default ignores `defaults` and calls the constructor with the options; a plugin
        that can use the process's default endpoint overrides it. A value the plugin cannot
        use raises `ValueError` or `TypeError` saying which and why.
        """
        return cls(**options)

    @abstractmethod
    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        response_format: dict[str, Any] | None = None,
        **params: Any,
    ) -> ChatCompletion:
        """The model's answer to `messages`; raises `LLMError` when there is none."""

    async def aclose(self) -> None:
        """Release connections and other resources; the LLM is not used afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
