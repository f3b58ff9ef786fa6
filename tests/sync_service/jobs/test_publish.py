"""The publish jobs: a resync is a full reconcile, recorded as one (so the periodic reconcile after it is
incremental), and a reconcile of a project forgotten since it was queued touches nothing. Real Redis and
moto's S3; Label Studio is an in-memory double."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pytest
from redis import Redis

from converters.labelconfig import build_label_config
from sync_service.domain.bootstrap import webhook_fields
from sync_service.domain.context import Context
from sync_service.domain.projects import ProjectInfo, Projects
from sync_service.domain.reconcile import reconcile
from sync_service.edges.s3 import Storage, client_for
from sync_service.edges.state import ProjectState
from sync_service.jobs import publish as publish_jobs
from tests import realparts
from tests.builders import choices, service_settings, task


class HookedLabelStudio:
    """One project's config, tasks and webhooks, in memory."""

    url = "http://127.0.0.1:9"

    def __init__(self, config: str, tasks: list[dict[str, Any]]) -> None:
        self.config = config
        self.tasks = {t["id"]: t for t in tasks}
        self.hooks: list[dict[str, Any]] = []

    def project(self, project_id: int, *, fields: Sequence[str] = ()) -> dict[str, Any]:
        return {"id": project_id, "label_config": self.config}

    def export_tasks(
        self, project_id: int, task_ids: Iterable[int] | None = None
    ) -> Iterator[dict[str, Any]]:
        wanted = sorted(self.tasks) if task_ids is None else sorted(set(task_ids) & set(self.tasks))
        return (copy.deepcopy(self.tasks[i]) for i in wanted)

    def predictions(self, **_: Any) -> Iterator[dict[str, Any]]:
        return iter(())

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        return [dict(h) for h in self.hooks]

    def create_webhook(self, project_id: int, **fields: Any) -> dict[str, Any]:
        self.hooks.append({"id": len(self.hooks) + 1, "project": project_id, **fields})
        return self.hooks[-1]


class Untouchable:
    """A Label Studio that fails the test at any use."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Label Studio was used: {name}")


@pytest.fixture
def parts(redis_url: str, s3: realparts.S3, bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    settings = service_settings(
        redis_url=redis_url, s3_endpoint=s3.endpoint_url, s3_region=s3.region, bucket=bucket
    )
    redis = Redis.from_url(redis_url)
    storage = Storage(client_for(settings), bucket)
    projects = Projects(redis, storage, "customlabels")
    pid = 700_000 + uuid.uuid4().int % 99_999
    yield settings, redis, storage, projects, pid
    ProjectState(redis, pid).forget()
    projects.forget(pid)


def test_a_resync_is_a_full_reconcile_recorded_as_one(parts: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, redis, storage, projects, pid = parts
    projects.save(ProjectInfo(pid, "resync", f"resync-{pid}"))
    ls = HookedLabelStudio(
        build_label_config(choices=["cat", "dog"]),
        [task("s3://b/1.jpg", choices("cat"), tid=1, dataset="train"), task("s3://b/2.jpg", tid=2)],
    )
    made = Context(settings, redis, storage, ls, projects)  # type: ignore[arg-type]
    monkeypatch.setattr(publish_jobs, "context", lambda: made)
    state = ProjectState(redis, pid)
    assert state.reconcile_marks() == {}
    done = publish_jobs.reconcile_job(pid)
    assert done is not None and done["published"] and done["entries"] == {"train": 2, "test": 0}
    marks = state.reconcile_marks()
    assert marks.keys() == {"last", "full"}  # the next periodic reconcile is an incremental one
    assert [h["url"] for h in ls.hooks] == [webhook_fields(settings)["url"]]  # its webhook checked (made)


def test_a_project_forgotten_since_its_reconcile_was_queued_is_left_alone(parts: Any) -> None:
    settings, redis, storage, projects, pid = parts
    made = Context(settings, redis, storage, Untouchable(), projects)  # type: ignore[arg-type]
    for full in (False, True):
        result = reconcile(made, pid, full=full)
        assert result.published is None and not result.webhook_repaired
    assert ProjectState(redis, pid).reconcile_marks() == {}
