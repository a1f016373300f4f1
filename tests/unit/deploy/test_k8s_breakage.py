"""Each check of test_k8s.py catches what it is for: a render broken in one place (as an edit of
deploy/k8s would break it) makes that check report it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.feedback_collector.webhooks import WEBHOOK_PATH
from shared.flows import FlowFileError, load_flows
from tests.unit.deploy.k8s_render import (
    OPERATOR_SECRET,
    Doc,
    documented_secret_keys,
    of_kind,
    render,
)
from tests.unit.deploy.k8s_schemas import core_schema_problems, keda_problems
from tests.unit.deploy.k8s_wiring import (
    exporter_problems,
    kafka_trigger_problems,
    listener_problems,
    probe_problems,
    public_url_problems,
    reference_problems,
    scale_target_problems,
    security_problems,
    selector_problems,
)
from tests.unit.deploy.test_k8s import materialize_flows


def find(docs: list[Doc], kind: str, base_name: str) -> Doc:
    """The rendered document of a base name (under the overlay's prefix and hash suffix)."""
    for doc in docs:
        name = doc["metadata"]["name"]
        if doc["kind"] == kind and (name.endswith(f"-{base_name}") or f"-{base_name}-" in name):
            return doc
    raise LookupError(f"{kind} {base_name}")


def container(docs: list[Doc], kind: str, name: str) -> dict[str, Any]:
    return find(docs, kind, name)["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def setting(docs: list[Doc], key: str, value: str) -> None:
    find(docs, "ConfigMap", "settings")["data"][key] = value


def trigger_of(docs: list[Doc], name: str) -> dict[str, Any]:
    return find(docs, "ScaledObject", name)["spec"]["triggers"][0]  # type: ignore[no-any-return]


def env_ref(docs: list[Doc], kind: str, name: str, var: str) -> dict[str, Any]:
    env = container(docs, kind, name)["env"]
    return next(v for v in env if v["name"] == var)["valueFrom"]["secretKeyRef"]  # type: ignore[no-any-return]


def trigger(docs: list[Doc], name: str) -> dict[str, Any]:
    return trigger_of(docs, name)["metadata"]  # type: ignore[no-any-return]


def wiring(docs: list[Doc]) -> list[str]:
    return [
        *scale_target_problems(docs),
        *kafka_trigger_problems(docs),
        *probe_problems(docs),
        *reference_problems(docs, {OPERATOR_SECRET: documented_secret_keys()}),
        *selector_problems(docs),
        *listener_problems(docs, "ingester", "ingest"),
        *listener_problems(docs, "feedback-collector", "feedback"),
        *public_url_problems(docs, WEBHOOK_PATH),
        *exporter_problems(docs),
        *security_problems(docs),
    ]


def schemas(docs: list[Doc]) -> list[str]:
    """The schema checks on the kinds these breakages touch (all of them take seconds)."""
    return core_schema_problems(of_kind(docs, "Deployment"), "1.37") + keda_problems(docs)


@dataclass(frozen=True)
class Breakage:
    what: str
    overlay: str
    breaks: Callable[[list[Doc]], object]
    expect: str
    check: Callable[[list[Doc]], list[str]] = wiring


def put(target: dict[str, Any], key: str, value: object) -> None:
    target[key] = value


BREAKAGES = [
    Breakage(
        "an unknown container field",
        "production",
        lambda d: put(container(d, "Deployment", "judge"), "healthPort", 8000),
        "'healthPort' was unexpected",
        schemas,
    ),
    Breakage(
        "an unknown ScaledObject key",
        "production",
        lambda d: put(find(d, "ScaledObject", "judge")["spec"], "maxReplicas", 4),
        "unknown or changed .spec.maxReplicas",
        schemas,
    ),
    Breakage(
        "a misspelt kafka trigger key",
        "local",
        lambda d: put(trigger(d, "judge"), "lagThresold", "5"),
        "kafka trigger key 'lagThresold'",
        schemas,
    ),
    Breakage(
        "a ScaledObject field of the wrong type",
        "local",
        lambda d: put(find(d, "ScaledObject", "judge")["spec"], "maxReplicaCount", "many"),
        "maxReplicaCount",
        schemas,
    ),
    Breakage(
        "a scale target left unprefixed (no nameReference)",
        "production",
        lambda d: put(
            find(d, "ScaledObject", "generator")["spec"]["scaleTargetRef"], "name", "generator"
        ),
        "scales apps/v1 Deployment 'generator'",
    ),
    Breakage(
        "the generator scaled on the judge's topic",
        "production",
        lambda d: put(trigger(d, "generator"), "topic", "records.generated"),
        "topic 'records.generated', generator uses 'records.ingested'",
    ),
    Breakage(
        "a group prefix the triggers did not follow",
        "local",
        lambda d: setting(d, "LOOPLINE_KAFKA__GROUP_PREFIX", "team-a"),
        "consumerGroup 'loopline-judge', judge uses 'team-a-judge'",
    ),
    Breakage(
        "a topic prefix the triggers did not follow",
        "production",
        lambda d: setting(d, "LOOPLINE_KAFKA__TOPIC_PREFIX", "team-a."),
        "uses 'team-a.records.judged'",
    ),
    Breakage(
        "triggers on another Kafka",
        "production",
        lambda d: setting(d, "LOOPLINE_KAFKA__BOOTSTRAP_SERVERS", "kafka-2:9092"),
        "bootstrapServers",
    ),
    Breakage(
        "more replicas than partitions",
        "production",
        lambda d: put(find(d, "ScaledObject", "judge")["spec"], "maxReplicaCount", 24),
        "topics have 12 partitions",
    ),
    Breakage(
        "KEDA's default offset policy",
        "local",
        lambda d: put(trigger(d, "judge"), "offsetResetPolicy", "latest"),
        "offsetResetPolicy 'latest'",
    ),
    Breakage(
        "a probe on an undeclared port",
        "production",
        lambda d: put(
            container(d, "Deployment", "judge")["livenessProbe"]["httpGet"], "port", "metrics"
        ),
        "livenessProbe asks port 'metrics'",
    ),
    Breakage(
        "a health port the service is not told",
        "local",
        lambda d: put(
            container(d, "StatefulSet", "exporter"),
            "args",
            ["run", "exporter", "--health-port", "9000"],
        ),
        "--health-port 9000",
    ),
    Breakage(
        "health on loopback",
        "production",
        lambda d: setting(d, "LOOPLINE_HEALTH_HOST", "127.0.0.1"),
        "the health port listens on loopback only",
    ),
    Breakage(
        "a key the local Secret lacks",
        "local",
        lambda d: put(env_ref(d, "Deployment", "judge", "LOOPLINE_LLM__API_KEY"), "key", "LLM_KEY"),
        "has no key LLM_KEY",
    ),
    Breakage(
        "an undocumented key of the operator's Secret",
        "production",
        lambda d: put(env_ref(d, "Deployment", "judge", "LOOPLINE_LLM__API_KEY"), "key", "LLM_KEY"),
        "key LLM_KEY of Secret loopline-secrets is not documented",
    ),
    Breakage(
        "a required key asked for as optional",
        "production",
        lambda d: put(env_ref(d, "Deployment", "judge", "LOOPLINE_LLM__API_KEY"), "optional", True),
        "LOOPLINE_LLM__API_KEY is documented",
    ),
    Breakage(
        "a Secret nobody provides",
        "production",
        lambda d: put(env_ref(d, "Deployment", "judge", "LOOPLINE_LLM__API_KEY"), "name", "llm"),
        "Secret llm is neither rendered nor documented",
    ),
    Breakage(
        "a ConfigMap not rendered",
        "local",
        lambda d: put(
            container(d, "Deployment", "judge")["envFrom"][0]["configMapRef"], "name", "settings"
        ),
        "envFrom ConfigMap settings",
    ),
    Breakage(
        "a Service selecting nothing",
        "production",
        lambda d: put(
            find(d, "Service", "ingester")["spec"]["selector"], "app.kubernetes.io/component", "api"
        ),
        "Service/loopline-ingester selects no workload's pods",
    ),
    Breakage(
        "a PodDisruptionBudget selecting nothing",
        "local",
        lambda d: put(
            find(d, "PodDisruptionBudget", "judge")["spec"]["selector"]["matchLabels"],
            "app.kubernetes.io/component",
            "judges",
        ),
        "PodDisruptionBudget/local-judge selects no workload's pods",
    ),
    Breakage(
        "a PodDisruptionBudget that blocks every drain",
        "production",
        lambda d: put(find(d, "PodDisruptionBudget", "ingester")["spec"], "minAvailable", 3),
        "lets no pod of Deployment/loopline-ingester be evicted",
    ),
    Breakage(
        "the exporter without its governing Service",
        "production",
        lambda d: put(find(d, "StatefulSet", "exporter")["spec"], "serviceName", "exports"),
        "no headless Service exports",
    ),
    Breakage(
        "the ingester's API on loopback",
        "local",
        lambda d: setting(d, "LOOPLINE_INGEST__HOST", "127.0.0.1"),
        "ingester listens on 127.0.0.1",
    ),
    Breakage(
        "a public URL naming the base Service",
        "production",
        lambda d: setting(
            d, "LOOPLINE_FEEDBACK__PUBLIC_URL", "http://feedback-collector:8200/argilla/webhooks"
        ),
        "no such Service",
    ),
    Breakage(
        "a public URL on the metrics port",
        "local",
        lambda d: setting(
            d,
            "LOOPLINE_FEEDBACK__PUBLIC_URL",
            "http://local-feedback-collector.loopline.svc:8000/argilla/webhooks",
        ),
        "not the collector's 8200",
    ),
    Breakage(
        "two exporters",
        "production",
        lambda d: put(find(d, "StatefulSet", "exporter")["spec"], "replicas", 2),
        "not 1 replica",
    ),
    Breakage(
        "exports off the volume",
        "local",
        lambda d: setting(d, "LOOPLINE_EXPORT__STORE_DIR", "/tmp/stores"),
        "its record stores /tmp/stores is not on its volume",
    ),
    Breakage(
        "a writable root filesystem",
        "production",
        lambda d: put(
            container(d, "Deployment", "generator")["securityContext"],
            "readOnlyRootFilesystem",
            False,
        ),
        "Deployment/loopline-generator: writable root filesystem",
    ),
    Breakage(
        "Kafka asks for SASL but the triggers log in as nobody (no kafka-sasl component)",
        "production",
        lambda d: setting(d, "LOOPLINE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL"),
        "sasl 'none', the service's Kafka wants 'plaintext'",
    ),
    Breakage(
        "the services' SASL mechanism changed and KEDA's not",
        "production-kafka-sasl",
        lambda d: setting(d, "LOOPLINE_KAFKA__SASL_MECHANISM", "SCRAM-SHA-256"),
        "sasl 'scram_sha512', the service's Kafka wants 'scram_sha256'",
    ),
    Breakage(
        "a trigger without its TriggerAuthentication",
        "production-kafka-sasl",
        lambda d: trigger_of(d, "judge").pop("authenticationRef"),
        "SASL, but no TriggerAuthentication None",
    ),
    Breakage(
        "the trigger's password from another Secret key",
        "production-kafka-sasl",
        lambda d: put(
            find(d, "TriggerAuthentication", "kafka-sasl")["spec"]["secretTargetRef"][1],
            "key",
            "KAFKA_PASSWORD",
        ),
        "password from ('loopline-secrets', 'KAFKA_PASSWORD')",
    ),
    Breakage(
        "an unknown TriggerAuthentication key",
        "production-kafka-sasl",
        lambda d: put(find(d, "TriggerAuthentication", "kafka-sasl")["spec"], "secrets", []),
        "unknown or changed .spec.secrets",
        schemas,
    ),
    Breakage(
        "no memory limit",
        "local",
        lambda d: container(d, "Deployment", "judge")["resources"]["limits"].pop("memory"),
        "Deployment/local-judge: no memory limit",
    ),
]


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda b: b.what)
def test_a_broken_render_is_caught(breakage: Breakage) -> None:
    docs = render(breakage.overlay)
    assert breakage.check(docs) == []
    breakage.breaks(docs)
    problems = breakage.check(docs)
    assert any(breakage.expect in problem for problem in problems), problems


def test_a_flow_without_its_sample_does_not_load(tmp_path: Path) -> None:
    docs = render("production")
    judge = find(docs, "Deployment", "judge")
    volumes = judge["spec"]["template"]["spec"]["volumes"]
    samples = next(v for v in volumes if v["name"] == "flows")["projected"]["sources"][1]
    samples["configMap"]["items"].pop()
    with pytest.raises(FlowFileError, match=r"sample\.path: no such file"):
        load_flows(materialize_flows(docs, judge, tmp_path))
