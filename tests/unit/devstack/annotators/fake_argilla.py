"""An in-memory Argilla 2.8 behind an httpx transport: the REST calls bot annotators make.

Users with roles and API keys, workspaces and their members, datasets with questions and a
`min_submitted`, records with suggestions and one response per user (a record is completed
once it has `min_submitted` submitted responses), and the annotator's bulk upsert, which
refuses non-members and submissions missing a required question, as Argilla does.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from devstack.annotators.rest import API_KEY_HEADER
from shared.events import Record
from shared.templates import Template

OWNER_KEY = "owner-key"


@dataclass
class FakeDataset:
    id: str
    name: str
    workspace_id: str
    min_submitted: int
    questions: list[dict[str, Any]]
    records: list[dict[str, Any]] = field(default_factory=list)


class FakeArgilla:
    def __init__(self) -> None:
        owner = {"id": "u-owner", "username": "owner", "role": "owner", "api_key": OWNER_KEY}
        self.users: dict[str, dict[str, Any]] = {owner["id"]: owner}
        self.workspaces: dict[str, str] = {}  # id -> name
        self.members: dict[str, set[str]] = {}
        self.datasets: dict[str, FakeDataset] = {}
        self.bulk_calls = 0

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- set-up -----------------------------------------------------------------------------

    def workspace(self, name: str) -> str:
        for wid, known in self.workspaces.items():
            if known == name:
                return wid
        wid = f"w-{name}"
        self.workspaces[wid] = name
        self.members[wid] = set()
        return wid

    def add_user(self, username: str, role: str = "annotator") -> dict[str, Any]:
        user = {
            "id": f"u-{username}",
            "username": username,
            "role": role,
            "api_key": f"k-{username}",
        }
        self.users[user["id"]] = user
        return user

    def add_dataset(
        self,
        workspace: str,
        name: str,
        template: Template,
        records: list[Record],
        min_submitted: int = 1,
    ) -> FakeDataset:
        questions = [
            {"id": f"q-{name}-{q.name}", "name": q.name, "required": q.required}
            for q in template.settings(min_submitted).questions
        ]
        dataset = FakeDataset(
            f"d-{uuid.uuid4().hex[:8]}", name, self.workspace(workspace), min_submitted, questions
        )
        ids = {q["name"]: q["id"] for q in questions}
        for record in records:
            shown = template.to_record(record)
            suggestions = []
            for s in shown.suggestions:
                value = s.value
                if isinstance(value, list) and s.question_name == "ranking":
                    value = [{"value": v, "rank": None} for v in value]  # as Argilla stores it
                suggestions.append({"question_id": ids[s.question_name], "value": value})
            dataset.records.append(
                {
                    "id": f"a-{record.record_id}",
                    "external_id": record.record_id,
                    "fields": dict(shown.fields),
                    "metadata": dict(shown.metadata),
                    "suggestions": suggestions,
                    "responses": {},  # user id -> {"status", "values"}
                }
            )
        self.datasets[dataset.id] = dataset
        return dataset

    def responses(self, dataset: FakeDataset) -> dict[str, dict[str, dict[str, Any]]]:
        """Per record external id, per username, the stored response."""
        return {
            r["external_id"]: {self.users[u]["username"]: v for u, v in r["responses"].items()}
            for r in dataset.records
        }

    def status(self, dataset: FakeDataset, record: dict[str, Any]) -> str:
        submitted = sum(v["status"] == "submitted" for v in record["responses"].values())
        return "completed" if submitted >= dataset.min_submitted else "pending"

    # -- the API ----------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        caller = next(
            (u for u in self.users.values() if u["api_key"] == request.headers[API_KEY_HEADER]),
            None,
        )
        if caller is None:
            return httpx.Response(401, json={"detail": "bad key"})
        body = json.loads(request.content) if request.content else None
        path, method = request.url.path, request.method
        params = request.url.params
        parts = path.split("/")
        if path == "/api/v1/me/responses/bulk" and method == "POST":
            self.bulk_calls += 1
            return httpx.Response(
                200, json={"items": [self._upsert(caller, i) for i in body["items"]]}
            )
        if caller["role"] != "owner":
            return httpx.Response(403, json={"detail": "owners only here"})
        if path == "/api/v1/users" and method == "GET":
            return httpx.Response(200, json={"items": list(self.users.values())})
        if path == "/api/v1/users" and method == "POST":
            user = self.add_user(body["username"], body["role"])
            user["password"] = body["password"]
            return httpx.Response(201, json=user)
        if parts[:4] == ["", "api", "v1", "users"] and method == "PATCH":
            self.users[parts[4]]["password"] = body["password"]
            return httpx.Response(200, json=self.users[parts[4]])
        if path == "/api/v1/me/workspaces":
            items = [{"id": wid, "name": name} for wid, name in self.workspaces.items()]
            return httpx.Response(200, json={"items": items})
        if path == "/api/v1/workspaces" and method == "POST":
            return httpx.Response(
                201, json={"id": self.workspace(body["name"]), "name": body["name"]}
            )
        if parts[:4] == ["", "api", "v1", "workspaces"] and parts[5:] == ["users"]:
            if method == "POST":
                self.members[parts[4]].add(body["user_id"])
                return httpx.Response(201, json=self.users[body["user_id"]])
            users = [self.users[u] for u in sorted(self.members[parts[4]])]
            return httpx.Response(200, json={"items": users})
        if path == "/api/v1/me/datasets":
            items = [
                {"id": d.id, "name": d.name, "distribution": {"min_submitted": d.min_submitted}}
                for d in self.datasets.values()
                if d.workspace_id == params["workspace_id"]
            ]
            return httpx.Response(200, json={"items": items})
        if parts[:4] == ["", "api", "v1", "datasets"] and parts[5:] == ["questions"]:
            return httpx.Response(200, json={"items": self.datasets[parts[4]].questions})
        if parts[:4] == ["", "api", "v1", "datasets"] and parts[5:] == ["records"]:
            return self._records(
                self.datasets[parts[4]], int(params["offset"]), int(params["limit"])
            )
        return httpx.Response(404, json={"detail": f"no route {method} {path}"})

    def _records(self, dataset: FakeDataset, offset: int, limit: int) -> httpx.Response:
        page = dataset.records[offset : offset + limit]
        items = [
            {
                "id": r["id"],
                "external_id": r["external_id"],
                "status": self.status(dataset, r),
                "fields": r["fields"],
                "metadata": r["metadata"],
                "suggestions": r["suggestions"],
                "responses": [
                    {"user_id": user, "status": v["status"]} for user, v in r["responses"].items()
                ],
            }
            for r in page
        ]
        return httpx.Response(200, json={"items": items, "total": len(dataset.records)})

    def _upsert(self, caller: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
        for dataset in self.datasets.values():
            for record in dataset.records:
                if record["id"] != item["record_id"]:
                    continue
                if caller["id"] not in self.members[dataset.workspace_id]:
                    return {"item": None, "error": {"detail": "not a member"}}
                missing = [
                    q["name"]
                    for q in dataset.questions
                    if q["required"] and q["name"] not in item["values"]
                ]
                if item["status"] == "submitted" and missing:
                    return {"item": None, "error": {"detail": f"missing {missing}"}}
                stored = {"status": item["status"], "values": item["values"]}
                record["responses"][caller["id"]] = stored
                return {"item": stored, "error": None}
        return {"item": None, "error": {"detail": "no such record"}}
