"""The layout's rules, read from the source: who may import whom, and how long a file may be.

* a service imports no other service, and neither the CLI nor the local stack;
* `shared/` (the kernel) imports no service, no CLI and no local stack;
* `devstack/` (a development tool) imports only the kernel, never a service or the CLI;
* the app client (`clients/python`) imports only the standard library and httpx;
* benchmarks import no tests; no Python file, tests included, is over 500 lines.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 500
SOURCE_DIRS = ("shared", "services", "cli", "devstack", "clients", "benchmarks")
LENGTH_CHECKED_DIRS = (*SOURCE_DIRS, "tests")


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, wherever in the file (functions included)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def violations(paths: list[Path], allowed: object) -> list[str]:
    bad = []
    for path in paths:
        for module in sorted(imported_modules(path)):
            if not allowed(path, module):  # type: ignore[operator]
                bad.append(f"{path.relative_to(REPO)} imports {module}")
    return bad


def test_a_service_imports_no_other_service_nor_the_cli_or_local_stack() -> None:
    def allowed(path: Path, module: str) -> bool:
        own = path.relative_to(REPO / "services").parts[0]
        if top(module) in ("cli", "devstack", "tests", "benchmarks"):
            return False
        parts = module.split(".")
        return not (parts[0] == "services" and len(parts) > 1 and parts[1] != own)

    assert violations(python_files("services"), allowed) == []


def test_the_kernel_imports_no_service_cli_or_local_stack() -> None:
    def allowed(path: Path, module: str) -> bool:
        return top(module) not in ("services", "cli", "devstack", "tests", "benchmarks")

    assert violations(python_files("shared"), allowed) == []


def test_the_local_stack_imports_only_the_kernel() -> None:
    def allowed(path: Path, module: str) -> bool:
        return top(module) not in ("services", "cli", "tests", "benchmarks")

    assert violations(python_files("devstack"), allowed) == []


def test_the_app_client_needs_only_the_standard_library_and_httpx() -> None:
    def allowed(path: Path, module: str) -> bool:
        name = top(module)
        return name in sys.stdlib_module_names or name in ("httpx", "loopline", "__future__")

    assert violations(python_files("clients"), allowed) == []


def test_benchmarks_import_no_tests() -> None:
    def allowed(path: Path, module: str) -> bool:
        return top(module) != "tests"

    assert violations(python_files("benchmarks"), allowed) == []


@pytest.mark.parametrize("folder", LENGTH_CHECKED_DIRS)
def test_no_python_file_is_over_500_lines(folder: str) -> None:
    long = {
        str(p.relative_to(REPO)): n
        for p in python_files(folder)
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_rules_see_the_code() -> None:
    """A check that reads nothing passes vacuously: each folder has files, and imports are read."""
    for folder in ("shared", "services", "cli", "devstack", "clients", "tests"):
        assert python_files(folder), folder
    assert "shared.events" in imported_modules(REPO / "services" / "judge" / "app.py")
