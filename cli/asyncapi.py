"""`loopline asyncapi write|check|install-viewer`: the topics' AsyncAPI document and its viewer.

The document is generated from the six services' specs (`shared.asyncapi`); its committed copy
is `docs/asyncapi.yaml`, which the ingester serves at `/asyncapi.yaml`, `.json` and, rendered,
`/asyncapi`. The page's viewer is an npm package the ingester serves itself (no CDN):
`install-viewer` puts it where the ingester looks (`LOOPLINE_INGEST__ASYNCAPI_VIEWER_DIR`, default
`<install_dir>/asyncapi-viewer`); a container image runs it at build time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.options import InstallDir, settings_with
from cli.output import console, exit_on, fail
from cli.run import SERVICES, load_service
from devstack.asyncapi_viewer import ViewerInstallError, install_viewer
from shared import asyncapi_viewer
from shared.asyncapi import build_document, to_json, to_yaml

DOCUMENT = Path("docs/asyncapi.yaml")
REGENERATE = f"loopline asyncapi write --output {DOCUMENT}"

asyncapi_app = typer.Typer(
    help="The topics' AsyncAPI document (docs/asyncapi.yaml) and the viewer of its page.",
    no_args_is_help=True,
)


def document() -> dict[str, Any]:
    """The document of every service's topics, as generated now."""
    return build_document([load_service(name) for name in SERVICES])


def rendered(as_json: bool = False) -> str:
    return to_json(document()) if as_json else to_yaml(document())


@asyncapi_app.command("write")
def write(
    output: Annotated[Path, typer.Option(help="Where to write it; `-` prints it.")] = DOCUMENT,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Generate the AsyncAPI document of every topic from the services (default: the
    committed docs/asyncapi.yaml)."""
    text = rendered(as_json)
    if str(output) == "-":
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    console.print(f"wrote {output}", markup=False, highlight=False)


@asyncapi_app.command("check")
def check(
    file: Annotated[Path, typer.Option(help="The committed document.")] = DOCUMENT,
) -> None:
    """Exit 1 when the committed document differs from what the services generate now."""
    current = file.read_text(encoding="utf-8") if file.is_file() else ""
    if current != rendered():
        raise fail(f"{file} is out of date: run `{REGENERATE}`", 1)
    console.print(f"{file} is up to date", markup=False, highlight=False)


@asyncapi_app.command("install-viewer")
def install_viewer_command(
    folder: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Where to install it (default LOOPLINE_INGEST__ASYNCAPI_VIEWER_DIR, else "
            "<install dir>/asyncapi-viewer).",
        ),
    ] = None,
    install_dir: InstallDir = None,
) -> None:
    """Download the AsyncAPI page's viewer (a pinned npm package, integrity-checked) for the
    ingester to serve; nothing is downloaded when it is there already."""
    where = folder or asyncapi_viewer.viewer_dir(settings_with(install_dir=install_dir))
    with exit_on(ViewerInstallError, code=1):
        installed = install_viewer(where, lambda line: console.print(line, markup=False))
    state = "installed" if installed else "already installed"
    package = f"{asyncapi_viewer.PACKAGE}@{asyncapi_viewer.VERSION}"
    console.print(f"{package} {state} in {where}", markup=False, highlight=False)
