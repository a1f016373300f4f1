"""Startup checks outside the local stack (`shared.deployment_checks`).

Reproduces issue 15: `ArgillaSettings.api_key` silently defaulted to the local stack's key, so
a service pointed at a production Argilla without a key went there with a key anyone can read;
the collector's webhook URL and the ingester's host defaulted to loopback with nothing to say
that a container's loopback is unreachable (webhooks) or that an API on every interface was
open (ingester).
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from devstack.config import LOCAL_ARGILLA_API_KEY, StackConfig
from shared.deployment_checks import (
    ARGILLA_SERVICES,
    WELL_KNOWN_ARGILLA_KEYS,
    DeploymentError,
    check_service,
    is_loopback_host,
    service_problems,
)
from shared.settings import (
    ApiKey,
    ArgillaSettings,
    FeedbackSettings,
    IngestSettings,
    MissingSettingError,
    Settings,
)

REMOTE_ARGILLA = "http://argilla:6900"
REAL_KEY = "k8Jq2-not-a-published-key-7fQ"
COLLECTOR_URL = "http://feedback-collector:8200/argilla/webhooks"
EVERY_SERVICE = (
    "ingester",
    "generator",
    "judge",
    "argilla-publisher",
    "feedback-collector",
    "exporter",
)


def settings(
    api_url: str = REMOTE_ARGILLA,
    api_key: str | None = None,
    public_url: str = COLLECTOR_URL,
    ingest: IngestSettings | None = None,
) -> Settings:
    return Settings(
        argilla=ArgillaSettings(
            api_url=api_url, api_key=SecretStr(api_key) if api_key is not None else None
        ),
        feedback=FeedbackSettings(host="0.0.0.0", public_url=public_url),
        ingest=ingest or IngestSettings(),
    )


def refusal(service: str, given: Settings) -> str:
    with pytest.raises(DeploymentError) as raised:
        check_service(service, given)
    return str(raised.value)


def test_argilla_settings_have_no_key_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOPLINE_ARGILLA__API_KEY", raising=False)
    assert ArgillaSettings().api_key is None
    assert Settings().argilla.api_key is None
    with pytest.raises(MissingSettingError, match="LOOPLINE_ARGILLA__API_KEY"):
        ArgillaSettings().api_key_value()
    monkeypatch.setenv("LOOPLINE_ARGILLA__API_KEY", REAL_KEY)
    assert Settings().argilla.api_key_value() == REAL_KEY


@pytest.mark.parametrize("service", sorted(ARGILLA_SERVICES))
@pytest.mark.parametrize("key", [None, "", "   "])
def test_a_service_that_calls_argilla_refuses_to_start_without_a_key(
    service: str, key: str | None
) -> None:
    message = refusal(service, settings(api_key=key))
    assert "LOOPLINE_ARGILLA__API_KEY" in message
    assert message.startswith(f"{service} will not start")


@pytest.mark.parametrize("service", sorted(ARGILLA_SERVICES))
@pytest.mark.parametrize("key", sorted(WELL_KNOWN_ARGILLA_KEYS))
def test_a_well_known_key_is_refused_for_an_argilla_elsewhere(service: str, key: str) -> None:
    for url in (REMOTE_ARGILLA, "https://argilla.example.com", "http://10.0.0.5:6900"):
        message = refusal(service, settings(api_url=url, api_key=key))
        assert "LOOPLINE_ARGILLA__API_KEY" in message and "well-known" in message
        assert key not in message  # a key, even a public one, is not echoed


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6900",
        "http://localhost:6900",
        "http://[::1]:6900",
        "http://127.0.0.2:16900",
    ],
)
def test_a_well_known_key_is_accepted_for_an_argilla_on_loopback(url: str) -> None:
    """The local stack binds loopback only: there its known key is the right one."""
    local_webhooks = FeedbackSettings().public_url  # loopback too
    for service in ARGILLA_SERVICES:
        check_service(
            service, settings(api_url=url, api_key=LOCAL_ARGILLA_API_KEY, public_url=local_webhooks)
        )


def test_a_key_of_ones_own_is_accepted_for_an_argilla_elsewhere() -> None:
    for service in ARGILLA_SERVICES:
        check_service(service, settings(api_key=REAL_KEY))


@pytest.mark.parametrize("service", ["ingester", "generator", "judge", "exporter"])
def test_services_that_do_not_call_argilla_need_no_key(service: str) -> None:
    assert service_problems(service, settings(api_key=None)) == []


def test_the_collector_refuses_a_loopback_webhook_url_for_an_argilla_elsewhere() -> None:
    """In containers Argilla would post its webhooks to its own loopback."""
    for public_url in ("http://127.0.0.1:8200/argilla/webhooks", "http://localhost:8200/x"):
        message = refusal("feedback-collector", settings(api_key=REAL_KEY, public_url=public_url))
        assert "LOOPLINE_FEEDBACK__PUBLIC_URL" in message
    # The default is loopback, the local stack's case: fine with an Argilla on loopback.
    local = Settings(argilla=ArgillaSettings(api_key=SecretStr(LOCAL_ARGILLA_API_KEY)))
    assert FeedbackSettings().public_url.startswith("http://127.0.0.1:")
    check_service("feedback-collector", local)


def test_every_problem_is_named_at_once() -> None:
    message = refusal(
        "feedback-collector",
        settings(api_key=None, public_url="http://127.0.0.1:8200/argilla/webhooks"),
    )
    assert "LOOPLINE_ARGILLA__API_KEY" in message
    assert "LOOPLINE_FEEDBACK__PUBLIC_URL" in message


def test_the_ingester_refuses_to_listen_beyond_loopback_with_no_api_keys() -> None:
    message = refusal("ingester", settings(ingest=IngestSettings(host="0.0.0.0")))
    assert "LOOPLINE_INGEST__API_KEYS" in message
    assert "LOOPLINE_INGEST__ALLOW_OPEN" in message


@pytest.mark.parametrize(
    "ingest",
    [
        IngestSettings(),  # 127.0.0.1, the default
        IngestSettings(host="::1"),
        IngestSettings(host="0.0.0.0", allow_open=True),
        IngestSettings(host="0.0.0.0", api_keys=[ApiKey(name="app", key=SecretStr(REAL_KEY))]),
    ],
)
def test_the_ingester_starts_on_loopback_with_keys_or_when_open_is_meant(
    ingest: IngestSettings,
) -> None:
    check_service("ingester", settings(ingest=ingest))


def test_the_local_stack_passes_its_own_checks() -> None:
    """What `loopline services up` gives each service: the stack's key and loopback URLs."""
    config = StackConfig()
    local = Settings(
        argilla=ArgillaSettings(api_url=config.argilla_url, api_key=config.argilla_api_key)
    )
    for service in EVERY_SERVICE:
        check_service(service, local)
    assert config.argilla_api_key.get_secret_value() in WELL_KNOWN_ARGILLA_KEYS


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("argilla", False),
        ("localhost.example.com", False),
        ("10.0.0.1", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
