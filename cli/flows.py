"""`loopline plugins` and `loopline check-flows`: what is installed, and is a flow file usable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.options import settings_with
from cli.output import console, exit_on
from shared.flows import FlowFileError
from shared.plugins import PluginKind, PluginRegistry
from shared.service import load_checked_flows


def plugins() -> None:
    """List the installed plugins of every kind (entry-point groups loopline.*)."""
    registry = PluginRegistry()
    table = Table("kind", "entry-point group", "plugins")
    for kind in PluginKind:
        table.add_row(kind.value, kind.group, ", ".join(registry.names(kind)) or "-")
    console.print(table)


def check_flows(
    path: Annotated[
        Path | None,
        typer.Argument(help="A flows folder or one flow file (default LOOPLINE_FLOWS_FILE)."),
    ] = None,
) -> None:
    """Validate flows (a folder of flow files, or one file) and the plugins they name."""
    settings = settings_with(flows_file=path)
    with exit_on(FlowFileError, code=2):
        flows = load_checked_flows(settings)
    console.print(f"{settings.flows_file}: {len(flows.flows)} flow(s) OK: {', '.join(flows.flows)}")
