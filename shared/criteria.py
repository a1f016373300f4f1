"""Criteria as flows write them: ``"id: description"``, or a bare description.

The ``additive`` rubric lists the ids of the criteria each response meets; the ``code-scoring``
template shows the same ids as labels, so the judge's verdicts line up with annotators' answers.
"""

from __future__ import annotations

import re

_CRITERION_ID = re.compile(r"^([A-Za-z][A-Za-z0-9_-]{0,39})\s*:\s*(\S.*)$", re.DOTALL)


def parse_criterion(text: str) -> tuple[str, str]:
    """``"id: description"`` → (id, description); a bare description gets an id from its words."""
    found = _CRITERION_ID.match(text)
    if found:
        return found.group(1), found.group(2).strip()
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40].rstrip("_")
    return slug or "criterion", text
