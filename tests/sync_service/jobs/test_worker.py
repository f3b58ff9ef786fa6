"""The worker runs a publish of ordinary events in its own process and every other job in a work-horse.
Real Redis and moto's S3; Label Studio is an in-memory double (the work-horse, a fork, has it too)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from rq import Queue

from converters.labelconfig import build_label_config
from sync_service.domain.context import Context
from sync_service.domain.projects import ProjectInfo, Projects
from sync_service.domain.publisher import Publisher
from sync_service.edges.state import ProjectState
from sync_service.jobs import publish as publish_jobs
from sync_service.jobs.publish import enqueue_publish, queue_for
from sync_service.jobs.worker import PublishingWorker, runs_inline
from tests.builders import MemoryLabelStudio, choices, task
from tests.sync_service.jobs.conftest import ServiceParts


@pytest.fixture
def world(
    service_parts: ServiceParts, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Context, int, list[int]]]:
    settings, redis, storage = service_parts.settings, service_parts.redis, service_parts.storage
    projects = Projects(redis, storage, "customlabels")
    pid = 600_000 + uuid.uuid4().int % 99_999
    projects.save(ProjectInfo(pid, "worker", f"worker-{pid}"))
    ls = MemoryLabelStudio(
        build_label_config(choices=["cat", "dog"]),
        [task("s3://b/1.jpg", choices("cat"), tid=1, dataset="train"), task("s3://b/2.jpg", tid=2)],
    )
    ctx = Context(settings, redis, storage, ls, projects)  # type: ignore[arg-type]
    pids: list[int] = []  # the process each publish job ran in

    def context() -> Context:
        pids.append(os.getpid())
        redis.rpush(f"test:{pid}:pids", os.getpid())  # a work-horse's list is its own copy
        return ctx

    monkeypatch.setattr(publish_jobs, "context", context)
    yield ctx, pid, pids
    redis.delete(f"test:{pid}:pids")
    ProjectState(redis, pid).forget()
    projects.forget(pid)


def ran_in(ctx: Context, pid: int) -> list[int]:
    return [int(p) for p in ctx.redis.lrange(f"test:{pid}:pids", 0, -1)]


def test_which_jobs_run_inline(world: tuple[Context, int, list[int]]) -> None:
    ctx, pid, _ = world
    queue: Queue = queue_for(ctx.settings, ctx.redis)
    state = ProjectState(ctx.redis, pid)
    ordinary = queue.enqueue(publish_jobs.publish_job, pid)
    assert not runs_inline(ordinary, ctx.redis)  # no entry cache yet: the first publish is a rebuild
    Publisher(ctx.redis, ctx.storage, ctx.ls, ctx.projects).publish(pid)
    assert runs_inline(ordinary, ctx.redis)
    assert not runs_inline(queue.enqueue(publish_jobs.publish_job, pid, force=True), ctx.redis)
    assert not runs_inline(queue.enqueue(publish_jobs.reconcile_job, pid), ctx.redis)
    state.note(full=True)  # a PROJECT_UPDATED waits: the publish rebuilds
    assert not runs_inline(ordinary, ctx.redis)
    queue.empty()  # type: ignore[no-untyped-call]


def test_an_ordinary_publish_runs_in_the_worker_and_a_rebuild_in_a_work_horse(
    world: tuple[Context, int, list[int]],
) -> None:
    ctx, pid, _ = world
    queue: Queue = queue_for(ctx.settings, ctx.redis)
    worker = PublishingWorker([queue], connection=ctx.redis)
    enqueue_publish(queue, pid, force=True)  # the first publish: a rebuild
    worker.work(burst=True)
    ProjectState(ctx.redis, pid).note(dirty=[2])
    enqueue_publish(queue, pid)
    worker.work(burst=True)
    first, second = ran_in(ctx, pid)
    assert first != os.getpid() and second == os.getpid()
    status = ProjectState(ctx.redis, pid).status()
    assert status["entries"] == {"train": 2, "test": 0} and not status.get("last_error")
    assert queue.finished_job_registry.count == 2 and queue.failed_job_registry.count == 0


@pytest.mark.parametrize(("started_at", "expected"), [(0, 10), (15, 15)])
def test_the_worker_lowers_its_priority_and_never_raises_it(started_at: int, expected: int) -> None:
    # In a child process: a lowered priority cannot be raised again without a privilege.
    code = (
        "import os; from sync_service.jobs.worker import lower_priority; "
        f"os.setpriority(os.PRIO_PROCESS, 0, max({started_at}, os.getpriority(os.PRIO_PROCESS, 0))); "
        "print(lower_priority(10), os.getpriority(os.PRIO_PROCESS, 0))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert done.stdout.split() == [str(max(expected, own))] * 2
