"""`python -m cli` is the `loopline` command."""

from cli.app import app

if __name__ == "__main__":  # not when a worker process re-imports its parent's main module
    app()
