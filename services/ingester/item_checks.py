"""What a raw record must be before it is validated, with the path of what is wrong.

Every input (HTTP, OTLP, `records.incoming`, files) is checked here first, without recursion:
no value nested deeper than the record may be (every downstream service must be able to parse
it: JSON parsers stop at 200 levels), and no text with a lone surrogate (it cannot be written
as UTF-8, so it could never reach Kafka).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from services.ingester.bounded_json import TOO_DEEP

MAX_PROBLEMS = 10  # per record: enough to fix it, not a wall of text


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


def path_text(parts: tuple[Any, ...]) -> str:
    """A field path as the API shows it (`metadata.tags.0`); keys that are not valid Unicode
    come out escaped, so the path can always be written in the answer."""
    shown = (str(part).encode("utf-8", "backslashreplace").decode("utf-8") for part in parts)
    return ".".join(shown) or "(record)"


def _surrogate(text: str) -> str | None:
    """Why `text` cannot be written as UTF-8, or None when it can."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start].encode("unicode_escape").decode("ascii")
        return (
            f"contains a lone surrogate ({bad} at character {exc.start}), which is not valid "
            "Unicode; send real characters (or a complete surrogate pair)"
        )
    return None


def _children(value: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(value, dict):
        return iter(value.items())
    return enumerate(value)


def check_item(item: dict[str, Any], max_depth: int) -> list[Problem]:
    """The problems of a raw record (a JSON object; it is level 1), in document order."""
    too_deep = f"nested deeper than {max_depth} levels (the limit for a record, itself level 1)"
    problems: list[Problem] = []
    # (value, its level, its path); containers only.
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(item, 1, ())]
    while stack and len(problems) < MAX_PROBLEMS:
        value, level, path = stack.pop()
        if level > max_depth:
            problems.append(Problem(path_text(path), too_deep))
            continue
        nested: list[tuple[Any, int, tuple[Any, ...]]] = []
        for key, child in _children(value):
            if isinstance(key, str) and (why := _surrogate(key)) is not None:
                problems.append(Problem(path_text((*path, key)), f"its key {why}"))
            if isinstance(child, dict | list):
                nested.append((child, level + 1, (*path, key)))
            elif isinstance(child, str):
                if child == TOO_DEEP:
                    problems.append(Problem(path_text((*path, key)), too_deep))
                elif (why := _surrogate(child)) is not None:
                    problems.append(Problem(path_text((*path, key)), why))
        stack.extend(reversed(nested))
    return problems[:MAX_PROBLEMS]
