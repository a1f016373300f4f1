"""What a service checks once at startup, before it reaches for anything: no secret it needs
is missing or publicly known, Argilla can reach the collector's webhook URL, and the ingester
is not open to the network by accident.

The rules:
- A service that talks to Argilla (`ARGILLA_SERVICES`) needs `LOOPLINE_ARGILLA__API_KEY`. A
  well-known key (the local stack's, a placeholder from an example, Argilla's documented
  defaults) is refused unless the Argilla it goes to is on this machine (a loopback URL): the
  local stack binds loopback only, so there the known key is the right one; anywhere else it
  would let anyone in.
- The collector's public URL (where Argilla posts webhooks) is not a loopback address when
  Argilla is elsewhere: Argilla would post to its own machine.
- The ingester listening on a non-loopback host needs API keys (`LOOPLINE_INGEST__API_KEYS`),
  unless `LOOPLINE_INGEST__ALLOW_OPEN=true` says that an open API is meant (a network that
  only trusted clients reach).

`loopline run` calls `check_service` and exits with every problem, each naming the setting to
set; code that embeds a service (tests) configures it explicitly and skips these checks.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import SecretStr

from shared.settings import ArgillaSettings, IngestSettings, Settings

# The services that call Argilla: they, and only they, need its key.
ARGILLA_SERVICES = frozenset({"argilla-publisher", "feedback-collector"})

# Keys anyone can read: the local stack's, the placeholder an older docker-compose.yml
# defaulted to, and the ones Argilla's own docs and images use as examples.
WELL_KNOWN_ARGILLA_KEYS = frozenset(
    {
        "loopline.owner.apikey",
        "change.me.owner.apikey",
        "argilla.apikey",
        "owner.apikey",
        "admin.apikey",
        "team.apikey",
    }
)


class DeploymentError(Exception):
    """A service is configured in a way it must not start with; the message says what to set."""


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an IP address, IPv6 with or without brackets) is this
    machine's loopback: `localhost`, 127.0.0.0/8, ::1. `0.0.0.0` (every interface) is not."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def _value(secret: SecretStr | None) -> str:
    return secret.get_secret_value().strip() if secret is not None else ""


def argilla_key_problem(argilla: ArgillaSettings) -> str | None:
    """Why the Argilla key may not be used with the Argilla it goes to; None when it may."""
    key = _value(argilla.api_key)
    if not key:
        return (
            "no Argilla API key: set LOOPLINE_ARGILLA__API_KEY to the key of the Argilla "
            f"user the services act as (for {argilla.api_url})"
        )
    if key in WELL_KNOWN_ARGILLA_KEYS and not is_loopback_url(argilla.api_url):
        return (
            "LOOPLINE_ARGILLA__API_KEY is a well-known key, accepted only for an Argilla on "
            f"this machine (a loopback URL), not for {argilla.api_url}: set it to a key of "
            "your own (Argilla's API_KEY for its owner)"
        )
    return None


def open_ingester_problem(ingest: IngestSettings) -> str | None:
    """Why the ingester's HTTP API may not listen as configured; None when it may."""
    if ingest.api_keys or ingest.allow_open or is_loopback_host(ingest.host):
        return None
    return (
        f"the ingester would listen on {ingest.host} with no API keys, open to anyone who "
        "reaches it: set LOOPLINE_INGEST__API_KEYS (JSON: "
        '[{"name": "my-app", "key": "..."}]), or LOOPLINE_INGEST__ALLOW_OPEN=true if an '
        "open API is what you mean"
    )


def webhook_url_problem(settings: Settings) -> str | None:
    """Why Argilla could not post its webhooks to the collector's public URL; None when it
    could. A loopback URL reaches the collector only from Argilla on the same machine."""
    public_url = settings.feedback.public_url
    if is_loopback_url(public_url) and not is_loopback_url(settings.argilla.api_url):
        return (
            f"LOOPLINE_FEEDBACK__PUBLIC_URL is {public_url}, a loopback address Argilla at "
            f"{settings.argilla.api_url} cannot post its webhooks to: set it to the collector's "
            "address as Argilla sees it (e.g. http://feedback-collector:8200/argilla/webhooks)"
        )
    return None


def service_problems(service: str, settings: Settings) -> list[str]:
    """Every reason `service` must not start with `settings` (empty: it may)."""
    problems: list[str] = []
    if service in ARGILLA_SERVICES:
        problems.append(argilla_key_problem(settings.argilla) or "")
    if service == "feedback-collector":
        problems.append(webhook_url_problem(settings) or "")
    if service == "ingester":
        problems.append(open_ingester_problem(settings.ingest) or "")
    return [problem for problem in problems if problem]


def check_service(service: str, settings: Settings) -> None:
    """Raise `DeploymentError` naming every setting to fix before `service` may start."""
    problems = service_problems(service, settings)
    if problems:
        raise DeploymentError(f"{service} will not start: " + "; ".join(problems))
