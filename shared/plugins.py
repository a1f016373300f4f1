"""The plugin registry: one Python entry-point group per kind of plugin.

Built-in plugins register through Loopline's own `pyproject.toml` exactly as a third-party
package would, e.g.::

    [project.entry-points."loopline.rubrics"]
    my-rubric = "my_package.rubrics:MyRubric"
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from importlib.metadata import EntryPoint, entry_points
from typing import Any


class PluginKind(StrEnum):
    sources = "sources"
    llms = "llms"
    rubrics = "rubrics"
    routers = "routers"
    templates = "templates"
    formats = "formats"
    sinks = "sinks"
    redactors = "redactors"
    dedupers = "dedupers"

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
