"""Strict schema checks of rendered Kubernetes documents, offline.

Core kinds: kubernetes-validate's strict schemas (an unknown field fails), for pinned Kubernetes
versions. KEDA's ScaledObject and TriggerAuthentication: no schema ships offline, so the pydantic
models of
cloudcoil-models-keda check types and required fields, and since those models ignore keys they
do not define, `unknown_keys` fails on any key the model dropped; the kafka trigger's metadata
(a free string map in the CRD) is checked against the keys KEDA's Kafka scaler documents.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pydantic
from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication

from tests.unit.deploy.k8s_render import Doc

# The oldest Kubernetes the manifests claim (the native preStop `sleep` action is on by default
# from 1.30) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30", "1.37")
KEDA_API = "keda.sh/v1alpha1"
KEDA_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "ScaledObject": ScaledObject,
    "TriggerAuthentication": TriggerAuthentication,
}

# The Kafka scaler's trigger metadata (keda.sh/docs/2.16/scalers/apache-kafka).
KAFKA_TRIGGER_KEYS = frozenset(
    {
        "bootstrapServers",
        "bootstrapServersFromEnv",
        "consumerGroup",
        "consumerGroupFromEnv",
        "topic",
        "topicFromEnv",
        "lagThreshold",
        "activationLagThreshold",
        "offsetResetPolicy",
        "allowIdleConsumers",
        "scaleToZeroOnInvalidOffset",
        "excludePersistentLag",
        "limitToPartitionsWithLag",
        "version",
        "partitionLimitation",
        "sasl",
        "tls",
        "unsafeSsl",
    }
)
KAFKA_TRIGGER_REQUIRED = frozenset({"bootstrapServers", "consumerGroup", "topic"})


def kind_of(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def core_schema_problems(docs: list[Doc], version: str) -> list[str]:
    """Every document but KEDA's against the strict schema of its kind."""
    problems = []
    for doc in docs:
        if str(doc.get("apiVersion", "")).startswith("keda.sh/"):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{kind_of(doc)}: {exc.message} at {list(exc.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{kind_of(doc)}: no schema for {doc.get('apiVersion')} in {version}")
    return problems


def unknown_keys(given: Any, kept: Any, path: str = "") -> list[str]:
    """Where `given` has a key that `kept` (the model's own dump of it) lacks, or a value the
    model changed."""
    if isinstance(given, dict) and isinstance(kept, dict):
        found = [f"{path}.{key}" for key in given if key not in kept]
        for key in given.keys() & kept.keys():
            found += unknown_keys(given[key], kept[key], f"{path}.{key}")
        return found
    if isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        return [
            p
            for i, (g, k) in enumerate(zip(given, kept, strict=True))
            for p in unknown_keys(g, k, f"{path}[{i}]")
        ]
    return [] if given == kept else [f"{path}: {given!r} read as {kept!r}"]


def keda_problems(docs: list[Doc]) -> list[str]:
    """Every KEDA document against KEDA's models, strictly, and the ScaledObjects' kafka
    triggers' metadata."""
    problems = []
    for doc in docs:
        if not str(doc.get("apiVersion", "")).startswith("keda.sh/"):
            continue
        model_of = KEDA_MODELS.get(str(doc.get("kind")))
        if model_of is None or doc.get("apiVersion") != KEDA_API:
            problems.append(f"{kind_of(doc)}: no model for {doc.get('apiVersion')} here")
            continue
        try:
            model = model_of.model_validate(doc)
        except pydantic.ValidationError as exc:
            problems.append(f"{kind_of(doc)}: {exc}")
            continue
        kept = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
        problems += [f"{kind_of(doc)}: unknown or changed {p}" for p in unknown_keys(doc, kept)]
        if doc["kind"] == "ScaledObject":
            problems += _trigger_problems(doc)
    return problems


def _trigger_problems(doc: Doc) -> list[str]:
    problems = []
    for trigger in doc["spec"]["triggers"]:
        if trigger["type"] != "kafka":
            problems.append(f"{kind_of(doc)}: a {trigger['type']!r} trigger, not kafka")
            continue
        keys = set(trigger["metadata"])
        problems += [f"{kind_of(doc)}: kafka trigger key {k!r}" for k in keys - KAFKA_TRIGGER_KEYS]
        problems += [
            f"{kind_of(doc)}: kafka trigger lacks {k!r}" for k in KAFKA_TRIGGER_REQUIRED - keys
        ]
    return problems
