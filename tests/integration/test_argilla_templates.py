"""The Argilla templates against the real Argilla server: datasets, records, suggestions, metadata.

Every template's dataset is created from its settings, filled with realistic Loopline records,
and read back through the SDK and through the REST API; `settings_diff` must find the settings
read back equal to the template's. The datasets are deleted at the end.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from typing import Any

import argilla as rg
import httpx
import pytest

import devstack as stack
from services.argilla_publisher.dataset_settings import settings_diff
from services.argilla_publisher.templates import TEMPLATES
from services.argilla_publisher.templates.preference import PreferenceTemplate
from shared.argilla_metadata import RECORD_METADATA_KEY, record_from_metadata
from shared.events import Record

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:6]
MIN_SUBMITTED = 2


# --- realistic records ----------------------------------------------------------------------------


def multi_aspect(scores: list[float], repeat: int = 0, agreement: float | None = None) -> Any:
    return {
        "rubric": "multi-aspect",
        "judge_model": "qwen2.5-coder-0.5b-instruct",
        "repeat": repeat,
        "order": list(range(len(scores)))[::-1] if repeat % 2 else list(range(len(scores))),
        "ratings": [
            [
                {"aspect": "helpfulness", "score": s, "rationale": "Addresses the question."},
                {"aspect": "truthfulness", "score": s, "rationale": "No false claims."},
                {"aspect": "overall", "score": s, "rationale": "Good overall."},
            ]
            for s in scores
        ],
        "margin": max(scores) - min(scores),
        "agreement": agreement,
        "raw_output": '{"responses": [...]}',
    }


def additive(met: list[list[str]]) -> Any:
    return {
        "rubric": "additive",
        "judge_model": "qwen2.5-coder-0.5b-instruct",
        "ratings": [
            [{"aspect": "additive", "score": float(len(m)), "criteria_met": m, "rationale": "ok"}]
            for m in met
        ],
        "margin": float(max(len(m) for m in met) - min(len(m) for m in met)),
    }


def response(text: str, model: str, source: str = "generator") -> dict[str, Any]:
    return {
        "text": text,
        "model": model,
        "source": source,
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 41, "completion_tokens": 87},
        "latency_ms": 812.5,
        "params": {"temperature": 0.7},
    }


def record(key: str, **data: Any) -> Record:
    data.setdefault("flow", "support-bot")
    return Record.model_validate({"record_id": f"{key}-{RUN}", **data})


SLICE = "def reverse(xs):\n    return xs[::-1]\n"
LOOP = (
    "def reverse(xs):\n    out = []\n    for i in range(len(xs) - 1, -1, -1):\n"
    "        out.append(xs[i])\n    return out\n"
)
# A judge's raw output kept with a judgment can be long; with quotes, newlines and non-ASCII
# text it shows whether the stored record JSON survives the trip through Argilla unchanged.
LONG_RAW = ('{"rationale": "Ünïcødé, \\"quotes\\", \\n newlines, emoji 🚀, tab\\t"} ' * 3000)[
    :200_000
]


@functools.cache
def records_for(name: str) -> list[Record]:
    """The records of template `name`'s dataset (the same objects on every call)."""
    if name == "preference":
        return [
            record(
                "pref-ctx",
                instruction="Summarise the release notes in one sentence.",
                context="v2.1 adds dark mode, fixes the CSV export crash and drops Python 3.8.",
                responses=[
                    response("Dark mode, a CSV export fix, and Python 3.8 dropped.", "m-small"),
                    response("The release is great!", "m-tiny", "app"),
                ],
                judgments=[
                    multi_aspect([5, 2], repeat=0, agreement=1.0),
                    multi_aspect([4, 2], repeat=1, agreement=1.0),
                ],
                metadata={"source": "otlp", "customer": "acme"},
                tags=["prod", "release-notes"],
            ),
            record(
                "pref-chat",
                messages=[
                    {"role": "system", "content": "You are a Python tutor."},
                    {"role": "user", "content": "How do I reverse a list?"},
                    {"role": "assistant", "content": "In place or as a copy?"},
                    {"role": "user", "content": "As a copy."},
                ],
                responses=[response(f"```python\n{LOOP}```", "m-a"), response(SLICE, "m-b")],
                judgments=[{"rubric": "pairwise", "judge_model": "judge/m@2", "preferred": 1}],
            ),
            record(
                "pref-long",
                instruction="Explain big-O notation briefly.",
                responses=[
                    response("It bounds growth rates of functions.", "m-a"),
                    response("O(n) means it is slow.", "m-b"),
                ],
                judgments=[{**multi_aspect([3.5, 1]), "raw_output": LONG_RAW}],
                tags=[],
            ),
        ]
    if name == "sft-demonstration":
        return [
            record(
                "sft-judged",
                instruction="Write a function that reverses a list in Python.",
                responses=[response(LOOP, "m-a"), response(SLICE, "m-b")],
                judgments=[multi_aspect([3, 5])],
            ),
            record(
                "sft-app",
                instruction="What is the capital of Australia?",
                responses=[response("Canberra.", "support-app-v3", "app")],
            ),
        ]
    if name == "curation":
        return [
            record(
                "cur-closed",
                flow="dolly",
                instruction="When was the company founded?",
                context="Acme Corp was founded in 1947 in Springfield by two brothers.",
                responses=[response("Acme Corp was founded in 1947.", "human", "dataset")],
                metadata={"category": "closed_qa", "source": "databricks-dolly-15k"},
            ),
            record(
                "cur-open",
                flow="dolly",
                instruction="Give me three ideas for a rainy afternoon.",
                responses=[response("Board games, baking, a film marathon.", "human", "dataset")],
                metadata={"category": "brainstorming", "source": "databricks-dolly-15k"},
            ),
            record(
                "cur-bare",
                flow="dolly",
                instruction="Why is the sky blue?",
                metadata={"source": "databricks-dolly-15k"},
            ),
        ]
    if name == "code-scoring":
        return [
            record(
                "code-1",
                flow="code",
                instruction="Write a Python function that reverses a list without mutating it.",
                responses=[response(SLICE, "m-a"), response(LOOP, "m-b")],
                judgments=[additive([["correct", "idiomatic"], ["correct", "edge_cases"]])],
            ),
            record(
                "code-2",
                flow="code",
                instruction="Parse an ISO date string in Python.",
                responses=[
                    response("Use `datetime.fromisoformat(s)`; it raises ValueError.", "m-a"),
                    response("Split on '-' and call int().", "m-b"),
                ],
                judgments=[additive([["correct", "explained", "idiomatic"], []])],
            ),
        ]
    if name == "thumbs":
        return [
            record(
                f"thumbs-{score}",
                flow="support-bot",
                instruction=f"Question number {score}: how do I reset my password?",
                responses=[
                    response("Use the 'Forgot password' link on the login page.", "app-v3", "app")
                ],
                judgments=[multi_aspect([score])],
                metadata={"source": "http"},
            )
            for score in (5, 3, 1)
        ]
    raise AssertionError(name)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(local_stack: stack.StackConfig) -> rg.Argilla:
    return rg.Argilla(
        api_url=local_stack.argilla_url, api_key=local_stack.argilla_api_key.get_secret_value()
    )


@pytest.fixture(scope="module")
def http(local_stack: stack.StackConfig) -> Iterator[httpx.Client]:
    headers = {"X-Argilla-Api-Key": local_stack.argilla_api_key.get_secret_value()}
    with httpx.Client(base_url=local_stack.argilla_url, headers=headers, timeout=60) as session:
        yield session


@pytest.fixture(scope="module")
def datasets(client: rg.Argilla, local_stack: stack.StackConfig) -> Iterator[dict[str, Any]]:
    """One dataset per template, filled with that template's records; deleted afterwards."""
    created: dict[str, Any] = {}
    try:
        for name, template_class in TEMPLATES.items():
            template = template_class()
            dataset = rg.Dataset(
                name=f"tpl-{name}-{RUN}",
                workspace=local_stack.argilla_workspace,
                settings=template.settings(MIN_SUBMITTED),
                client=client,
            ).create()
            created[name] = dataset
            dataset.records.log([template.to_record(r) for r in records_for(name)])
        yield created
    finally:
        for dataset in created.values():
            dataset.delete()


def fresh(client: rg.Argilla, name: str, workspace: str) -> Any:
    """The dataset as a new reader sees it: settings fetched from the server."""
    dataset = client.datasets(f"tpl-{name}-{RUN}", workspace=workspace)
    assert dataset is not None
    return dataset


def expected(name: str) -> dict[str, tuple[Record, Any]]:
    template = TEMPLATES[name]()
    return {r.record_id: (r, template.to_record(r)) for r in records_for(name)}


def suggestion_map(argilla_record: Any) -> dict[str, tuple[Any, Any, Any]]:
    return {s.question_name: (s.value, s.score, s.agent) for s in argilla_record.suggestions}


# --- tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_records_read_back_through_the_sdk(
    name: str, datasets: dict[str, Any], client: rg.Argilla, local_stack: stack.StackConfig
) -> None:
    dataset = fresh(client, name, local_stack.argilla_workspace)
    got = {r.id: r for r in dataset.records(with_suggestions=True, with_responses=True)}
    wanted = expected(name)
    assert set(got) == set(wanted)
    for record_id, (original, sent) in wanted.items():
        back = got[record_id]
        assert dict(back.fields) == dict(sent.fields)
        assert suggestion_map(back) == suggestion_map(sent)
        metadata = dict(back.metadata)
        assert metadata == dict(sent.metadata)
        assert record_from_metadata(metadata) == original


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_records_read_back_through_rest(
    name: str, datasets: dict[str, Any], http: httpx.Client
) -> None:
    dataset_id = str(datasets[name].id)
    questions = http.get(f"/api/v1/datasets/{dataset_id}/questions")
    questions.raise_for_status()
    question_names = {q["id"]: q["name"] for q in questions.json()["items"]}
    listing = http.get(
        f"/api/v1/datasets/{dataset_id}/records",
        params={"include": "responses,suggestions", "limit": 100},
    )
    listing.raise_for_status()
    items = {item["external_id"]: item for item in listing.json()["items"]}
    wanted = expected(name)
    assert set(items) == set(wanted)
    for record_id, (original, sent) in wanted.items():
        item = items[record_id]
        assert item["fields"] == dict(sent.fields)
        assert item["metadata"] == dict(sent.metadata)
        assert Record.model_validate_json(item["metadata"][RECORD_METADATA_KEY]) == original
        rest_suggestions = {}
        for s in item["suggestions"]:
            value = s["value"]
            if isinstance(value, list) and value and isinstance(value[0], dict):
                value = [v["value"] for v in value]  # ranking: [{"value": ...}] over REST
            rest_suggestions[question_names[s["question_id"]]] = (value, s["score"], s["agent"])
        assert rest_suggestions == suggestion_map(sent)
        # A single record is addressed by the server's UUID, not by the external id.
        one = http.get(f"/api/v1/records/{item['id']}")
        one.raise_for_status()
        assert one.json()["external_id"] == record_id
        assert record_from_metadata(one.json()["metadata"]) == original
        assert http.get(f"/api/v1/records/{record_id}").status_code == 422


def test_large_extra_metadata_round_trips(datasets: dict[str, Any], http: httpx.Client) -> None:
    original = next(r for r in records_for("preference") if r.record_id.startswith("pref-long"))
    stored = original.model_dump_json()
    assert len(stored) > 200_000
    dataset_id = str(datasets["preference"].id)
    listing = http.get(f"/api/v1/datasets/{dataset_id}/records", params={"limit": 100})
    item = next(i for i in listing.json()["items"] if i["external_id"] == original.record_id)
    assert item["metadata"][RECORD_METADATA_KEY] == stored


def test_records_are_found_by_external_id(
    datasets: dict[str, Any], http: httpx.Client, client: rg.Argilla
) -> None:
    dataset = datasets["thumbs"]
    record_id = f"thumbs-3-{RUN}"
    body = {
        "filters": {
            "and": [
                {
                    "type": "terms",
                    "scope": {"entity": "record", "property": "external_id"},
                    "values": [record_id],
                }
            ]
        }
    }
    found = http.post(f"/api/v1/datasets/{dataset.id}/records/search", json=body)
    found.raise_for_status()
    assert [hit["record"]["external_id"] for hit in found.json()["items"]] == [record_id]
    query = rg.Query(filter=rg.Filter(("id", "==", record_id)))
    assert [r.id for r in dataset.records(query=query)] == [record_id]


def test_logging_a_record_again_updates_it(datasets: dict[str, Any], http: httpx.Client) -> None:
    dataset = datasets["thumbs"]
    original = records_for("thumbs")[0]
    changed = original.model_copy(update={"tags": ["redelivered"]})
    dataset.records.log([TEMPLATES["thumbs"]().to_record(changed)])
    listing = http.get(f"/api/v1/datasets/{dataset.id}/records", params={"limit": 100})
    items = [i for i in listing.json()["items"] if i["external_id"] == original.record_id]
    assert len(listing.json()["items"]) == len(records_for("thumbs"))  # no duplicate
    assert items[0]["metadata"]["tags"] == ["redelivered"]
    assert record_from_metadata(items[0]["metadata"]) == changed
    dataset.records.log([TEMPLATES["thumbs"]().to_record(original)])  # as it was


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_settings_read_back_match_the_template(
    name: str, datasets: dict[str, Any], client: rg.Argilla, local_stack: stack.StackConfig
) -> None:
    server_settings = fresh(client, name, local_stack.argilla_workspace).settings
    wanted = TEMPLATES[name]().settings(MIN_SUBMITTED)
    assert settings_diff(server_settings, wanted) == []

    changed = TEMPLATES[name]().settings(MIN_SUBMITTED)
    changed.questions.add(rg.TextQuestion(name="extra_note", required=False, client=client))
    assert settings_diff(server_settings, changed) == [
        "question 'extra_note' (text) is missing from the dataset"
    ]
    assert settings_diff(server_settings, TEMPLATES[name]().settings(1)) == [
        f"distribution: min_submitted is {MIN_SUBMITTED} in the dataset, 1 in the template"
    ]


def test_a_changed_preference_template_shows_its_differences(
    datasets: dict[str, Any], client: rg.Argilla, local_stack: stack.StackConfig
) -> None:
    server_settings = fresh(client, "preference", local_stack.argilla_workspace).settings
    wanted = PreferenceTemplate(responses=3, guidelines="Other rules").settings(MIN_SUBMITTED)
    assert settings_diff(server_settings, wanted) == [
        "field 'response_3' (text) is missing from the dataset",
        "question 'rating_response_3' (rating) is missing from the dataset",
        "question 'ranking': labels/values is ['response_1', 'response_2'] in the dataset, "
        "['response_1', 'response_2', 'response_3'] in the template",
        "guidelines: the dataset's differ from the template's",
    ]
