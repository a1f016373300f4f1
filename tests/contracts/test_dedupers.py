"""The near-duplicate detector contract
(`services.ingester.dedupers.base.NearDuplicateDetector`), over every installed deduper.

A third-party detector is checked too once installed; give it options below if it cannot be
built from `{}`.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.ingester.dedupers.base import NearDuplicateDetector
from shared.plugins import PluginKind, PluginRegistry
from tests.contracts.common import SingleRegistry, check_unknown_option_is_refused, installed

KIND = PluginKind.dedupers
DEDUPERS = installed(KIND)

# The least options a detector needs to be built; a detector not listed is built from `{}`.
MINIMAL_OPTIONS: dict[str, dict[str, Any]] = {}

FIRST = (
    "The committee met on Tuesday to review the quarterly budget. After a long discussion it "
    "agreed to fund the new library wing and to postpone the repairs to the swimming pool "
    "until the spring, when the contractors will be available again."
)
DIFFERENT = (
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen inside the "
    "chloroplasts of green plants; without it there would be almost no free oxygen to breathe."
)


def build(name: str) -> NearDuplicateDetector:
    detector = PluginRegistry().build(KIND, name, MINIMAL_OPTIONS.get(name, {}))
    assert isinstance(detector, NearDuplicateDetector)
    return detector


def check_remembers_and_recognises(detector: NearDuplicateDetector) -> None:
    """A first text is new, the same text again names the first key, a different text is new."""
    assert detector.check_and_add("first", FIRST) is None
    assert detector.check_and_add("again", FIRST) == "first"
    assert detector.check_and_add("different", DIFFERENT) is None
    assert detector.check_and_add("different-again", DIFFERENT) == "different"


@pytest.mark.parametrize("name", DEDUPERS)
def test_the_same_text_names_the_first_key_and_a_different_one_is_new(name: str) -> None:
    check_remembers_and_recognises(build(name))


@pytest.mark.parametrize("name", DEDUPERS)
def test_the_empty_text_is_checked_without_raising(name: str) -> None:
    detector = build(name)
    assert detector.check_and_add("empty", "") is None
    assert detector.check_and_add("first", FIRST) is None


# The checks above can fail: broken detectors do not pass them.


class Forgetful(NearDuplicateDetector):
    """Never remembers anything: every text is new."""

    def check_and_add(self, key: str, text: str) -> str | None:
        return None


class Suspicious(NearDuplicateDetector):
    """Calls every text after the first a duplicate of it."""

    def __init__(self) -> None:
        self.first: str | None = None

    def check_and_add(self, key: str, text: str) -> str | None:
        if self.first is None:
            self.first = key
            return None
        return self.first


class TakesAnything(NearDuplicateDetector):
    """Swallows every option, so a typo in a flow would go unnoticed."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def check_and_add(self, key: str, text: str) -> str | None:
        return None


@pytest.mark.parametrize("broken", [Forgetful(), Suspicious()], ids=["forgetful", "suspicious"])
def test_a_broken_detector_fails_the_checks(broken: NearDuplicateDetector) -> None:
    with pytest.raises(AssertionError):
        check_remembers_and_recognises(broken)


def test_a_detector_taking_any_option_fails_the_checks() -> None:
    with pytest.raises(AssertionError, match="takes any option"):
        check_unknown_option_is_refused(SingleRegistry(TakesAnything), KIND, "anything", {})
