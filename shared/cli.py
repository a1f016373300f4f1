"""The `loopline` command: run a service, manage the local stack, inspect plugins and flows."""

from __future__ import annotations

import asyncio
import importlib
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shared.flows import FlowFileError
from shared.plugins import PluginKind, PluginRegistry
from shared.service import ServiceSpec, load_checked_flows, run_service
from shared.settings import Settings

SERVICES: dict[str, str] = {
    "ingester": "services.ingester.app",
    "generator": "services.generator.app",
    "judge": "services.judge.app",
    "argilla-publisher": "services.argilla_publisher.app",
    "feedback-collector": "services.feedback_collector.app",
    "exporter": "services.exporter.app",
}

app = typer.Typer(
    help="Loopline: stream LLM traffic into curated training and evaluation data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def load_service(name: str) -> ServiceSpec:
    if name not in SERVICES:
        raise typer.BadParameter(f"unknown service {name!r}; one of: {', '.join(SERVICES)}")
    spec: ServiceSpec = importlib.import_module(SERVICES[name]).SERVICE
    return spec


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


@app.command()
def run(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}.")],
    health_port: Annotated[
        int | None, typer.Option(help="Serve GET /healthz on this port (127.0.0.1).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "INFO",
) -> None:
    """Run one service until SIGTERM, against the broker in LOOPLINE_KAFKA__BOOTSTRAP_SERVERS."""
    configure_logging(log_level)
    spec = load_service(service)
    settings = Settings()
    if health_port is not None:
        settings = settings.model_copy(update={"health_port": health_port})
    try:
        flows = load_checked_flows(settings)
    except FlowFileError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    asyncio.run(run_service(spec, settings, flows=flows))


@app.command()
def plugins() -> None:
    """List the installed plugins of every kind (entry-point groups loopline.*)."""
    registry = PluginRegistry()
    table = Table("kind", "entry-point group", "plugins")
    for kind in PluginKind:
        table.add_row(kind.value, kind.group, ", ".join(registry.names(kind)) or "-")
    console.print(table)


@app.command("check-flows")
def check_flows(
    path: Annotated[
        Path | None, typer.Argument(help="Flow file (default LOOPLINE_FLOWS_FILE).")
    ] = None,
) -> None:
    """Validate a flow file and the plugins it names."""
    settings = Settings()
    if path is not None:
        settings = settings.model_copy(update={"flows_file": path})
    try:
        flows = load_checked_flows(settings)
    except FlowFileError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"{settings.flows_file}: {len(flows.flows)} flow(s) OK: {', '.join(flows.flows)}")
