"""`loopline stack up|down|status`: start, stop and inspect the local stack's servers."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devstack.component import Component, log_path, process_env
from devstack.components import INSTALLED_BY, stack_components
from devstack.config import StackConfig
from devstack.errors import ComponentStatus, failure
from devstack.installer import install
from devstack.process import (
    PidRecord,
    file_lock,
    owns_group,
    port_in_use,
    read_pid_file,
    spawn,
    stop_groups,
    write_pid_file,
)

Progress = Callable[[str], None]
POLL_INTERVAL_S = 0.2
# Servers that others depend on stop last, after their clients.
_STOP_LAST = ("object-store", "search")


def _quiet(message: str) -> None:
    del message


def _pid_file(config: StackConfig, name: str) -> Path:
    return config.run_dir / f"{name}.pid"


def _running(config: StackConfig, name: str) -> PidRecord | None:
    """The pid record of a live server; a stale pid file is removed (with any leftovers)."""
    path = _pid_file(config, name)
    record = read_pid_file(path)
    if record is None:
        path.unlink(missing_ok=True)
        return None
    if record.alive():
        return record
    stop_groups([record], config.stop_timeout_s)
    path.unlink(missing_ok=True)
    return None


def _with_dependencies(components: list[Component], names: Collection[str]) -> list[Component]:
    by_name = {component.name: component for component in components}
    unknown = set(names) - set(by_name)
    if unknown:
        raise ValueError(f"unknown components {sorted(unknown)}; known: {sorted(by_name)}")
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(by_name[name].after)
    return [component for component in components if component.name in wanted]


@dataclass
class _Launch:
    """A server this `up` waits for: being started in a thread, started, or found starting."""

    component: Component
    began: float
    pid: int | None = None
    starting: Future[int] | None = None

    def started(self) -> bool:
        """True once the process exists; re-raises what went wrong while starting it."""
        if self.pid is None and self.starting is not None and self.starting.done():
            self.pid = self.starting.result()
        return self.pid is not None


def _start(config: StackConfig, component: Component) -> int:
    """Check the ports, run the blocking preparation, spawn the server; its pid."""
    log = log_path(config, component.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    for port in component.ports:
        if port_in_use(config.host, port):
            reason = f"port {config.host}:{port} is already in use by another process"
            with log.open("a") as out:
                out.write(f"\n=== not started: {reason}\n")
            raise failure(component.name, reason, log)
    if component.cwd is not None:
        component.cwd.mkdir(parents=True, exist_ok=True)
    if component.prepare is not None:
        component.prepare()
    try:
        pid = spawn(component.command, log, process_env(component.env), cwd=component.cwd)
    except OSError as exc:
        reason = f"could not start {component.command[0]}: {exc}"
        raise failure(component.name, reason, log) from exc
    write_pid_file(_pid_file(config, component.name), pid, component.fingerprint)
    return pid


def _status_of(component: Component, pid: int, healthy: bool, detail: str) -> ComponentStatus:
    return ComponentStatus(
        name=component.name, healthy=healthy, url=component.url, pid=pid, detail=detail
    )


def up(
    config: StackConfig,
    progress: Progress = _quiet,
    components: Collection[str] | None = None,
) -> list[ComponentStatus]:
    """Install what is missing, then start every server that is not already running healthy.

    Servers start as soon as the ones they need are healthy, so independent ones boot in
    parallel. A server found running is left alone. On a failure the other servers stay up
    and a StackError names the failed one, with the tail of its log.
    `components` limits the start to these servers (and the ones they need).
    """
    selected = stack_components(config)
    if components is not None:
        selected = _with_dependencies(selected, components)
    install(config, progress, {INSTALLED_BY[component.name] for component in selected})
    # One `up` or `down` at a time per stack.
    with file_lock(config.run_dir / ".lock"):
        return _bring_up(config, selected, progress)


def _bring_up(
    config: StackConfig, selected: list[Component], progress: Progress
) -> list[ComponentStatus]:
    healthy: dict[str, ComponentStatus] = {}
    waiting: dict[str, _Launch] = {}
    for component in selected:
        record = _running(config, component.name)
        if record is None:
            continue
        if record.fingerprint not in (None, component.fingerprint):
            raise failure(
                component.name,
                f"it runs (pid {record.pid}) with other settings than this configuration "
                "(ports, model, mode...); stop the stack with `loopline stack down` first",
                log_path(config, component.name),
            )
        if component.check():
            healthy[component.name] = _status_of(component, record.pid, True, "already running")
        else:
            waiting[component.name] = _Launch(component, time.monotonic(), pid=record.pid)

    # Starts run in threads, so that one server's slow preparation (e.g. Argilla's database
    # migration) does not hold up the others; the loop below only watches.
    with ThreadPoolExecutor(max_workers=len(selected), thread_name_prefix="stack-up") as pool:
        while len(healthy) < len(selected):
            for component in selected:
                name = component.name
                if name in healthy or name in waiting:
                    continue
                if all(dependency in healthy for dependency in component.after):
                    progress(f"starting {name}: {component.purpose}")
                    starting = pool.submit(_start, config, component)
                    waiting[name] = _Launch(component, time.monotonic(), starting=starting)
            for name, launch in list(waiting.items()):
                if _poll(config, launch, progress):
                    healthy[name] = _status_of(launch.component, launch.pid or 0, True, "started")
                    del waiting[name]
            if len(healthy) < len(selected):
                time.sleep(POLL_INTERVAL_S)
    return [healthy[component.name] for component in selected]


def _poll(config: StackConfig, launch: _Launch, progress: Progress) -> bool:
    """True once the server is healthy; raises StackError if it died or took too long."""
    component = launch.component
    log = log_path(config, component.name)
    too_late = time.monotonic() - launch.began > config.start_timeout_s
    if not launch.started():
        if too_late:
            raise failure(component.name, "its preparation did not finish in time", log)
        return False
    record = read_pid_file(_pid_file(config, component.name))
    alive = record is not None and record.pid == launch.pid and record.alive()
    if alive and component.check():
        elapsed = time.monotonic() - launch.began
        progress(f"{component.name} is up at {component.url} ({elapsed:.1f}s)")
        return True
    if not alive:
        raise failure(component.name, "the process exited before it became healthy", log)
    if too_late:
        raise failure(
            component.name,
            f"not healthy after {config.start_timeout_s:.0f}s (pid {launch.pid} still runs; "
            "`loopline stack down` stops it)",
            log,
        )
    return False


def down(config: StackConfig) -> list[str]:
    """Stop every server that has a pid file (whole process groups); the names stopped."""
    if not config.run_dir.is_dir():
        return []
    with file_lock(config.run_dir / ".lock"):
        return _stop_all(config)


def _stop_all(config: StackConfig) -> list[str]:
    records: dict[str, PidRecord] = {}
    for path in sorted(config.run_dir.glob("*.pid")):
        record = read_pid_file(path)
        if record is not None and owns_group(record):
            records[path.stem] = record
        else:
            path.unlink(missing_ok=True)
    first = {name: record for name, record in records.items() if name not in _STOP_LAST}
    last = {name: record for name, record in records.items() if name in _STOP_LAST}
    for wave in (first, last):
        stop_groups(wave.values(), config.stop_timeout_s)
        for name in wave:
            _pid_file(config, name).unlink(missing_ok=True)
    return [*first, *last]


def status(config: StackConfig) -> list[ComponentStatus]:
    """For each server of this configuration: its pid if it runs, and whether it is healthy."""
    return [_inspect(config, component) for component in stack_components(config)]


def _inspect(config: StackConfig, component: Component) -> ComponentStatus:
    record = read_pid_file(_pid_file(config, component.name))
    if record is None or not record.alive():
        detail = "not running" if record is None else f"not running (stale pid {record.pid})"
        return ComponentStatus(
            name=component.name, healthy=False, url=component.url, pid=None, detail=detail
        )
    if component.check():
        return _status_of(component, record.pid, True, "running")
    if record.fingerprint not in (None, component.fingerprint):
        return _status_of(component, record.pid, False, "running with other settings")
    return _status_of(component, record.pid, False, "running, not answering")
