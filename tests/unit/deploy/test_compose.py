"""docker-compose.yml validates with Docker Compose and is wired to work.

Reproduces issue 15: no service's host or public URL was set, so the ingester and the webhook
listener bound 127.0.0.1 inside their containers and Argilla posted webhooks to its own
loopback; the exporter wrote under a root-owned /app with no volume; secrets fell back to
well-known strings. The rules checked here, on the model Compose itself resolves:
- every address a service needs (Kafka, Argilla, OTLP, the collector's public URL, Argilla's
  database, search engine and Redis, the LLM) is a service of the file, on a port that service
  listens on (or the Docker host, mapped with `extra_hosts`);
- listeners inside containers are not loopback; only 127.0.0.1 of the host gets ports;
- every named volume is declared; stateful services keep their data on one; the
  exporter's export dir is a volume its non-root user can write;
- secrets are required (`${VAR:?message}`), none has a default, no well-known key appears;
- every Loopline service passes its own startup checks (`shared.deployment_checks`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from shared.deployment_checks import (
    ARGILLA_SERVICES,
    WELL_KNOWN_ARGILLA_KEYS,
    check_service,
    is_loopback_host,
)
from tests.unit.deploy.compose_model import (
    COMPOSE_FILE,
    DOCKERFILE,
    ENV_EXAMPLE,
    SECRETS,
    Service,
    environment,
    host_and_port,
    is_loopline,
    listening_ports,
    optional_variables,
    required_variables,
    resolved_model,
    run_compose,
    service_name,
    settings_of,
)

TEXT = COMPOSE_FILE.read_text()
HOST_GATEWAY = "host.docker.internal"
# Variables of third-party services that name another service: (address list separator).
ADDRESS_VARIABLES = {
    "ARGILLA_DATABASE_URL": None,
    "ARGILLA_ELASTICSEARCH": None,
    "ARGILLA_REDIS_URL": None,
    "KAFKA_ADVERTISED_LISTENERS": ",",
}
# Variables that hold what a server binds, not where it connects to.
LISTENER_VARIABLES = {"KAFKA_LISTENERS"}
SECRET_NAME = re.compile(r"(KEY|KEYS|PASSWORD|SECRET|TOKEN)$")


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return resolved_model(SECRETS)


@pytest.fixture(scope="module")
def services(model: dict[str, Any]) -> dict[str, Service]:
    found: dict[str, Service] = model["services"]
    return found


def loopline_services(services: dict[str, Service]) -> dict[str, Service]:
    return {name: service for name, service in services.items() if is_loopline(service)}


def needed_addresses(name: str, service: Service) -> list[tuple[str, str]]:
    """(what, address) for every address `service` connects to."""
    needed: list[tuple[str, str]] = []
    if is_loopline(service):
        settings = settings_of(service)
        running = service_name(service)
        for server in settings.kafka.bootstrap_servers.split(","):
            needed.append(("LOOPLINE_KAFKA__BOOTSTRAP_SERVERS", server.strip()))
        needed.append(("LOOPLINE_TELEMETRY__OTLP_ENDPOINT", settings.telemetry.otlp_endpoint or ""))
        if running in ARGILLA_SERVICES:
            needed.append(("LOOPLINE_ARGILLA__API_URL", settings.argilla.api_url))
        if running == "feedback-collector":
            needed.append(("LOOPLINE_FEEDBACK__PUBLIC_URL", settings.feedback.public_url))
        if running in ("generator", "judge"):
            needed.append(("LOOPLINE_LLM__BASE_URL", settings.llm.base_url))
            needed += [("LOOPLINE_LLM__ENDPOINTS", url) for url in settings.llm.endpoints.values()]
    for variable, separator in ADDRESS_VARIABLES.items():
        value = environment(service).get(variable)
        if value:
            needed += [(variable, part) for part in value.split(separator or "\n")]
    return needed


def test_the_file_is_valid_compose(model: dict[str, Any]) -> None:
    assert run_compose(SECRETS, "config", "--quiet").returncode == 0
    assert {"kafka", "argilla", "argilla-worker", "phoenix", "exporter"} <= set(model["services"])


def test_the_test_knows_every_required_variable() -> None:
    assert required_variables(TEXT) == set(SECRETS)


@pytest.mark.parametrize("missing", sorted(SECRETS))
@pytest.mark.parametrize("empty", [False, True], ids=["unset", "empty"])
def test_compose_refuses_to_run_without_each_secret(missing: str, empty: bool) -> None:
    variables = {name: value for name, value in SECRETS.items() if name != missing}
    if empty:
        variables[missing] = ""
    result = run_compose(variables, "config", "--quiet")
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr
    assert ".env" in result.stderr  # the message says where to set it


def test_every_address_a_service_needs_is_a_service_on_a_port_it_listens_on(
    services: dict[str, Service],
) -> None:
    wrong: list[str] = []
    for name, service in services.items():
        for what, address in needed_addresses(name, service):
            host, port = host_and_port(address)
            if host == HOST_GATEWAY:
                mapped = f"{HOST_GATEWAY}=host-gateway" in (service.get("extra_hosts") or [])
                if not mapped:
                    wrong.append(f"{name}: {what}={address}, {HOST_GATEWAY} is not mapped")
            elif host not in services:
                wrong.append(f"{name}: {what}={address!r}, no service {host!r} in the file")
            elif port not in listening_ports(services[host]):
                ports = sorted(listening_ports(services[host]))
                wrong.append(f"{name}: {what}={address}, {host} listens on {ports}")
    assert wrong == []


def test_every_url_in_the_file_is_one_the_wiring_test_checks(
    services: dict[str, Service],
) -> None:
    """A new variable holding an address cannot slip past the test above."""
    checked = set(ADDRESS_VARIABLES) | LISTENER_VARIABLES
    unchecked = {
        f"{name}: {variable}"
        for name, service in services.items()
        for variable, value in environment(service).items()
        if "://" in value and variable not in checked and not variable.startswith("LOOPLINE_")
    }
    assert unchecked == set()


def test_the_collector_gives_argilla_its_service_address(services: dict[str, Service]) -> None:
    settings = settings_of(services["feedback-collector"])
    host, port = host_and_port(settings.feedback.public_url)
    assert (host, port) == ("feedback-collector", settings.feedback.port)
    assert settings.feedback.public_url.endswith("/argilla/webhooks")


def test_listeners_inside_containers_are_not_loopback(services: dict[str, Service]) -> None:
    bound: dict[str, str] = {}
    for name, service in loopline_services(services).items():
        settings = settings_of(service)
        bound[f"{name} health"] = settings.health_host
        if service_name(service) == "ingester":
            bound[f"{name} API"] = settings.ingest.host
        if service_name(service) == "feedback-collector":
            bound[f"{name} webhooks"] = settings.feedback.host
    bound["phoenix"] = environment(services["phoenix"]).get("PHOENIX_HOST", "")
    assert {what for what, host in bound.items() if is_loopback_host(host)} == set()
    assert {"ingester API", "feedback-collector webhooks"} <= set(bound)


def test_only_the_hosts_loopback_gets_published_ports(services: dict[str, Service]) -> None:
    published = {
        f"{name}:{port.get('published')}": port.get("host_ip")
        for name, service in services.items()
        for port in service.get("ports") or []
    }
    assert published and set(published.values()) == {"127.0.0.1"}
    assert {"ingester:8100", "argilla:6900", "phoenix:6006"} <= set(published)


def test_traces_go_to_phoenix_with_its_telemetry_off(services: dict[str, Service]) -> None:
    phoenix = services["phoenix"]
    assert str(phoenix["image"]).startswith("arizephoenix/phoenix:")
    assert environment(phoenix)["PHOENIX_TELEMETRY_ENABLED"] == "false"
    for name, service in loopline_services(services).items():
        endpoint = settings_of(service).telemetry.otlp_endpoint
        assert endpoint is not None and host_and_port(endpoint)[0] == "phoenix", name


def test_every_named_volume_is_declared(
    model: dict[str, Any], services: dict[str, Service]
) -> None:
    """(Compose drops declared volumes no service mounts from the model it prints.)"""
    mounted = {
        volume["source"]
        for service in services.values()
        for volume in service.get("volumes") or []
        if volume["type"] == "volume"
    }
    assert mounted and mounted <= set(model.get("volumes") or {})


def volume_at(service: Service, path: str) -> str | None:
    """The named volume mounted at `path` or above it in `service`, if any."""
    for volume in service.get("volumes") or []:
        target = PurePosixPath(volume["target"])
        if volume["type"] == "volume" and PurePosixPath(path).is_relative_to(target):
            return str(volume["source"])
    return None


def test_stateful_services_keep_their_data_on_named_volumes(
    services: dict[str, Service],
) -> None:
    exporter = settings_of(services["exporter"])
    data_dirs = {
        "kafka": environment(services["kafka"]).get("KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs"),
        "postgres": "/var/lib/postgresql/data",
        "elasticsearch": "/usr/share/elasticsearch/data",
        "argilla": environment(services["argilla"])["ARGILLA_HOME_PATH"],
        "phoenix": environment(services["phoenix"]).get("PHOENIX_WORKING_DIR", "/root/.phoenix"),
        "exporter": str(exporter.export_dir),
        "exporter record stores": str(exporter.export.stores(exporter.stack_dir)),
    }
    on_no_volume = {
        name: path
        for name, path in data_dirs.items()
        if volume_at(services[name.split()[0]], path) is None
    }
    assert on_no_volume == {}


def test_the_export_dir_is_absolute_and_writable_by_the_images_user(
    services: dict[str, Service],
) -> None:
    exporter = settings_of(services["exporter"])
    export_dir = PurePosixPath(str(exporter.export_dir))
    assert export_dir.is_absolute() and exporter.export.stores(exporter.stack_dir).is_absolute()
    lines = DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    uid = users[-1].split(":")[0]
    created = " ".join(line for line in lines if line.startswith("RUN "))
    assert re.search(rf"useradd\b[^&]*--uid {uid}\b", created), "the USER is the created user"
    owned = re.findall(r"chown -R (\S+) (\S+)", created)
    assert any(export_dir.is_relative_to(path) for _, path in owned), owned
    assert any(str(export_dir) in part for part in re.findall(r"mkdir -p (\S+)", created))


def test_no_secret_has_a_default_and_no_well_known_key_appears(
    services: dict[str, Service],
) -> None:
    defaulted = {name for name in optional_variables(TEXT) if SECRET_NAME.search(name)}
    assert defaulted == set()
    assert [key for key in WELL_KNOWN_ARGILLA_KEYS if key in TEXT] == []
    # Every secret a container gets is one the operator gave.
    given = set(SECRETS.values())
    for name, service in services.items():
        for variable, value in environment(service).items():
            if SECRET_NAME.search(variable):
                assert value in given, f"{name}: {variable} is not from the operator's .env"


def test_secrets_go_only_to_the_services_that_use_them(services: dict[str, Service]) -> None:
    holders = {
        name
        for name, service in services.items()
        if SECRETS["ARGILLA_API_KEY"] in environment(service).values()
    }
    assert holders == {"argilla"} | {
        name
        for name, s in loopline_services(services).items()
        if service_name(s) in ARGILLA_SERVICES
    }
    llm = {n for n, s in services.items() if "LOOPLINE_LLM__API_KEY" in environment(s)}
    assert llm == {"generator", "judge"}


def test_every_loopline_service_passes_its_startup_checks(services: dict[str, Service]) -> None:
    running = {service_name(s) for s in loopline_services(services).values()}
    assert running == {
        "ingester",
        "generator",
        "judge",
        "argilla-publisher",
        "feedback-collector",
        "exporter",
    }
    for service in loopline_services(services).values():
        check_service(service_name(service), settings_of(service))


def test_the_example_env_file_lists_every_variable_and_holds_no_secret() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    assigned = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert set(assigned) == required_variables(TEXT)
    assert set(assigned.values()) == {""}  # placeholders only: Compose refuses them as they are
    mentioned = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", "\n".join(lines), re.MULTILINE))
    assert optional_variables(TEXT) <= mentioned


def test_the_example_env_file_as_it_is_is_refused(tmp_path: Path) -> None:
    result = run_compose({}, "config", "--quiet", env_file=ENV_EXAMPLE)
    assert result.returncode != 0
    assert "is missing a value" in result.stderr
    # Filled in as its comments say (JSON in single quotes), it is what Compose needs.
    filled = ENV_EXAMPLE.read_text()
    for name, value in SECRETS.items():
        filled = filled.replace(f"\n{name}=\n", f"\n{name}='{value}'\n")
    (tmp_path / ".env").write_text(filled)
    result = run_compose({}, "config", "--format", "json", env_file=tmp_path / ".env")
    assert result.returncode == 0, result.stderr
    ingester = json.loads(result.stdout)["services"]["ingester"]
    assert (
        environment(ingester)["LOOPLINE_INGEST__API_KEYS"] == SECRETS["LOOPLINE_INGEST__API_KEYS"]
    )
