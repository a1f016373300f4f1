"""The redactor contract (`loopline.redactors`): mask sensitive text in a record's input.

A flow names its redactor under `ingest.redact`, e.g. `redact: {plugin: pii}`. The ingester
runs it before validation, on every string `redact_record_input` walks, so nothing downstream
(the broker, the judge, Argilla, exports) sees the original text. A third-party redactor
registers like a built-in::

    [project.entry-points."loopline.redactors"]
    my-redactor = "my_package.redaction:MyRedactor"
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from typing import Any

from shared.plugins import Plugin


class Redactor(Plugin):
    """Masks sensitive text.

    Options: the constructor's keyword parameters, checked as `shared.plugins.Plugin` says.
    """

    @abstractmethod
    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """`(text with every finding masked, {kind: how many found})`.

        Only kinds that were found appear in the counts; text without findings comes back
        unchanged with `{}`. Redacting the result again finds nothing more (a mask must not
        look like what it hides). It must not raise for any string, the empty one included.
        """


def redact_record_input(
    data: dict[str, Any], redactor: Redactor
) -> tuple[dict[str, Any], dict[str, int]]:
    """A copy of a raw record dict with its text redacted, and the findings of each kind in total.

    Redacts `instruction`, `context`, every `messages[].content`, every `responses[].text`, every
    string inside `metadata` (values only, at any depth) and every tag. Other fields (ids, flow,
    model names, parameters) are kept as they are. `data` itself is never changed; fields of an
    unexpected shape are left for validation to reject.
    """
    result = copy.deepcopy(data)
    totals: dict[str, int] = {}

    def redact(value: Any) -> Any:
        """`value` with every string inside it redacted (lists and dict values, recursively)."""
        if isinstance(value, str):
            masked, counts = redactor.redact(value)
            for kind, count in counts.items():
                totals[kind] = totals.get(kind, 0) + count
            return masked
        if isinstance(value, list):
            return [redact(item) for item in value]
        if isinstance(value, dict):
            return {key: redact(item) for key, item in value.items()}
        return value

    for field in ("instruction", "context"):
        if isinstance(result.get(field), str):
            result[field] = redact(result[field])
    for field, text_key in (("messages", "content"), ("responses", "text")):
        items = result.get(field)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and text_key in item:
                    item[text_key] = redact(item[text_key])
    if isinstance(result.get("metadata"), dict):
        result["metadata"] = redact(result["metadata"])
    if isinstance(result.get("tags"), list):
        result["tags"] = redact(result["tags"])
    return result, totals
