"""`loopline stack ...` and `loopline services ...`: the local stack and the six services on it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

import devstack
from cli.options import FlowsFile, InstallDir, StateDir, settings_with
from cli.output import console, exit_on, progress, show
from devstack import StackConfig, StackError
from devstack import services as local_services
from devstack.annotators.accounts import Account, ensure_split_annotators
from devstack.annotators.rest import ArgillaError, ArgillaREST
from devstack.config import PHOENIX_PROJECT
from devstack.services import PROJECT_ATTRIBUTE
from shared.flows import Flow, FlowFileError, load_flows

stack_app = typer.Typer(
    help="The local stack: Kafka (Tansu), Argilla (+ search, Redis, worker), two llama.cpp LLMs, "
    "Phoenix (traces).",
    no_args_is_help=True,
)
services_app = typer.Typer(
    help="The six services as background processes against the local stack.",
    no_args_is_help=True,
)

ModelOption = Annotated[
    str | None,
    typer.Option(
        help="Default model, the one LOOPLINE_LLM__* points at: 1.5b (default) or 0.5b; the "
        "other one is served too. Remembered by `up`."
    ),
]
WeightsOption = Annotated[
    str | None,
    typer.Option(
        help="Serve both model names with these weights: 0.5b (quick trials, tests) or 1.5b; "
        "`each` (default) gives each name its own. Remembered by `up`."
    ),
]
KafkaModeOption = Annotated[
    str | None,
    typer.Option(help="durable (default; survives restarts) or memory. Remembered by `up`."),
]


STACK_OPTIONS_FILE = "stack-options.json"
DEFAULT_OPTIONS: dict[str, str | None] = {"model": "1.5b", "kafka_mode": "durable", "weights": None}
EACH_OWN_WEIGHTS = "each"


def stack_config(
    state_dir: Path | None,
    model: str | None = None,
    kafka_mode: str | None = None,
    install_dir: Path | None = None,
    weights: str | None = None,
) -> StackConfig:
    """The stack's config: options given now, else those `stack up` saved, else the defaults.

    Directories: the flag, else the environment (LOOPLINE_STACK_DIR, LOOPLINE_INSTALL_DIR),
    else `.loopline` and `.loopline/install`.
    """
    settings = settings_with(stack_dir=state_dir, install_dir=install_dir)
    state_dir, install_dir = settings.stack_dir, settings.install_dir
    saved_file = state_dir / STACK_OPTIONS_FILE
    saved = json.loads(saved_file.read_text()) if saved_file.is_file() else {}
    options = {**DEFAULT_OPTIONS, **saved}
    options.update({k: v for k, v in (("model", model), ("kafka_mode", kafka_mode)) if v})
    if weights:
        options["weights"] = None if weights == EACH_OWN_WEIGHTS else weights
    if options["model"] not in ("0.5b", "1.5b"):
        raise typer.BadParameter(f"--model must be 0.5b or 1.5b, not {options['model']!r}")
    if options["weights"] not in (None, "0.5b", "1.5b"):
        raise typer.BadParameter(
            f"--weights must be 0.5b, 1.5b or {EACH_OWN_WEIGHTS}, not {options['weights']!r}"
        )
    if options["kafka_mode"] not in ("durable", "memory"):
        raise typer.BadParameter(
            f"--kafka-mode must be durable or memory, not {options['kafka_mode']!r}"
        )
    return StackConfig(state_dir=state_dir, install_dir=install_dir, **options)


def save_options(config: StackConfig) -> None:
    config.state_dir.mkdir(parents=True, exist_ok=True)
    options = {"model": config.model, "kafka_mode": config.kafka_mode, "weights": config.weights}
    (config.state_dir / STACK_OPTIONS_FILE).write_text(json.dumps(options))


def show_models(config: StackConfig) -> None:
    """Where each model answers; flows name one with the openai plugin's `model:` option."""
    default, *others = config.llm_servers
    lines = [f"LLM: {default.base_url}  model {default.model_name} (default: LOOPLINE_LLM__*)"]
    lines += [f"LLM: {server.base_url}  model {server.model_name}" for server in others]
    lines.append(f"LOOPLINE_LLM__ENDPOINTS='{json.dumps(config.llm_endpoints)}'")
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def show_traces(config: StackConfig) -> None:
    """Where the trace viewer is, and what a process started by hand sets to export to it."""
    lines = [
        f"Traces: {config.phoenix_url}  (Phoenix; project {PHOENIX_PROJECT})",
        f"LOOPLINE_TELEMETRY__OTLP_ENDPOINT={config.phoenix_url} "
        f"OTEL_RESOURCE_ATTRIBUTES={PROJECT_ATTRIBUTE}={PHOENIX_PROJECT}",
    ]
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


@stack_app.command("install")
def stack_install(
    state_dir: StateDir = None,
    model: ModelOption = None,
    install_dir: InstallDir = None,
    weights: WeightsOption = None,
) -> None:
    """Download and install the servers and the model weights (idempotent)."""
    config = stack_config(state_dir, model, install_dir=install_dir, weights=weights)
    with exit_on(StackError, code=1):
        devstack.install(config, progress=progress)


@stack_app.command("up")
def stack_up(
    state_dir: StateDir = None,
    model: ModelOption = None,
    kafka_mode: KafkaModeOption = None,
    install_dir: InstallDir = None,
    weights: WeightsOption = None,
) -> None:
    """Install if needed, then start every part that is not already running healthy."""
    config = stack_config(state_dir, model, kafka_mode, install_dir, weights)
    with exit_on(StackError, code=1):
        statuses = devstack.up(config, progress=progress)
    save_options(config)
    show(statuses)
    console.print(
        f"Kafka bootstrap: {config.kafka_bootstrap}\n"
        f"Argilla: {config.argilla_url}  user {config.argilla_username} / password "
        f"{config.argilla_password.get_secret_value()}  api key "
        f"{config.argilla_api_key.get_secret_value()}"
    )
    show_models(config)
    show_traces(config)


@stack_app.command("down")
def stack_down(state_dir: StateDir = None) -> None:
    """Stop every part by the pid in its pid file."""
    stopped = devstack.down(stack_config(state_dir))
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@stack_app.command("status")
def stack_status(state_dir: StateDir = None, model: ModelOption = None) -> None:
    """Show each part: healthy or not, URL, pid; then the models. Exit 1 if any part is down."""
    config = stack_config(state_dir, model)
    healthy = show(devstack.status(config))
    show_models(config)
    show_traces(config)
    if not healthy:
        raise typer.Exit(1)


@services_app.command("up")
def services_up(
    state_dir: StateDir = None,
    model: ModelOption = None,
    flows_file: FlowsFile = None,
) -> None:
    """Start the six services in the background, pointed at the local stack.

    They write everything (exports, stores, logs) under the state dir.
    """
    config = stack_config(state_dir, model)
    flows_file = settings_with(flows_file=flows_file).flows_file
    with exit_on(FlowFileError, code=2):
        flows = load_flows(flows_file)
    # A split flow's annotators must exist before the publisher starts (it never creates
    # people's accounts); on the local stack they are created here.
    with exit_on(StackError, code=1):
        accounts = asyncio.run(split_annotators(config, flows.flows))
    for account in accounts:
        if account.created:
            progress(
                f"annotator {account.username} created in {account.workspace} "
                f"(password {account.password})"
            )
    with exit_on(StackError, code=1):
        show(local_services.up(config, flows_file, progress=progress))
    console.print(f"logs: {config.log_dir}/service-*.log")


async def split_annotators(config: StackConfig, flows: dict[str, Flow]) -> list[Account]:
    """The local stack's accounts for every split flow's annotators."""
    if not any(f.publish is not None and f.publish.mode == "split" for f in flows.values()):
        return []
    try:
        async with ArgillaREST(
            config.argilla_url, config.argilla_api_key.get_secret_value()
        ) as owner:
            return await ensure_split_annotators(owner, flows, config.argilla_workspace)
    except ArgillaError as exc:
        raise StackError("argilla", f"cannot create the split flows' annotators: {exc}") from exc


@services_app.command("down")
def services_down(state_dir: StateDir = None) -> None:
    """Stop the six services (SIGTERM: they drain in-flight work first)."""
    stopped = local_services.down(stack_config(state_dir))
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@services_app.command("status")
def services_status(state_dir: StateDir = None) -> None:
    """Show each service: healthy or not, health URL, pid. Exit 1 if any is down."""
    if not show(local_services.status(stack_config(state_dir))):
        raise typer.Exit(1)
