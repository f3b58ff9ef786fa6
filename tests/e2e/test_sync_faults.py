"""Label Studio or S3 away during a publish: the job fails, the events wait, nothing is lost.

The publisher runs in-process here (the worker's job calls exactly this) against the real Label Studio,
Redis and moto S3, with one edge pointed at a closed loopback port to play the outage.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest
from redis import Redis
from rq import Queue

from converters.labelconfig import build_label_config
from plugin.localstack.processes import free_port
from sync_service.config import Settings
from sync_service.domain.bootstrap import create_project
from sync_service.domain.context import Context, make_context
from sync_service.domain.publisher import Publisher
from sync_service.edges.labelstudio import LabelStudio
from sync_service.edges.s3 import Storage
from sync_service.edges.state import ProjectState
from sync_service.errors import LabelStudioError, StorageError
from sync_service.jobs.publish import enqueue_publish
from tests.builders import choices
from tests.realparts import LabelStudioServer

SECRET = "fault-test-webhook-secret-0123456789"


@pytest.fixture
def ctx(
    label_studio: LabelStudioServer, redis_url: str, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Context:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    settings = Settings(
        ls_url=label_studio.url,
        ls_api_key=label_studio.token,
        redis_url=redis_url,
        s3_endpoint=s3.endpoint_url,
        s3_region="us-east-1",
        bucket=bucket,
        prefix="customlabels",
        webhook_secret=SECRET,
        queue=f"faults-{uuid.uuid4().hex[:8]}",
        service_url=f"http://127.0.0.1:{free_port()}",  # nobody listens: Label Studio's webhooks are lost
    )
    return make_context(settings)


def _project(ctx: Context, label_studio: LabelStudioServer) -> tuple[int, str, int]:
    made = create_project(
        ctx.settings,
        ctx.projects,
        title=f"Faults {uuid.uuid4().hex[:6]}",
        labels=["cat"],
        s3_credentials=("testing", "testing"),
    )
    client = label_studio.client()
    pid = made.info.label_studio_project_id
    client.projects.update(id=pid, label_config=build_label_config(choices=["cat", "dog"]))
    ref = f"s3://{ctx.settings.bucket}/{ctx.projects.key(made.info, 'images/a.jpg')}"
    client.projects.import_tasks(id=pid, request=[{"image": ref, "dataset": "train"}])
    return (
        pid,
        ctx.projects.key(made.info, "train.manifest"),
        int(next(iter(client.tasks.list(project=pid))).id),
    )


def _manifest(ctx: Context, key: str) -> bytes | None:
    return ctx.storage.get_bytes(key)


def test_label_studio_away_then_back(ctx: Context, label_studio: LabelStudioServer) -> None:
    pid, key, task_id = _project(ctx, label_studio)
    ctx.publisher.publish(pid, force=True)
    label_studio.client().annotations.create(id=task_id, result=[choices("dog")])
    state = ProjectState(ctx.redis, pid)
    state.note(dirty=[task_id])  # what the (lost) webhook would have recorded

    away = Publisher(
        ctx.redis, ctx.storage, LabelStudio(f"http://127.0.0.1:{free_port()}", "x"), ctx.projects
    )
    with pytest.raises(LabelStudioError):
        away.publish(pid)
    assert state.status()["last_error"].startswith("LabelStudioError")
    assert b'"dog"' not in (_manifest(ctx, key) or b"")

    result = ctx.publisher.publish(pid)  # Label Studio is back: the retry finds the events waiting
    assert result is not None and result.published
    assert b'"class-name":"dog"' in (_manifest(ctx, key) or b"")
    assert state.status()["last_error"] is None


def test_s3_away_then_back(ctx: Context, label_studio: LabelStudioServer) -> None:
    pid, key, task_id = _project(ctx, label_studio)
    ctx.publisher.publish(pid, force=True)
    before = _manifest(ctx, key)
    label_studio.client().annotations.create(id=task_id, result=[choices("cat")])
    ProjectState(ctx.redis, pid).note(dirty=[task_id])

    dead = replace(ctx.settings, s3_endpoint=f"http://127.0.0.1:{free_port()}")
    from sync_service.edges.s3 import client_for  # noqa: PLC0415

    away = Publisher(ctx.redis, Storage(client_for(dead), ctx.settings.bucket), ctx.ls, ctx.projects)
    with pytest.raises(StorageError):
        away.publish(pid)
    assert _manifest(ctx, key) == before  # nothing half-written

    result = ctx.publisher.publish(pid)
    assert result is not None and result.published
    assert b'"class-name":"cat"' in (_manifest(ctx, key) or b"")


def test_publish_jobs_retry_with_backoff(ctx: Context) -> None:
    queue = Queue(ctx.settings.queue, connection=Redis.from_url(ctx.settings.redis_url))
    enqueue_publish(queue, 12345)
    job = queue.jobs[0]
    assert job.retries_left == 12
    assert job.retry_intervals[:4] == [1, 2, 4, 8]
    queue.delete(delete_jobs=True)
