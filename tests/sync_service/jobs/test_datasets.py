"""The dataset jobs' outcome: *_COMPLETE/SUCCESS, *_FAILED with CLIENT_ERROR for bad input (no raise),
*_FAILED with SERVICE_ERROR for anything else (raised, so RQ keeps the job as failed), and a failed
delete back to the status from before. Real Redis and moto's S3; Label Studio unreachable on purpose."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sync_service.domain.context import Context
from sync_service.domain.datasets import Datasets, dataset_record, invalid
from sync_service.domain.projects import ProjectInfo, Projects
from sync_service.domain.status import UPDATED
from sync_service.edges.labelstudio import LabelStudio
from sync_service.edges.state import PROJECTS_KEY
from sync_service.errors import LabelStudioError, StorageError
from sync_service.jobs import datasets as dataset_jobs
from tests.sync_service.jobs.conftest import ServiceParts


@pytest.fixture
def ctx(service_parts: ServiceParts, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    # Label Studio's URL: nothing answers, so an operation that reaches it fails.
    settings, redis, storage = service_parts.settings, service_parts.redis, service_parts.storage
    made = Context(
        settings,
        redis,
        storage,
        LabelStudio(settings.ls_url, "unused"),
        Projects(redis, storage, "customlabels"),
    )
    monkeypatch.setattr(dataset_jobs, "context", lambda: made)
    yield made
    for info in made.projects.scan():
        redis.hdel(PROJECTS_KEY, str(info.label_studio_project_id))


def project(ctx: Context, status: str) -> ProjectInfo:
    pid = 800_000 + uuid.uuid4().int % 99_999
    info = ProjectInfo(
        label_studio_project_id=pid,
        title="jobs",
        slug=f"jobs-{pid}",
        created=time.time(),
        datasets={"train": dataset_record(status), "test": dataset_record(status)},
    )
    ctx.projects.save(info)
    return info


def record(ctx: Context, info: ProjectInfo, dataset: str) -> dict[str, Any]:
    found = ctx.projects.find(info.label_studio_project_id)
    assert found is not None and found.datasets is not None
    return found.datasets[dataset]


def run(info: ProjectInfo, work: Any) -> dict[str, Any]:
    return dataset_jobs._run(
        info.label_studio_project_id,
        ["train", "test"],
        "UPDATE",
        UPDATED,
        work,
    )


def test_work_done_is_complete(ctx: Context) -> None:
    info = project(ctx, "UPDATE_IN_PROGRESS")
    assert run(info, lambda ops, i: {"train": 8, "test": 2}) == {
        "status": "UPDATE_COMPLETE",
        "train": 8,
        "test": 2,
    }
    for side in ("train", "test"):
        assert record(ctx, info, side)["status"] == "UPDATE_COMPLETE"
        assert record(ctx, info, side)["status_code"] == "SUCCESS"


def test_bad_input_fails_with_client_error(ctx: Context) -> None:
    info = project(ctx, "UPDATE_IN_PROGRESS")

    def work(ops: Datasets, i: ProjectInfo) -> dict[str, Any]:
        raise invalid("the test dataset is not empty (2 entries)")

    result = run(info, work)
    assert result["status"] == "UPDATE_FAILED"
    train = record(ctx, info, "train")
    assert (train["status"], train["status_code"]) == ("UPDATE_FAILED", "CLIENT_ERROR")
    assert train["status_message"] == "the test dataset is not empty (2 entries)"


def test_anything_else_fails_with_service_error_and_is_raised(ctx: Context) -> None:
    info = project(ctx, "UPDATE_IN_PROGRESS")

    def work(ops: Datasets, i: ProjectInfo) -> dict[str, Any]:
        raise StorageError("S3 upload failed")

    with pytest.raises(StorageError):
        run(info, work)
    test = record(ctx, info, "test")
    assert (test["status"], test["status_code"]) == ("UPDATE_FAILED", "SERVICE_ERROR")
    assert "S3 upload failed" in test["status_message"]


def test_a_failed_delete_goes_back_to_the_status_before(ctx: Context) -> None:
    info = project(ctx, "DELETE_IN_PROGRESS")
    with pytest.raises(LabelStudioError):  # Label Studio does not answer
        dataset_jobs.delete_dataset_job(
            info.label_studio_project_id, "test", ["UPDATE_FAILED", "", "CLIENT_ERROR"]
        )
    test = record(ctx, info, "test")
    assert (test["status"], test["status_code"]) == ("UPDATE_FAILED", "SERVICE_ERROR")
    assert test["status_message"].startswith("The dataset could not be deleted")
    assert record(ctx, info, "train")["status"] == "DELETE_IN_PROGRESS"  # untouched


def test_a_job_for_a_deleted_project_does_nothing(ctx: Context) -> None:
    assert dataset_jobs.distribute_job(799_999) == {"status": "project gone"}
