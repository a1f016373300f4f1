"""Checks every plugin contract suite makes the same way, and a registry holding one fake.

Each suite in this folder runs over every installed entry point of its kind
(`installed(kind)`), so a third-party plugin is checked as soon as its package is installed.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.plugins import Plugin, PluginKind, PluginOptionsError, PluginRegistry

UNKNOWN_OPTION = "no_such_option_for_contract_tests"


def installed(kind: PluginKind) -> list[str]:
    """The names of every installed plugin of `kind` (the suites' parameters)."""
    return PluginRegistry().names(kind)


class SingleRegistry(PluginRegistry):
    """A registry whose every name is `factory`: checks a plugin that is not installed."""

    def __init__(self, factory: Any) -> None:
        super().__init__(lambda group: [])
        self.factory = factory

    def load(self, kind: PluginKind, name: str) -> Any:
        return self.factory


def check_unknown_option_is_refused(
    registry: PluginRegistry, kind: PluginKind, name: str, options: dict[str, Any]
) -> None:
    """Building `name` from `options` plus an unknown one fails before the plugin is built,
    naming the plugin, the unknown option and every accepted option."""
    factory = registry.load(kind, name)
    assert isinstance(factory, type) and issubclass(factory, Plugin)
    accepted = factory.accepted_options()
    assert accepted is not None, f"{name} takes any option, so a typo in a flow would pass"
    with pytest.raises(PluginOptionsError) as caught:
        registry.build(kind, name, {**options, UNKNOWN_OPTION: 1})
    message = str(caught.value)
    assert name in message
    assert UNKNOWN_OPTION in message
    assert "accepted" in message
    for option in accepted:
        assert option in message
