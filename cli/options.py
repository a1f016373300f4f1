"""Options several commands share, and the one rule that turns them into settings.

The rule, for every command and service: a flag given on the command line wins over the
`LOOPLINE_*` environment, which wins over the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr

from devstack.config import LOCAL_ARGILLA_API_KEY
from shared.deployment_checks import is_loopback_url
from shared.settings import Settings

StateDir = Annotated[
    Path | None,
    typer.Option(
        help="State directory: exports, stores, the local stack's pid files, logs and data "
        "(default LOOPLINE_STACK_DIR or .loopline)."
    ),
]
InstallDir = Annotated[
    Path | None,
    typer.Option(
        help="Where the local stack's servers and models are installed, shared by every state "
        "dir (default LOOPLINE_INSTALL_DIR or .loopline/install)."
    ),
]
FlowsFile = Annotated[
    Path | None,
    typer.Option(
        help="Flows: a folder of flow files or one file (default LOOPLINE_FLOWS_FILE or flows/)."
    ),
]


def settings_with(**flags: Any) -> Settings:
    """The process settings from the environment, with every flag that was given on top
    (and the local stack's Argilla key where that is the Argilla meant: `with_local_key`)."""
    settings = Settings()
    given = {name: value for name, value in flags.items() if value is not None}
    return with_local_key(settings.model_copy(update=given) if given else settings)


def with_local_key(settings: Settings) -> Settings:
    """With no LOOPLINE_ARGILLA__API_KEY and an Argilla on loopback (the local stack's, which
    binds nothing else), the local stack's key; any other Argilla gets no key from here."""
    argilla = settings.argilla
    if argilla.api_key is not None or not is_loopback_url(argilla.api_url):
        return settings
    local = argilla.model_copy(update={"api_key": SecretStr(LOCAL_ARGILLA_API_KEY)})
    return settings.model_copy(update={"argilla": local})
