"""Plugins: one Python entry-point group per kind, one root class, one option checker.

Built-in plugins register through Loopline's own `pyproject.toml` exactly as a third-party
package would, e.g.::

    [project.entry-points."loopline.rubrics"]
    my-rubric = "my_package.rubrics:MyRubric"

Every kind's contract is an ABC deriving from `Plugin` (where each contract lives:
CONTRIBUTING.md). A plugin is built from the flow file's `options` as `cls(**options)`: the
options are the constructor's keyword parameters. `PluginRegistry.build` checks them first, so
a typo fails naming the plugin, the key and the accepted options, and `loopline check-flows`
runs the same check before any service starts.
"""

from __future__ import annotations

import inspect
from abc import ABC
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Self


class PluginKind(StrEnum):
    llms = "llms"
    rubrics = "rubrics"
    routers = "routers"
    redactors = "redactors"
    dedupers = "dedupers"
    templates = "templates"
    formats = "formats"
    annotators = "annotators"

    @property
    def group(self) -> str:
        return f"loopline.{self.value}"


class UnknownPluginError(LookupError):
    """A flow names a plugin that no installed package provides."""

    def __init__(self, kind: PluginKind, name: str, available: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.available = available
        listing = ", ".join(available) if available else "none installed"
        super().__init__(f"unknown {kind.value} plugin {name!r}; available: {listing}")


class PluginLoadError(ImportError):
    """A plugin is registered but its code cannot be imported."""


class PluginOptionsError(ValueError):
    """A flow gives a plugin options it cannot use; the message names the plugin and the key."""


class Plugin(ABC):  # noqa: B024 (the root of the contracts; each kind adds its abstract methods)
    """The root of every plugin contract.

    `options`: the flow's options are the constructor's keyword parameters, except those the
    service itself passes (`context`, e.g. a clock); an unknown one is refused by
    `check_unknown_options` before the constructor runs. A constructor raises `ValueError` (or
    `TypeError`) for a value it cannot use, with a message that says which and why.
    """

    context: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def accepted_options(cls) -> list[str] | None:
        """The option names the flow may give, or None when the constructor takes any."""
        return option_names(cls)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], **context: Any) -> Self:
        """The plugin built from a flow's `options` (and what the service passes)."""
        return cls(**options, **context)


def option_names(factory: Callable[..., Any]) -> list[str] | None:
    """The keyword parameters of `factory` a flow may set (None: it takes `**anything`)."""
    context = set(getattr(factory, "context", ()))
    names: list[str] = []
    for parameter in inspect.signature(factory).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL or parameter.name in context:
            continue
        names.append(parameter.name)
    return names


def check_unknown_options(
    kind: PluginKind, name: str, options: Mapping[str, Any], accepted: list[str] | None
) -> None:
    """The one unknown-option check: refuse options the plugin does not take, naming them."""
    if accepted is None:
        return
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        listing = ", ".join(accepted) if accepted else "none"
        raise PluginOptionsError(
            f"{kind.value} plugin {name!r}: unknown option(s) {unknown}; accepted: {listing}"
        )


EntryPointLister = Callable[[str], Iterable[EntryPoint]]


def _installed_entry_points(group: str) -> Iterable[EntryPoint]:
    return entry_points(group=group)


class PluginRegistry:
    """Finds plugins by kind and name among the installed entry points."""

    def __init__(self, lister: EntryPointLister = _installed_entry_points) -> None:
        self._lister = lister

    def _entry_points(self, kind: PluginKind) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in self._lister(kind.group)}

    def names(self, kind: PluginKind) -> list[str]:
        return sorted(self._entry_points(kind))

    def check(self, kind: PluginKind, name: str) -> None:
        """Raise `UnknownPluginError` unless a plugin `name` of `kind` is installed."""
        if name not in self._entry_points(kind):
            raise UnknownPluginError(kind, name, self.names(kind))

    def build(self, kind: PluginKind, name: str, options: Mapping[str, Any], **context: Any) -> Any:
        """Plugin `name` of `kind` built from a flow's `options`.

        Unknown options and values the plugin refuses raise `PluginOptionsError` naming the
        plugin; `loopline check-flows` and every service build plugins through here.
        """
        factory = self.load(kind, name)
        accepted = (
            factory.accepted_options()
            if isinstance(factory, type) and issubclass(factory, Plugin)
            else option_names(factory)
        )
        check_unknown_options(kind, name, options, accepted)
        try:
            if isinstance(factory, type) and issubclass(factory, Plugin):
                return factory.from_options(options, **context)
            return factory(**options, **context)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, PluginOptionsError):
                raise
            raise PluginOptionsError(f"{kind.value} plugin {name!r}: {exc}") from exc

    def load(self, kind: PluginKind, name: str) -> Any:
        """The object (usually a class) the entry point names."""
        found = self._entry_points(kind).get(name)
        if found is None:
            raise UnknownPluginError(kind, name, self.names(kind))
        try:
            return found.load()
        except Exception as exc:
            raise PluginLoadError(
                f"{kind.value} plugin {name!r} ({found.value}) failed to import: {exc}"
            ) from exc
