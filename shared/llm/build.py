"""Building LLM plugins from a flow's plugin references, with the process's default endpoint."""

from __future__ import annotations

from typing import Any

from shared.flows import PluginRef
from shared.plugins import PluginKind, PluginRegistry
from shared.settings import LLMSettings

DEFAULT_LLM = PluginRef(plugin="openai")


def build_llm(ref: PluginRef | None, defaults: LLMSettings, registry: PluginRegistry) -> Any:
    """An LLM client for `ref` (default: the `openai` plugin at LOOPLINE_LLM__BASE_URL).

    A plugin class with a `from_options` classmethod gets the defaults for what the flow leaves
    out (base URL, model, API key); any other plugin is built as `Plugin(**options)`.
    """
    ref = ref or DEFAULT_LLM
    plugin = registry.load(PluginKind.llms, ref.plugin)
    factory = getattr(plugin, "from_options", None)
    if factory is not None:
        return factory(
            dict(ref.options),
            default_base_url=defaults.base_url,
            default_model=defaults.model,
            default_api_key=defaults.api_key,
        )
    return plugin(**ref.options)
