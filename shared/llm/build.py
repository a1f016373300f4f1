"""Building LLM plugins from a flow's plugin references, with the process's default endpoint."""

from __future__ import annotations

from shared.flows import PluginRef
from shared.llm.base import LLM
from shared.llm.telemetry import LLMTelemetry
from shared.plugins import PluginKind, PluginRegistry
from shared.settings import LLMSettings

DEFAULT_LLM = PluginRef(plugin="openai")


def build_llm(
    ref: PluginRef | None,
    defaults: LLMSettings,
    registry: PluginRegistry,
    telemetry: LLMTelemetry | None = None,
) -> LLM:
    """The LLM `ref` names (default: the `openai` plugin at LOOPLINE_LLM__BASE_URL).

    Built through the `LLM` contract, `from_options(options, defaults=defaults)`, after the
    registry's option check; its calls are reported through `telemetry` when given
    (`LLM.instrument`), else through the process's global tracer provider without content.
    """
    ref = ref or DEFAULT_LLM
    llm: LLM = registry.build(PluginKind.llms, ref.plugin, ref.options, defaults=defaults)
    if telemetry is not None:
        llm.instrument(telemetry)
    return llm
