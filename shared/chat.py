"""Chat roles as the sources of records name them, mapped to Loopline's roles.

ShareGPT-style datasets say `human`/`gpt`, OpenTelemetry GenAI spans `developer`/`ai`/
`function`, OpenAI `system`/`user`/`assistant`/`tool`: one table reads them all.
"""

from __future__ import annotations

ROLE_ALIASES: dict[str, str] = {
    "system": "system",
    "developer": "system",  # OpenAI's newer name for the system prompt
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "ai": "assistant",
    "tool": "tool",
    "function": "tool",
}


def normalise_role(name: str) -> str | None:
    """Loopline's role for a speaker name (any case, padded or not); None when unknown."""
    return ROLE_ALIASES.get(name.strip().lower())
