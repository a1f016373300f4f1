"""`loopline run SERVICE`: one service in the foreground until SIGTERM."""

from __future__ import annotations

import asyncio
import importlib
from typing import Annotated, Any

import typer

from cli.options import FlowsFile, StateDir, settings_with
from cli.output import configure_logging, exit_on
from shared.deployment_checks import DeploymentError, check_service
from shared.flows import FlowFileError
from shared.service import ServiceSpec, load_checked_flows, run_service

SERVICES: dict[str, str] = {
    "ingester": "services.ingester.app",
    "generator": "services.generator.app",
    "judge": "services.judge.app",
    "argilla-publisher": "services.argilla_publisher.app",
    "feedback-collector": "services.feedback_collector.app",
    "exporter": "services.exporter.app",
}


def load_service(name: str) -> ServiceSpec:
    if name not in SERVICES:
        raise typer.BadParameter(f"unknown service {name!r}; one of: {', '.join(SERVICES)}")
    spec: ServiceSpec = importlib.import_module(SERVICES[name]).SERVICE
    return spec


def event_loop_factory() -> Any:
    """uvloop's event loop where it is installed (faster I/O), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}.")],
    health_port: Annotated[
        int | None, typer.Option(help="Serve GET /healthz and /metrics on this port (127.0.0.1).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "INFO",
    flows_file: FlowsFile = None,
    state_dir: StateDir = None,
) -> None:
    """Run one service until SIGTERM, against the broker in LOOPLINE_KAFKA__BOOTSTRAP_SERVERS.

    Every setting comes from LOOPLINE_* variables (README: Configuration); a flag wins over
    its variable (--health-port over LOOPLINE_HEALTH_PORT, --flows-file over
    LOOPLINE_FLOWS_FILE, --state-dir over LOOPLINE_STACK_DIR).
    """
    spec = load_service(service)
    settings = settings_with(health_port=health_port, flows_file=flows_file, stack_dir=state_dir)
    configure_logging(log_level, settings, force=True)  # the process's entry point
    with exit_on(DeploymentError, code=2):
        check_service(service, settings)  # no missing or well-known key, no open ingester
    with exit_on(FlowFileError, code=2):
        flows = load_checked_flows(settings)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(run_service(spec, settings, flows=flows))
