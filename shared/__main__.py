"""`python -m shared` is the `loopline` command."""

from shared.cli import app

if __name__ == "__main__":  # not when a worker process re-imports its parent's main module
    app()
