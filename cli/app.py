"""The `loopline` command: the root that gathers the command groups, one file each.

* `run` (cli/run.py): one service in the foreground;
* `stack ...`, `services ...` (cli/stack.py): the local stack and the services on it;
* `ingest`, `export` (cli/data.py): data in and out on demand;
* `plugins`, `check-flows` (cli/flows.py): what is installed, and whether a flow file is usable;
* `annotate`, `annotators add|list` (cli/annotate.py): bot annotators, people's accounts;
* `demo` (cli/demo.py): a shipped flow's sample through the running local stack, watched live;
* `dlq list|show|replay` (cli/dlq.py): the dead-letter topics, and replaying what they hold;
* `status`, `trace RECORD_ID` (cli/status.py, cli/trace.py): where records are, which stage is
  behind, and one record's path and trace;
* `asyncapi write|check|install-viewer` (cli/asyncapi.py): the topics' AsyncAPI document.
"""

from __future__ import annotations

import typer

from cli import annotate, asyncapi, data, demo, dlq, flows, run, stack, status, trace

app = typer.Typer(
    help="Loopline: stream LLM traffic into curated training and evaluation data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(run.run)
app.add_typer(stack.stack_app, name="stack")
app.add_typer(stack.services_app, name="services")
app.command()(data.ingest)
app.command("export")(data.export_command)
app.command()(flows.plugins)
app.command("check-flows")(flows.check_flows)
app.command()(demo.demo)
app.command("annotate")(annotate.annotate_command)
app.add_typer(annotate.annotators_app, name="annotators")
app.add_typer(dlq.dlq_app, name="dlq")
app.command()(status.status)
app.command()(trace.trace)
app.add_typer(asyncapi.asyncapi_app, name="asyncapi")
