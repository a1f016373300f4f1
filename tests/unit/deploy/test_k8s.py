"""deploy/k8s: every overlay renders offline with kustomize, passes strict schemas (core kinds
and KEDA's ScaledObjects) and is wired right: what scales, probes, references, selectors,
listeners, the collector's public URL, the exporter's volume, the flows the pods see.
test_k8s_breakage.py shows that each check catches what it is for."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cli.run import SERVICES
from services.feedback_collector.webhooks import WEBHOOK_PATH
from shared.deployment_checks import service_problems
from shared.flows import load_flows
from shared.settings import Settings
from tests.unit.deploy.k8s_render import (
    K8S,
    OPERATOR_SECRET,
    OVERLAYS,
    REPO,
    Doc,
    container_env,
    containers,
    documented_secret_keys,
    environment,
    named,
    of_kind,
    render,
    secret_data,
    service_of,
    settings_of,
    workloads,
)
from tests.unit.deploy.k8s_schemas import (
    KUBERNETES_VERSIONS,
    core_schema_problems,
    keda_problems,
)
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

SCALED_SERVICES = {"generator", "judge", "argilla-publisher"}


def operator_secrets() -> dict[str, dict[str, bool]]:
    return {OPERATOR_SECRET: documented_secret_keys()}


@pytest.fixture(params=OVERLAYS)
def docs(request: pytest.FixtureRequest) -> list[Doc]:
    return render(request.param)


def test_every_overlay_runs_each_service_once_and_scales_the_three_stages(docs: list[Doc]) -> None:
    assert sorted(service_of(w) for w in workloads(docs)) == sorted(SERVICES)
    assert of_kind(docs, "StatefulSet") == [
        w for w in workloads(docs) if service_of(w) == "exporter"
    ]
    targets = {
        service_of(named(docs, "Deployment", s["spec"]["scaleTargetRef"]["name"]) or {})
        for s in of_kind(docs, "ScaledObject")
    }
    assert targets == SCALED_SERVICES
    assert len(of_kind(docs, "PodDisruptionBudget")) == len(SERVICES)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_kinds_pass_the_strict_schemas(docs: list[Doc], version: str) -> None:
    assert core_schema_problems(docs, version) == []


def test_scaled_objects_pass_kedas_models_with_no_unknown_key(docs: list[Doc]) -> None:
    assert keda_problems(docs) == []


def test_each_scaled_object_scales_a_rendered_deployment_under_the_name_prefix(
    docs: list[Doc],
) -> None:
    assert scale_target_problems(docs) == []
    for scaled in of_kind(docs, "ScaledObject"):
        # The overlay's prefix reached the reference (kustomizeconfig.yaml's nameReference).
        prefix = scaled["metadata"]["name"].removesuffix(
            scaled["metadata"]["labels"]["app.kubernetes.io/component"]
        )
        assert prefix and scaled["spec"]["scaleTargetRef"]["name"].startswith(prefix)


def test_kafka_triggers_watch_the_group_and_topic_each_service_uses(docs: list[Doc]) -> None:
    assert kafka_trigger_problems(docs) == []


def test_probes_ask_the_health_port_the_service_serves(docs: list[Doc]) -> None:
    assert probe_problems(docs) == []


def test_every_config_map_and_secret_reference_resolves(docs: list[Doc]) -> None:
    assert reference_problems(docs, operator_secrets()) == []


def test_services_and_disruption_budgets_select_rendered_workloads(docs: list[Doc]) -> None:
    assert selector_problems(docs) == []


def test_the_http_listeners_are_reachable_from_their_services(docs: list[Doc]) -> None:
    assert listener_problems(docs, "ingester", "ingest") == []
    assert listener_problems(docs, "feedback-collector", "feedback") == []


def test_argilla_posts_its_webhooks_to_the_collectors_service(docs: list[Doc]) -> None:
    assert public_url_problems(docs, WEBHOOK_PATH) == []


def test_the_exporter_is_one_replica_writing_on_its_own_volume(docs: list[Doc]) -> None:
    assert exporter_problems(docs) == []


def test_containers_run_unprivileged_with_bounded_resources(docs: list[Doc]) -> None:
    assert security_problems(docs) == []


def materialize_flows(docs: list[Doc], workload: Doc, into: Path) -> Path:
    """The flows volume of a workload's pods, as the kubelet lays it out: every key of a
    ConfigMap at the top, or only its items at their paths."""
    pod = workload["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "flows")
    for source in volume["projected"]["sources"]:
        config = named(docs, "ConfigMap", source["configMap"]["name"])
        assert config is not None
        items = source["configMap"].get("items") or [{"key": k, "path": k} for k in config["data"]]
        for item in items:
            path = into / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(config["data"][item["key"]])
    return into


def test_the_pods_see_every_shipped_flow_with_its_sample(docs: list[Doc], tmp_path: Path) -> None:
    shipped = load_flows(REPO / "flows")
    for workload in workloads(docs):
        mount = workload["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        assert {"name": "flows", "mountPath": "/etc/loopline/flows", "readOnly": True} in mount
        assert settings_of(docs, workload).flows_file == Path("/etc/loopline/flows")
        seen = load_flows(materialize_flows(docs, workload, tmp_path / service_of(workload)))
        assert sorted(seen.flows) == sorted(shipped.flows)
        for name, flow in seen.flows.items():
            assert (flow.sample is None) == (shipped.flows[name].sample is None)


def test_production_renders_no_secret_and_names_every_documented_key() -> None:
    docs = render("production")
    assert of_kind(docs, "Secret") == []  # the operator creates it: no value is in the repo
    referenced = {
        var["valueFrom"]["secretKeyRef"]["key"]
        for w in workloads(docs)
        for var in w["spec"]["template"]["spec"]["containers"][0].get("env", [])
        if "secretKeyRef" in var.get("valueFrom", {})
    }
    assert referenced == set(documented_secret_keys())


def test_the_local_secret_comes_from_an_uncommitted_file_with_every_required_key() -> None:
    docs = render("local")
    (secret,) = of_kind(docs, "Secret")
    required = {k for k, needed in documented_secret_keys().items() if needed}
    assert required <= set(secret_data(secret))
    git = shutil.which("git")
    assert git is not None
    ignored = subprocess.run(
        [git, "check-ignore", "-q", str(K8S / "overlays" / "local" / "secrets.env")], cwd=REPO
    )
    assert ignored.returncode == 0, "secrets.env must stay out of git"


# What an operator puts in the Secret (none of them a well-known value).
STAND_INS = {
    "LOOPLINE_ARGILLA__API_KEY": "k8s-test-argilla-key",
    "LOOPLINE_LLM__API_KEY": "k8s-test-llm-key",
    "LOOPLINE_INGEST__API_KEYS": '[{"name": "k8s-test", "key": "k8s-test-client-key"}]',
}


def startup_problems(docs: list[Doc], stand_ins: dict[str, str]) -> dict[str, list[str]]:
    """What each service's startup checks (`loopline run`) say of the environment its pods
    get, with `stand_ins` for the required Secret keys."""
    problems = {}
    for workload in workloads(docs):
        container = containers(workload)[0]
        env = container_env(docs, container)
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional") and ref["key"] in stand_ins:
                env[var["name"]] = stand_ins[ref["key"]]
        with environment(env):
            problems[service_of(workload)] = service_problems(service_of(workload), Settings())
    return problems


def test_every_service_passes_its_startup_checks_once_the_secret_is_filled_in(
    docs: list[Doc],
) -> None:
    assert startup_problems(docs, STAND_INS) == {service: [] for service in SERVICES}


def test_the_local_secret_example_does_not_start_unedited() -> None:
    refused = startup_problems(render("local"), stand_ins={})
    assert {service for service, problems in refused.items() if problems} == {
        "argilla-publisher",
        "feedback-collector",
        "ingester",
    }
    assert "LOOPLINE_ARGILLA__API_KEY" in refused["feedback-collector"][0]
    assert "LOOPLINE_INGEST__API_KEYS" in refused["ingester"][0]
