"""The incremental reconcile's parts: tasks deleted without their webhook found by counting id ranges,
the Data Manager queries it sends (against an ``httpx.MockTransport`` double of Label Studio), and the
project's webhook checked and repaired."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_service.config import SECRET_HEADER, load_settings
from sync_service.domain.bootstrap import ensure_webhook, webhook_fields
from sync_service.domain.reconcile import deleted_task_ids
from sync_service.edges.labelstudio import LabelStudio


def counter(theirs: set[int], calls: list[tuple[int | None, int | None]]) -> Any:
    def count(above: int | None, below: int | None) -> int:
        calls.append((above, below))
        return sum(1 for t in theirs if (above is None or t > above) and (below is None or t < below))

    return count


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(1, 5000), max_size=400), st.data())
def test_deleted_tasks_are_found_by_counting_ranges(known: set[int], data: st.DataObject) -> None:
    gone = data.draw(st.sets(st.sampled_from(sorted(known)), max_size=5)) if known else set()
    calls: list[tuple[int | None, int | None]] = []
    assert deleted_task_ids(counter(known - gone, calls), sorted(known)) == gone
    # One count when nothing is gone; about two per halving of each range that lost tasks otherwise.
    assert len(calls) <= 1 + 2 * len(gone) * (math.ceil(math.log2(max(len(known), 2))) + 1)
    if not gone:
        assert len(calls) == 1


def test_tasks_we_never_heard_of_ask_for_a_full_read() -> None:
    calls: list[tuple[int | None, int | None]] = []
    assert deleted_task_ids(counter({1, 2, 3, 10}, calls), [1, 2, 3]) is None
    assert deleted_task_ids(counter({5}, calls), []) is None
    assert deleted_task_ids(counter(set(), calls), []) == set()


def test_the_data_manager_queries_of_the_reconcile() -> None:
    seen: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        query = json.loads(request.url.params["query"])
        seen.append({"page": int(request.url.params["page"]), **query})
        items = query["filters"]["items"]
        if items and items[0]["filter"] == "filter:tasks:updated_at":
            page = int(request.url.params["page"])
            ids = [[1, 2], [3]][page - 1]
            tasks = [{"id": i, "updated_at": f"t{i}"} for i in ids]
            return httpx.Response(200, json={"total": 3, "tasks": tasks})
        return httpx.Response(200, json={"total": 42, "tasks": [{"id": 1}]})

    ls = LabelStudio("http://ls.test", "token", transport=httpx.MockTransport(answer))
    since = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    assert ls.tasks_updated_since(7, since) == {1: "t1", 2: "t2", 3: "t3"}
    assert seen[0]["filters"]["items"] == [
        {
            "filter": "filter:tasks:updated_at",
            "operator": "greater",
            "type": "Datetime",
            "value": "2026-01-02T03:04:05.006000Z",
        }
    ]
    assert [s["page"] for s in seen] == [1, 2]
    assert ls.count_tasks(7, above=3, below=9) == 42
    assert seen[-1]["filters"]["items"] == [
        {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": 3},
        {"filter": "filter:tasks:id", "operator": "less", "type": "Number", "value": 9},
    ]


class Hooks:
    """A Label Studio double holding one project's webhooks."""

    def __init__(self, hooks: list[dict[str, Any]]) -> None:
        self.hooks = hooks
        self.changes: list[dict[str, Any]] = []

    def webhooks(self, pid: int) -> list[dict[str, Any]]:
        return [dict(h) for h in self.hooks]

    def update_webhook(self, webhook_id: int, **fields: Any) -> dict[str, Any]:
        self.changes.append(fields)
        hook = next(h for h in self.hooks if h["id"] == webhook_id)
        hook.update(fields)
        return hook

    def create_webhook(self, project_id: int, **fields: Any) -> dict[str, Any]:
        self.hooks.append({"id": 99, "project": project_id, **fields})
        return self.hooks[-1]

    def delete_webhook(self, webhook_id: int) -> bool:
        self.changes.append({"deleted": webhook_id})
        self.hooks = [h for h in self.hooks if h["id"] != webhook_id]
        return True


SETTINGS = load_settings(
    {"CUSTOMLABELS_LS_API_KEY": "k", "CUSTOMLABELS_BUCKET": "bucket", "CUSTOMLABELS_WEBHOOK_SECRET": "s" * 20}
)


def test_a_right_webhook_is_left_alone_and_a_wrong_one_repaired() -> None:
    right = {"id": 5, "project": 3, **webhook_fields(SETTINGS)}
    ls = Hooks([dict(right)])
    assert ensure_webhook(ls, SETTINGS, 3) == (5, [])  # type: ignore[arg-type]
    ls.hooks[0].update(is_active=False, actions=["TASKS_CREATED"], headers={SECRET_HEADER: "old"})
    assert ensure_webhook(ls, SETTINGS, 3) == (5, ["headers", "is_active", "actions"])  # type: ignore[arg-type]
    assert ls.hooks[0] == right
    ls.hooks[0].update(send_payload=False)
    assert ensure_webhook(ls, SETTINGS, 3) == (5, ["send_payload"])  # type: ignore[arg-type]
    assert "actions" in ls.changes[-1]  # Label Studio drops the actions a PATCH does not name
    gone = Hooks([])
    assert ensure_webhook(gone, SETTINGS, 3) == (99, ["url"])  # type: ignore[arg-type]


def test_a_webhook_of_ours_at_an_old_address_is_moved_not_doubled() -> None:
    """The service's URL changed: the webhook that carries our secret gets the new URL (a second one
    would leave Label Studio waiting on the old address in every save); someone else's is left alone."""
    right = {"id": 5, "project": 3, **webhook_fields(SETTINGS)}
    theirs = {
        "id": 4,
        "project": 3,
        "url": "http://elsewhere/hook",
        "headers": {"X-Other": "1"},
        "is_active": True,
    }
    moved = {**right, "url": "http://old-host:5000/webhooks/label-studio"}
    ls = Hooks([dict(theirs), dict(moved)])
    assert ensure_webhook(ls, SETTINGS, 3) == (5, ["url"])  # type: ignore[arg-type]
    assert ls.hooks == [theirs, right]
    # Another deployment's webhook (another secret) at another address is not ours either.
    other = {
        **right,
        "id": 6,
        "url": "http://staging/webhooks/label-studio",
        "headers": {SECRET_HEADER: "t" * 20},
    }
    ls = Hooks([dict(other)])
    assert ensure_webhook(ls, SETTINGS, 3) == (99, ["url"])  # type: ignore[arg-type]
    assert ls.hooks[0] == other


def test_duplicate_webhooks_of_ours_are_deleted() -> None:
    right = {"id": 5, "project": 3, **webhook_fields(SETTINGS)}
    again = {**right, "id": 8}
    elsewhere = {**right, "id": 9, "url": "http://old-host:5000/webhooks/label-studio"}
    ls = Hooks([dict(elsewhere), dict(right), dict(again)])
    assert ensure_webhook(ls, SETTINGS, 3) == (5, ["duplicates"])  # type: ignore[arg-type]
    assert ls.hooks == [right]
    assert {"deleted": 8} in ls.changes and {"deleted": 9} in ls.changes
    assert ensure_webhook(ls, SETTINGS, 3) == (5, [])  # type: ignore[arg-type]
