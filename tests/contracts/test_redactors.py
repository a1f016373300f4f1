"""The redactor contract (`services.ingester.redactors.base.Redactor`), over every installed
redactor.

A third-party redactor is checked too once installed; give it options below if it cannot be
built from `{}`.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from services.ingester.redactors.base import Redactor
from shared.plugins import PluginKind, PluginRegistry
from tests.contracts.common import SingleRegistry, check_unknown_option_is_refused, installed

KIND = PluginKind.redactors
REDACTORS = installed(KIND)

# The least options a redactor needs to be built; a redactor not listed is built from `{}`.
MINIMAL_OPTIONS: dict[str, dict[str, Any]] = {}

ADDRESS = "jane.doe@example.com"
BEFORE, AFTER = "Please forward the invoice to ", " before Friday."
WITH_EMAIL = f"{BEFORE}{ADDRESS}{AFTER}"
WITHOUT_PII = "The quick brown fox jumps over the lazy dog, twice before lunch."


def build(name: str) -> Redactor:
    redactor = PluginRegistry().build(KIND, name, MINIMAL_OPTIONS.get(name, {}))
    assert isinstance(redactor, Redactor)
    return redactor


def check_masks_an_email_address(redactor: Redactor) -> None:
    """The address is replaced, the text around it kept, and one finding counted."""
    masked, counts = redactor.redact(WITH_EMAIL)
    assert isinstance(masked, str) and isinstance(counts, dict)
    assert ADDRESS not in masked
    assert masked.startswith(BEFORE) and masked.endswith(AFTER)
    assert len(masked) > len(BEFORE) + len(AFTER)  # replaced, not deleted
    assert all(isinstance(kind, str) and type(n) is int and n > 0 for kind, n in counts.items())
    assert sum(counts.values()) == 1


def check_leaves_text_without_pii_alone(redactor: Redactor) -> None:
    assert redactor.redact(WITHOUT_PII) == (WITHOUT_PII, {})
    assert redactor.redact("") == ("", {})


def check_redacting_twice_changes_nothing_more(redactor: Redactor) -> None:
    masked, _ = redactor.redact(WITH_EMAIL)
    assert redactor.redact(masked) == (masked, {})


CHECKS = (
    check_masks_an_email_address,
    check_leaves_text_without_pii_alone,
    check_redacting_twice_changes_nothing_more,
)


@pytest.mark.parametrize("name", REDACTORS)
def test_masks_an_email_address_and_counts_it(name: str) -> None:
    check_masks_an_email_address(build(name))


@pytest.mark.parametrize("name", REDACTORS)
def test_text_without_pii_comes_back_unchanged_with_no_counts(name: str) -> None:
    check_leaves_text_without_pii_alone(build(name))


@pytest.mark.parametrize("name", REDACTORS)
def test_redacting_twice_changes_nothing_more(name: str) -> None:
    check_redacting_twice_changes_nothing_more(build(name))


# The checks above can fail: broken redactors do not pass them.

_EMAIL = re.compile(r"\S+@\S+\.[a-z]+")


class Leaky(Redactor):
    """Counts the address but leaves it in the text."""

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        found = len(_EMAIL.findall(text))
        return text, {"email": found} if found else {}


class Nosy(Redactor):
    """Flags every text, PII or not."""

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        return _EMAIL.sub("[EMAIL]", text), {"email": 1}


class SelfQuoting(Redactor):
    """Its mask looks like an address, so a second pass finds it again."""

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        masked, found = _EMAIL.subn("hidden@example.org", text)
        return masked, {"email": found} if found else {}


class TakesAnything(Redactor):
    """Swallows every option, so a typo in a flow would go unnoticed."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        return text, {}


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        (Leaky(), check_masks_an_email_address),
        (Nosy(), check_leaves_text_without_pii_alone),
        (SelfQuoting(), check_redacting_twice_changes_nothing_more),
    ],
    ids=["leaky", "nosy", "self-quoting"],
)
def test_a_broken_redactor_fails_the_checks(broken: Redactor, check: Any) -> None:
    with pytest.raises(AssertionError):
        check(broken)


def test_a_redactor_taking_any_option_fails_the_checks() -> None:
    with pytest.raises(AssertionError, match="takes any option"):
        check_unknown_option_is_refused(SingleRegistry(TakesAnything), KIND, "anything", {})
