"""Wiring checks of a rendered overlay: each returns what is wrong (empty when all is well), so a
test can also show that a broken render is caught.

The Kafka facts (consumer groups, topics, partitions) come from the services themselves (their
`ServiceSpec`) and from the settings each workload starts with, never from literals here.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, cast
from urllib.parse import urlsplit

from cli.run import load_service
from shared.service import ServiceContext
from tests.unit.deploy.k8s_render import (
    Doc,
    containers,
    named,
    of_kind,
    secret_data,
    service_of,
    settings_of,
    workloads,
)

ANY_INTERFACE = "0.0.0.0"


def name_of(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def group_id(service: str, docs: list[Doc], workload: Doc) -> str:
    """The consumer group the service joins, as the service runner names it."""
    # Only `name` and `settings` make the group id; the rest is not needed to ask for it.
    context = ServiceContext(
        name=service,
        settings=settings_of(docs, workload),
        flows=cast(Any, None),
        broker=cast(Any, None),
        dead_letters=cast(Any, None),
    )
    return context.group_id


def scale_target_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for scaled in of_kind(docs, "ScaledObject"):
        ref = scaled["spec"]["scaleTargetRef"]
        kind, api = ref.get("kind", "Deployment"), ref.get("apiVersion", "apps/v1")
        if (kind, api) != ("Deployment", "apps/v1") or named(docs, kind, ref["name"]) is None:
            problems.append(f"{name_of(scaled)} scales {api} {kind} {ref['name']!r}: not rendered")
    return problems


def kafka_trigger_problems(docs: list[Doc]) -> list[str]:
    """Each ScaledObject watches the group and topic its target's service really uses, on the
    Kafka that service reads, with no more replicas than the topic has partitions."""
    problems = []
    for scaled in of_kind(docs, "ScaledObject"):
        target = named(docs, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
        if target is None:
            continue  # scale_target_problems says so
        service = service_of(target)
        settings = settings_of(docs, target)
        consumes = load_service(service).consumes
        meta = scaled["spec"]["triggers"][0]["metadata"]
        wanted = {
            "bootstrapServers": settings.kafka.bootstrap_servers,
            "consumerGroup": group_id(service, docs, target),
            "topic": settings.kafka.topic(consumes[0]) if len(consumes) == 1 else consumes,
            "offsetResetPolicy": settings.kafka.auto_offset_reset,
        }
        for key, value in wanted.items():
            if meta.get(key) != value:
                problems.append(
                    f"{name_of(scaled)}: {key} {meta.get(key)!r}, {service} uses {value!r}"
                )
        top = scaled["spec"].get("maxReplicaCount", 100)  # KEDA's default
        if (
            not 1
            <= scaled["spec"].get("minReplicaCount", 0)
            <= top
            <= settings.kafka.topic_partitions
        ):
            problems.append(
                f"{name_of(scaled)}: replicas {scaled['spec'].get('minReplicaCount')}..{top}, "
                f"topics have {settings.kafka.topic_partitions} partitions"
            )
        problems += trigger_login_problems(docs, scaled, target)
    return problems


# KEDA's Kafka scaler spells the SASL mechanisms its own way.
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


def trigger_login_problems(docs: list[Doc], scaled: Doc, target: Doc) -> list[str]:
    """The trigger reaches Kafka as the service does: the same SASL mechanism and TLS, and a
    TriggerAuthentication giving it the user and password the service reads (same Secret keys)."""
    kafka = settings_of(docs, target).kafka
    trigger = scaled["spec"]["triggers"][0]
    meta = trigger["metadata"]
    sasl = kafka.security_protocol.startswith("SASL")
    wanted = {
        "sasl": KEDA_SASL[kafka.sasl_mechanism or "PLAIN"] if sasl else "none",
        "tls": "enable" if kafka.security_protocol.endswith("SSL") else "disable",
    }
    found = {"sasl": meta.get("sasl", "none"), "tls": meta.get("tls", "disable")}
    problems = [
        f"{name_of(scaled)}: {key} {found[key]!r}, the service's Kafka wants {value!r}"
        for key, value in wanted.items()
        if found[key] != value
    ]
    if not sasl:
        return problems
    ref = (trigger.get("authenticationRef") or {}).get("name")
    auth = named(docs, "TriggerAuthentication", ref) if ref else None
    if auth is None:
        return [*problems, f"{name_of(scaled)}: SASL, but no TriggerAuthentication {ref!r}"]
    given = {t["parameter"]: (t["name"], t["key"]) for t in auth["spec"]["secretTargetRef"]}
    env = {v["name"]: v.get("valueFrom", {}) for v in containers(target)[0].get("env", [])}
    for parameter, variable in (
        ("username", "LOOPLINE_KAFKA__SASL_USERNAME"),
        ("password", "LOOPLINE_KAFKA__SASL_PASSWORD"),
    ):
        ref_of = env.get(variable, {}).get("secretKeyRef", {})
        if given.get(parameter) != (ref_of.get("name"), ref_of.get("key")):
            problems.append(
                f"{name_of(auth)}: {parameter} from {given.get(parameter)}, the service's "
                f"{variable} from {(ref_of.get('name'), ref_of.get('key'))}"
            )
    return problems


def port_numbers(container: Doc) -> dict[str, int]:
    return {
        p.get("name", str(p["containerPort"])): p["containerPort"]
        for p in container.get("ports", [])
    }


def probe_problems(docs: list[Doc]) -> list[str]:
    """Every probe asks a declared container port; the health port is the one the service is
    told to serve (`--health-port`) on every interface."""
    problems = []
    for workload in workloads(docs):
        for container in containers(workload):
            ports = port_numbers(container)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe not in container:
                    problems.append(f"{name_of(workload)}: no {probe}")
                    continue
                port = container[probe]["httpGet"]["port"]
                if port not in ports and port not in ports.values():
                    problems.append(
                        f"{name_of(workload)}: {probe} asks port {port!r}, not declared"
                    )
            args = container.get("args", [])
            given = args[args.index("--health-port") + 1] if "--health-port" in args else None
            if given is None or int(given) != ports.get("health"):
                problems.append(
                    f"{name_of(workload)}: --health-port {given}, health port {ports.get('health')}"
                )
            if settings_of(docs, workload).health_host != ANY_INTERFACE:
                problems.append(f"{name_of(workload)}: the health port listens on loopback only")
    return problems


def volume_config_maps(pod: Doc) -> list[tuple[str, list[str]]]:
    """(ConfigMap name, keys it projects) of every ConfigMap a pod mounts."""
    found = []
    for volume in pod.get("volumes", []):
        sources = [volume, *volume.get("projected", {}).get("sources", [])]
        for source in sources:
            if "configMap" in source:
                ref = source["configMap"]
                found.append((ref["name"], [item["key"] for item in ref.get("items", [])]))
    return found


def reference_problems(docs: list[Doc], operator_secrets: dict[str, dict[str, bool]]) -> list[str]:
    """Every ConfigMap and Secret a workload names is rendered (with the keys it asks for), or
    is an operator's Secret whose keys are documented (`operator_secrets`: name -> key ->
    required), asked for as optional exactly when documented as optional."""
    problems = []
    for workload in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        for config_name, keys in volume_config_maps(pod):
            config = named(docs, "ConfigMap", config_name)
            missing = [k for k in keys if k not in (config or {}).get("data", {})]
            if config is None or missing:
                problems.append(
                    f"{name_of(workload)} mounts ConfigMap {config_name} {missing or ''}"
                )
        for container in containers(workload):
            for source in container.get("envFrom", []):
                for kind, ref_key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if ref_key in source and named(docs, kind, source[ref_key]["name"]) is None:
                        problems.append(
                            f"{name_of(workload)}: envFrom {kind} {source[ref_key]['name']}"
                        )
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    problems += secret_key_problems(docs, operator_secrets, name_of(workload), ref)
                if "configMapKeyRef" in var.get("valueFrom", {}):
                    problems.append(
                        f"{name_of(workload)}: {var['name']} from a ConfigMap key (use envFrom)"
                    )
    return problems


def secret_key_problems(
    docs: list[Doc], operator_secrets: dict[str, dict[str, bool]], who: str, ref: Doc
) -> list[str]:
    secret, optional = named(docs, "Secret", ref["name"]), bool(ref.get("optional", False))
    if secret is not None:
        if ref["key"] not in secret_data(secret) and not optional:
            return [f"{who}: Secret {ref['name']} has no key {ref['key']}"]
        return []
    documented = operator_secrets.get(ref["name"])
    if documented is None:
        return [f"{who}: Secret {ref['name']} is neither rendered nor documented"]
    if ref["key"] not in documented:
        return [f"{who}: key {ref['key']} of Secret {ref['name']} is not documented"]
    if documented[ref["key"]] == optional:
        return [f"{who}: {ref['key']} is documented {'optional' if optional else 'required'}"]
    return []


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selector_problems(docs: list[Doc]) -> list[str]:
    """Every Service and PodDisruptionBudget selects the pods of a rendered workload (a PDB of a
    workload with a fixed replica count leaves room to evict one); every workload selects its
    own pods; a StatefulSet's serviceName is a rendered headless Service."""
    problems = []
    pods = {name_of(w): w["spec"]["template"]["metadata"]["labels"] for w in workloads(docs)}
    for workload in workloads(docs):
        if not matches(workload["spec"]["selector"]["matchLabels"], pods[name_of(workload)]):
            problems.append(f"{name_of(workload)} does not select its own pods")
    for service in of_kind(docs, "Service"):
        if not any(matches(service["spec"].get("selector", {}), p) for p in pods.values()):
            problems.append(f"{name_of(service)} selects no workload's pods")
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        chosen = [
            w
            for w in workloads(docs)
            if matches(pdb["spec"]["selector"]["matchLabels"], pods[name_of(w)])
        ]
        if not chosen:
            problems.append(f"{name_of(pdb)} selects no workload's pods")
        for workload in chosen:
            replicas = workload["spec"].get("replicas")
            if replicas is not None and pdb["spec"].get("minAvailable", 0) >= replicas:
                problems.append(f"{name_of(pdb)} lets no pod of {name_of(workload)} be evicted")
    for stateful in of_kind(docs, "StatefulSet"):
        governing = named(docs, "Service", stateful["spec"]["serviceName"])
        if governing is None or governing["spec"].get("clusterIP") != "None":
            problems.append(
                f"{name_of(stateful)}: no headless Service {stateful['spec']['serviceName']}"
            )
    return problems


def listener_problems(docs: list[Doc], service: str, section: str) -> list[str]:
    """The service's HTTP listener (settings section `section`: host and port) is on every
    interface, on a declared container port."""
    workload = next((w for w in workloads(docs) if service_of(w) == service), None)
    if workload is None:
        return [f"no workload runs {service}"]
    listener = getattr(settings_of(docs, workload), section)
    problems = []
    if listener.host != ANY_INTERFACE:
        problems.append(f"{service} listens on {listener.host}")
    if listener.port not in port_numbers(containers(workload)[0]).values():
        problems.append(f"{service} listens on port {listener.port}, not a container port")
    return problems


def public_url_problems(docs: list[Doc], webhook_path: str) -> list[str]:
    """The collector's public URL (where Argilla posts) reaches the collector: the URL's host is
    a rendered Service (`name`, `name.namespace.svc[.cluster.local]`) selecting the collector,
    its port is a Service port whose target is the listener's port, and its path is served."""
    collector = next((w for w in workloads(docs) if service_of(w) == "feedback-collector"), None)
    if collector is None:
        return ["no workload runs feedback-collector"]
    settings = settings_of(docs, collector)
    url = urlsplit(settings.feedback.public_url)
    host = (url.hostname or "").split(".")
    service = named(docs, "Service", host[0])
    namespace = collector["metadata"].get("namespace", "default")
    if service is None or (len(host) > 1 and host[1:3] != [namespace, "svc"]):
        return [f"public URL {settings.feedback.public_url}: no such Service in {namespace}"]
    problems = []
    pod_labels = collector["spec"]["template"]["metadata"]["labels"]
    if not matches(service["spec"]["selector"], pod_labels):
        problems.append(f"public URL: Service {host[0]} does not select the collector")
    ports = port_numbers(containers(collector)[0])
    exposed = [p for p in service["spec"]["ports"] if p["port"] == (url.port or 80)]
    targets = [ports.get(p.get("targetPort"), p.get("targetPort")) for p in exposed]
    if settings.feedback.port not in targets:
        problems.append(f"public URL port {url.port}: not the collector's {settings.feedback.port}")
    if url.path != webhook_path:
        problems.append(f"public URL path {url.path!r}, the collector serves {webhook_path!r}")
    return problems


def exporter_problems(docs: list[Doc]) -> list[str]:
    """One exporter, a StatefulSet of one replica, writing its versions and record stores on
    its volumeClaimTemplate."""
    exporters = [w for w in workloads(docs) if service_of(w) == "exporter"]
    if len(exporters) != 1 or exporters[0]["kind"] != "StatefulSet":
        return [f"the exporter: {[name_of(w) for w in exporters]}, not one StatefulSet"]
    exporter = exporters[0]
    problems = (
        [] if exporter["spec"].get("replicas") == 1 else [f"{name_of(exporter)}: not 1 replica"]
    )
    claims = {t["metadata"]["name"] for t in exporter["spec"].get("volumeClaimTemplates", [])}
    mounts = [
        PurePosixPath(m["mountPath"])
        for m in containers(exporter)[0].get("volumeMounts", [])
        if m["name"] in claims
    ]
    settings = settings_of(docs, exporter)
    export_dir = settings.export_dir
    stores = getattr(settings.export, "store_dir", None) or export_dir
    for what, where in (("export dir", export_dir), ("record stores", stores)):
        if not isinstance(where, Path) or not any(
            PurePosixPath(where).is_relative_to(m) for m in mounts
        ):
            problems.append(f"{name_of(exporter)}: its {what} {where} is not on its volume")
    return problems


def security_problems(docs: list[Doc]) -> list[str]:
    """Non-root, read-only root filesystem, no privilege escalation, no capabilities, and
    requests and limits of CPU and memory, for every container."""
    problems = []
    for workload in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{name_of(workload)}: may run as root")
        for container in containers(workload):
            security = container.get("securityContext", {})
            if not security.get("readOnlyRootFilesystem"):
                problems.append(f"{name_of(workload)}: writable root filesystem")
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name_of(workload)}: privilege escalation allowed")
            if security.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{name_of(workload)}: keeps capabilities")
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                for what in ("cpu", "memory"):
                    if what not in resources.get(bound, {}):
                        problems.append(f"{name_of(workload)}: no {what} {bound[:-1]}")
    return problems
