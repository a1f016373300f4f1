"""The `loopline` command: a file per command group, each a thin layer over the services."""
