"""Loading a benchmark's module by its path (the benchmarks folder is not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[3]


def load(relative: str) -> ModuleType:
    """The module at `benchmarks/<relative>`, imported under a name of its own."""
    path = REPO / "benchmarks" / relative
    name = "bench_" + relative.removesuffix(".py").replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module
