"""An in-memory Argilla 2.8 for the publisher's unit tests, behind `httpx.MockTransport`.

It answers the two endpoints the publisher uses the way the real server does: the bulk upsert
(`PUT /api/v1/datasets/{id}/records/bulk`, all or nothing: a refused chunk writes nothing) and
the record search (`POST /api/v1/datasets/{id}/records/search`, `external_id` and response
`status` terms filters). Faults are scripted: an outage, 413 above a chunk size or for a record
alone, 422 for chunks holding an invalid record, 404 once a dataset was deleted.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

BULK = re.compile(r"^/api/v1/datasets/([^/]+)/records/bulk$")
SEARCH = re.compile(r"^/api/v1/datasets/([^/]+)/records/search$")


@dataclass
class Call:
    method: str
    dataset_id: str
    external_ids: list[str]
    status: int


@dataclass
class FakeArgilla:
    datasets: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # id -> records
    names: dict[str, str] = field(default_factory=dict)  # dataset id -> name
    responses: dict[tuple[str, str], str] = field(default_factory=dict)  # (ds, ext id) -> status
    calls: list[Call] = field(default_factory=list)
    outage: list[int | type[Exception]] = field(default_factory=list)  # next answers, in order
    too_large_above: int | None = None  # a bulk upsert of more records: 413
    too_large_ids: set[str] = field(default_factory=set)  # 413 even alone
    invalid_ids: set[str] = field(default_factory=set)  # a chunk holding one: 422
    not_found: bool = False  # every dataset answers 404 (a proxy routing it nowhere, say)
    max_calls: int = 400  # a publisher looping forever fails the test instead of hanging it

    def create(self, name: str) -> str:
        dataset_id = str(uuid.uuid4())
        self.datasets[dataset_id] = {}
        self.names[dataset_id] = name
        return dataset_id

    def delete(self, dataset_id: str) -> None:
        del self.datasets[dataset_id]

    def answer(self, dataset_id: str, external_id: str, status: str = "submitted") -> None:
        assert external_id in self.datasets[dataset_id]
        self.responses[(dataset_id, external_id)] = status

    def records(self, name: str) -> dict[str, dict[str, Any]]:
        """The records of the (newest) dataset called `name`, by external id."""
        found = [i for i, n in self.names.items() if n == name and i in self.datasets]
        assert found, f"no dataset {name}"
        return self.datasets[found[-1]]

    def upserts(self) -> list[list[str]]:
        """The external ids of each accepted bulk upsert, in order."""
        return [c.external_ids for c in self.calls if c.method == "PUT" and c.status == 200]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if len(self.calls) >= self.max_calls:
            raise AssertionError(f"more than {self.max_calls} calls to Argilla")
        body = json.loads(request.content or b"{}")
        bulk, search = BULK.match(request.url.path), SEARCH.match(request.url.path)
        match = bulk or search
        assert match, request.url.path
        dataset_id = match.group(1)
        ids = (
            [item["external_id"] for item in body["items"]] if bulk else _terms(body, "external_id")
        )
        call = Call(request.method, dataset_id, ids, 0)
        self.calls.append(call)
        response = self._answer(request, dataset_id, body, bool(bulk))
        call.status = response.status_code
        return response

    def _answer(
        self, request: httpx.Request, dataset_id: str, body: dict[str, Any], bulk: bool
    ) -> httpx.Response:
        assert request.headers["X-Argilla-Api-Key"] == "secret-key"
        if self.outage:
            fault = self.outage.pop(0)
            if isinstance(fault, int):
                return httpx.Response(fault, json={"detail": "scripted fault"})
            raise fault("scripted transport fault")
        if dataset_id not in self.datasets or self.not_found:
            return httpx.Response(404, json={"detail": f"Dataset with id `{dataset_id}` not found"})
        records = self.datasets[dataset_id]
        if not bulk:
            assert request.method == "POST"
            statuses = set(_terms(body, "status"))
            hits = [
                {"record": {"id": str(uuid.uuid4()), "external_id": i, "fields": records[i]}}
                for i in _terms(body, "external_id")
                if self.responses.get((dataset_id, i)) in statuses
            ]
            limit = int(request.url.params.get("limit", "50"))
            return httpx.Response(200, json={"items": hits[:limit], "total": len(hits)})
        assert request.method == "PUT"
        items = body["items"]
        if self.too_large_above is not None and len(items) > self.too_large_above:
            return httpx.Response(413, text="<html>413 Request Entity Too Large</html>")
        if any(item["external_id"] in self.too_large_ids for item in items):
            return httpx.Response(413, text="<html>413 Request Entity Too Large</html>")
        for position, item in enumerate(items):
            if item["external_id"] in self.invalid_ids:
                detail = f"Record at position {position} is not valid because of a scripted reason"
                return httpx.Response(422, json={"detail": detail})
        for item in items:
            records[item["external_id"]] = item
        return httpx.Response(200, json={"items": items, "updated_item_ids": []})


def _terms(body: dict[str, Any], prop: str) -> list[str]:
    """The values of the terms filter on `prop` in a search body."""
    for condition in (body.get("filters") or {}).get("and") or []:
        if condition["scope"].get("property") == prop and condition["type"] == "terms":
            return list(condition["values"])
    return []
