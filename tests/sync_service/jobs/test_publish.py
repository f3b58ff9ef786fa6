"""The publish jobs: a resync is a full reconcile, recorded as one (so the periodic reconcile after it is
incremental), and a reconcile of a project forgotten since it was queued touches nothing. Real Redis and
moto's S3; Label Studio is an in-memory double."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from converters.labelconfig import build_label_config
from sync_service.domain.bootstrap import webhook_fields
from sync_service.domain.context import Context
from sync_service.domain.projects import ProjectInfo, Projects
from sync_service.domain.reconcile import reconcile
from sync_service.edges.state import ProjectState
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
