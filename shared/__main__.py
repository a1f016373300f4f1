"""`python -m shared` is the `loopline` command."""

from shared.cli import app

app()
