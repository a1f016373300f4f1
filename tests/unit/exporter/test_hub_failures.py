"""The Hub's trouble while pushing a version is retried for as long as it lasts; its refusal
is not; no token, no push. Offline, on the in-memory Hub of `test_hub_push`."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from huggingface_hub.errors import HfHubHTTPError

from services.exporter import hub
from shared.dead_letters import DeadLetters
from shared.failures import PermanentError, TransientError
from shared.flows import HubTarget
from shared.settings import RetrySettings
from tests.unit.exporter.test_hub_push import REPO, FakeHub, Flow, answered, fake_hub

__all__ = ["fake_hub"]  # the fixture, used by name


def hub_error(status: int) -> HfHubHTTPError:
    request = httpx2.Request("POST", f"https://huggingface.co/api/datasets/{REPO}/commit/main")
    return HfHubHTTPError(
        f"{status} from the Hub", response=httpx2.Response(status, request=request)
    )


async def no_sleep(_: float) -> None:
    return None


def one_version(tmp_path: Path) -> tuple[Flow, hub.ExportResult]:
    flow = Flow(tmp_path, "sft")
    flow.keep([answered(i) for i in range(10)])
    return flow, flow.export()["sft"]


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (httpx2.ConnectError("connection refused"), TransientError),
        (httpx2.ReadTimeout("timed out"), TransientError),
        (hub_error(503), TransientError),
        (hub_error(429), TransientError),
        (hub_error(408), TransientError),
        (hub_error(401), PermanentError),
        (hub_error(403), PermanentError),
        (hub_error(404), PermanentError),
    ],
)
def test_the_hubs_trouble_is_transient_and_its_refusal_permanent(
    tmp_path: Path, fake_hub: FakeHub, failure: Exception, kind: type[Exception]
) -> None:
    flow, v1 = one_version(tmp_path)
    fake_hub.failures = [failure]
    with pytest.raises(kind):
        flow.push(v1)
    assert fake_hub.commits == [] and fake_hub.files[REPO] == {}


async def test_the_push_is_retried_until_the_hub_takes_it(
    tmp_path: Path, fake_hub: FakeHub
) -> None:
    flow, v1 = one_version(tmp_path)
    fake_hub.failures = [httpx2.ConnectError("refused"), hub_error(503), hub_error(429)]
    retries = DeadLetters("exporter", RetrySettings(), sleep=no_sleep)
    assert await hub.push_until_done(flow.settings, HubTarget(repo_id=REPO), v1, retries)
    assert fake_hub.failures == [] and len(fake_hub.tokens) == 4  # four attempts
    [(message, uploaded)] = fake_hub.commits  # one commit, with everything
    assert message == "Loopline support/sft v1" and "sft/v1/manifest.json" in uploaded


async def test_a_refusal_is_not_retried_and_the_version_stays_on_disk(
    tmp_path: Path, fake_hub: FakeHub
) -> None:
    flow, v1 = one_version(tmp_path)
    fake_hub.failures = [hub_error(401), hub_error(401)]
    retries = DeadLetters("exporter", RetrySettings(), sleep=no_sleep)
    assert not await hub.push_until_done(flow.settings, HubTarget(repo_id=REPO), v1, retries)
    assert len(fake_hub.failures) == 1 and fake_hub.commits == []  # one attempt
    assert isinstance(v1.path, Path) and (v1.path / "manifest.json").is_file()


def test_without_a_token_nothing_is_pushed(tmp_path: Path, fake_hub: FakeHub) -> None:
    flow, v1 = one_version(tmp_path)
    no_token = flow.settings.export.model_copy(update={"hf_token": None})
    settings = flow.settings.model_copy(update={"export": no_token})
    assert hub.push_version(settings, HubTarget(repo_id=REPO), v1) is False
    assert fake_hub.tokens == [] and fake_hub.commits == []
