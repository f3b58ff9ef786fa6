"""The publish jobs: a resync is a full reconcile, recorded as one (so the periodic reconcile after it is
incremental), and a reconcile of a project forgotten since it was queued touches nothing. Real Redis and
moto's S3; Label Studio is an in-memory double."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from converters.labelconfig import build_label_config
from sync_service.domain.bootstrap import webhook_fields
from sync_service.domain.context import Context
from sync_service.domain.projects import ProjectInfo, Projects
from sync_service.domain.reconcile import reconcile
from sync_service.edges.state import ProjectState
from sync_service.errors import LabelStudioError
from sync_service.jobs import publish as publish_jobs
from tests.builders import MemoryLabelStudio, choices, task
from tests.sync_service.jobs.conftest import ServiceParts


class Untouchable:
    """A Label Studio that fails the test at any use."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Label Studio was used: {name}")


@pytest.fixture
def parts(service_parts: ServiceParts) -> Iterator[Any]:
    settings, redis, storage = service_parts.settings, service_parts.redis, service_parts.storage
    projects = Projects(redis, storage, "customlabels")
    pid = 700_000 + uuid.uuid4().int % 99_999
    yield settings, redis, storage, projects, pid
    ProjectState(redis, pid).forget()
    projects.forget(pid)


def test_a_resync_is_a_full_reconcile_recorded_as_one(parts: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, redis, storage, projects, pid = parts
    projects.save(ProjectInfo(pid, "resync", f"resync-{pid}"))
    ls = MemoryLabelStudio(
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


def test_after_label_studio_was_away_the_next_reconcile_reads_every_task(
    parts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save cut short by a stopped Label Studio can leave an annotation written while its task's
    ``updated_at`` stays and no webhook goes out: only a full read finds it, so the reconcile after a job
    found Label Studio away is a full one (an answer of Label Studio's own, 4xx or 500, is not "away")."""
    settings, redis, storage, projects, pid = parts
    info = ProjectInfo(pid, "away", f"away-{pid}")
    projects.save(info)
    stamp = "2026-01-02T03:04:05.000006Z"
    ls = MemoryLabelStudio(
        build_label_config(choices=["cat", "dog"]),
        [
            {**task("s3://b/1.jpg", choices("cat"), tid=1, dataset="train"), "updated_at": stamp},
            {**task("s3://b/2.jpg", tid=2, dataset="train"), "updated_at": stamp},
        ],
    )
    made = Context(settings, redis, storage, ls, projects)  # type: ignore[arg-type]
    monkeypatch.setattr(publish_jobs, "context", lambda: made)
    state = ProjectState(redis, pid)
    publish_jobs.reconcile_job(pid)
    assert publish_jobs.periodic_reconcile_job(pid)["full"] is False

    def refused(status: int | None) -> Any:
        def call(*_: Any, **__: Any) -> Any:
            raise LabelStudioError("Label Studio failed", method="GET", path="/api/tasks", status=status)

        return call

    for status in (403, 500):  # Label Studio answered: nothing was cut short
        monkeypatch.setattr(ls, "tasks_updated_since", refused(status))
        with pytest.raises(LabelStudioError):
            publish_jobs.periodic_reconcile_job(pid)
        assert "away" not in state.reconcile_marks()
    for status in (None, 502):  # not reached; a proxy's answer for a server process that died
        redis.hdel(state.k_reconcile, "away")
        monkeypatch.setattr(ls, "tasks_updated_since", refused(status))
        with pytest.raises(LabelStudioError):
            publish_jobs.periodic_reconcile_job(pid)
        marks = state.reconcile_marks()
        assert marks["away"] >= marks["full"]
    monkeypatch.undo()
    monkeypatch.setattr(publish_jobs, "context", lambda: made)
    # What the cut-short save left: task 2 annotated, its updated_at as before, no webhook.
    ls.tasks[2] = {**task("s3://b/2.jpg", choices("dog"), tid=2, dataset="train"), "updated_at": stamp}
    assert publish_jobs.periodic_reconcile_job(pid)["full"] is True
    train = storage.get_bytes(projects.key(info, "train.manifest")) or b""
    assert [b"dog" in line for line in train.splitlines()] == [False, True]
    assert publish_jobs.periodic_reconcile_job(pid)["full"] is False  # once
    # A publish, or the job that queues every project's reconcile, finding it away counts as well.
    jobs: list[tuple[Callable[[], object], str]] = [
        (lambda: publish_jobs.publish_job(pid), "export_tasks"),
        (publish_jobs.reconcile_all_job, "project_exists"),
    ]
    for job, method in jobs:
        redis.hdel(state.k_reconcile, "away")
        monkeypatch.setattr(ls, method, refused(None))
        state.note(dirty={1})
        with pytest.raises(LabelStudioError):
            job()
        marks = state.reconcile_marks()
        assert marks["away"] >= marks["full"], method
