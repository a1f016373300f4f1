"""Options several commands share, and the one rule that turns them into settings.

The rule, for every command and service: a flag given on the command line wins over the
`LOOPLINE_*` environment, which wins over the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

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
    """The process settings from the environment, with every flag that was given on top."""
    settings = Settings()
    given = {name: value for name, value in flags.items() if value is not None}
    return settings.model_copy(update=given) if given else settings
