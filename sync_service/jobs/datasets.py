"""Rekognition's asynchronous dataset operations: starting them, and the RQ jobs doing the work.

CreateDataset from a manifest or from another dataset, UpdateDatasetEntries, DistributeDatasetEntries
and DeleteDataset answer at once: :class:`DatasetJobs` checks the dataset's status, records
``*_IN_PROGRESS`` and queues a job. The job does the work with
:class:`sync_service.domain.datasets.Datasets` and finishes the status as
:mod:`sync_service.domain.status` says. Jobs are not retried: as with Rekognition, a failed operation is
the caller's to repeat, and a distribute stopped half-way must not run again over its own result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError
from rq import Queue

from converters import codes
from converters.jsonio import iter_lines
from sync_service.domain.datasets import DATASETS, DatasetError, Datasets, ImportResult, invalid
from sync_service.domain.projects import ProjectInfo
from sync_service.domain.status import (
    CREATE_COMPLETE,
    CREATE_FAILED,
    CREATE_IN_PROGRESS,
    CREATED_EMPTY,
    CREATED_FROM_DATASET,
    CREATED_FROM_MANIFEST,
    DELETE_IN_PROGRESS,
    IN_PROGRESS,
    NOT_QUEUED,
    SERVICE_ERROR,
    SUCCESS,
    UPDATE_FAILED,
    UPDATE_IN_PROGRESS,
    UPDATED,
    DatasetStatus,
    failure,
)
from sync_service.jobs.publish import JOB_TIMEOUT, context

log = logging.getLogger(__name__)

ZERO_STATS = {"LabeledEntries": 0, "TotalEntries": 0, "TotalLabels": 0, "ErrorEntries": 0}


def _stats_key(project_id: int, dataset: str) -> str:
    # The last DatasetStats computed, shown while an operation runs (Redis: a cache, rebuilt on read).
    return f"cl:p:{project_id}:stats:{dataset}"


class DatasetJobs:
    """Start the asynchronous dataset operations and read the records they leave."""

    def __init__(self, ops: Datasets, queue: Queue | None = None) -> None:
        self.ops = ops
        self.queue = queue
        self.status = DatasetStatus(ops)

    # --------------------------------------------------------------------------------- operations

    def create(
        self,
        info: ProjectInfo,
        dataset: str,
        *,
        manifest: dict[str, str] | None = None,
        copy_of: tuple[ProjectInfo, str] | None = None,
    ) -> dict[str, Any]:
        """CreateDataset: empty (complete at once), from a manifest in S3 (``Bucket``, ``Name``,
        ``Version``) or a copy of another project's dataset (queued); returns the new record."""
        pid = info.label_studio_project_id
        source: dict[str, Any] | None = None
        if manifest is not None:
            source = {"manifest": dict(manifest)}
        elif copy_of is not None:
            other, other_dataset = copy_of
            if other.label_studio_project_id == pid:
                # One task per image and project: a copy inside the project would move the entries.
                raise invalid(
                    "A dataset can be copied only from another project; "
                    "use DistributeDatasetEntries to split a project's training dataset."
                )
            self.status.busy(other, other_dataset, "InvalidParameterException")
            source = {"dataset": [other.label_studio_project_id, other_dataset]}
        with self.ops.ctx.projects.lock(pid):
            info = self.status.fresh(pid)
            if info.has_dataset(dataset):
                raise DatasetError(
                    "ResourceAlreadyExistsException", f"The project already has a {dataset.upper()} dataset."
                )
            if source is None:
                info = self.ops.set_status(info, dataset, CREATE_COMPLETE, CREATED_EMPTY)
            else:
                info = self.ops.set_status(info, dataset, CREATE_IN_PROGRESS)
        record = dict((info.datasets or {})[dataset])
        if source is not None:
            self._enqueue(
                create_dataset_job,
                (pid, dataset, source),
                f"CreateDataset {dataset} of project {pid}",
                undo=lambda: self.status.set(pid, [dataset], CREATE_FAILED, NOT_QUEUED, SERVICE_ERROR),
            )
        return record

    def update(self, info: ProjectInfo, dataset: str, ground_truth: bytes) -> None:
        """UpdateDatasetEntries: queued; ResourceInUseException while the dataset is in progress."""
        pid = info.label_studio_project_id
        with self.ops.ctx.projects.lock(pid):
            info = self.status.fresh(pid)
            self.status.busy(info, dataset, "ResourceInUseException")
            self.ops.set_status(info, dataset, UPDATE_IN_PROGRESS)
        self._enqueue(
            update_entries_job,
            (pid, dataset, ground_truth),
            f"UpdateDatasetEntries {dataset} of project {pid}",
            undo=lambda: self.status.set(pid, [dataset], UPDATE_FAILED, NOT_QUEUED, SERVICE_ERROR),
        )

    def distribute(self, info: ProjectInfo) -> None:
        """DistributeDatasetEntries: both datasets UPDATE_IN_PROGRESS, queued;
        ResourceNotReadyException while either is in progress."""
        pid = info.label_studio_project_id
        with self.ops.ctx.projects.lock(pid):
            info = self.status.fresh(pid)
            for dataset in DATASETS:
                self.status.busy(info, dataset, "ResourceNotReadyException")
            for dataset in DATASETS:
                info = self.ops.set_status(info, dataset, UPDATE_IN_PROGRESS)
        self._enqueue(
            distribute_job,
            (pid,),
            f"DistributeDatasetEntries of project {pid}",
            undo=lambda: self.status.set(pid, DATASETS, UPDATE_FAILED, NOT_QUEUED, SERVICE_ERROR),
        )

    def delete(self, info: ProjectInfo, dataset: str) -> None:
        """DeleteDataset: DELETE_IN_PROGRESS, queued; ResourceInUseException while in progress."""
        pid = info.label_studio_project_id
        with self.ops.ctx.projects.lock(pid):
            info = self.status.fresh(pid)
            before = self.status.busy(info, dataset, "ResourceInUseException")
            self.ops.set_status(info, dataset, DELETE_IN_PROGRESS)
        previous = [before["status"], before.get("status_message", ""), before.get("status_code", SUCCESS)]
        self._enqueue(
            delete_dataset_job,
            (pid, dataset, previous),
            f"DeleteDataset {dataset} of project {pid}",
            undo=lambda: self.status.set(pid, [dataset], *previous),
        )

    def _enqueue(
        self, job: Callable[..., Any], args: tuple[Any, ...], description: str, *, undo: Callable[[], None]
    ) -> None:
        if self.queue is None:
            raise RuntimeError("DatasetJobs needs a queue to start an operation")
        try:
            self.queue.enqueue(job, *args, job_timeout=JOB_TIMEOUT, description=description)
        except Exception:
            undo()
            raise

    # ------------------------------------------------------------------------------------ reading

    def stats(self, info: ProjectInfo, dataset: str, record: dict[str, Any]) -> dict[str, int]:
        """DescribeDataset's ``DatasetStats``: counted now, or while an operation runs on the dataset,
        the last ones counted (zeros for a dataset being created)."""
        key = _stats_key(info.label_studio_project_id, dataset)
        redis = self.ops.ctx.redis
        if record["status"] in IN_PROGRESS:
            raw = redis.get(key) if record["status"] != CREATE_IN_PROGRESS else None
            return dict(orjson.loads(raw)) if raw else dict(ZERO_STATS)
        stats = {name: int(value) for name, value in self.ops.describe(info, dataset).items()}
        redis.set(key, orjson.dumps(stats))
        return stats

    @staticmethod
    def readable(dataset: str, record: dict[str, Any]) -> None:
        """Whether the dataset's entries and labels can be listed now: ResourceNotReadyException while
        it is being created, ResourceInUseException while it is being updated or deleted."""
        status = record["status"]
        if status == CREATE_IN_PROGRESS:
            raise DatasetError(
                "ResourceNotReadyException", f"The {dataset.upper()} dataset is being created."
            )
        if status in IN_PROGRESS:
            raise DatasetError("ResourceInUseException", f"The {dataset.upper()} dataset is {status}.")

    def forget(self, project_id: int, datasets: Sequence[str] = DATASETS) -> None:
        """Drop the stats kept for these datasets (deleted)."""
        self.ops.ctx.redis.delete(*[_stats_key(project_id, dataset) for dataset in datasets])


# ------------------------------------------------------------------------------------------- jobs


def create_dataset_job(project_id: int, dataset: str, source: dict[str, Any]) -> dict[str, Any]:
    """Job: fill a new dataset from its manifest or source dataset; CREATE_COMPLETE or CREATE_FAILED."""

    def work(ops: Datasets, info: ProjectInfo) -> dict[str, Any]:
        if "manifest" in source:
            return _import_manifest(ops, info, dataset, source["manifest"]).as_json()
        other_id, other_dataset = source["dataset"]
        return ops.from_dataset(info, dataset, ops.project(int(other_id)), other_dataset).as_json()

    done = CREATED_FROM_MANIFEST if "manifest" in source else CREATED_FROM_DATASET
    return _run(project_id, [dataset], "CREATE", done, work)


def update_entries_job(project_id: int, dataset: str, ground_truth: bytes) -> dict[str, Any]:
    """Job: UpdateDatasetEntries' lines replace or add entries; UPDATE_COMPLETE or UPDATE_FAILED."""
    return _run(
        project_id,
        [dataset],
        "UPDATE",
        UPDATED,
        lambda ops, info: ops.update_entries(info, dataset, ground_truth).as_json(),
    )


def distribute_job(project_id: int) -> dict[str, Any]:
    """Job: move 20% of the training entries into the empty test dataset; both datasets then
    UPDATE_COMPLETE, or both UPDATE_FAILED."""
    return _run(
        project_id,
        DATASETS,
        "UPDATE",
        UPDATED,
        lambda ops, info: dict(ops.distribute(info)),
    )


def delete_dataset_job(project_id: int, dataset: str, previous: list[str]) -> dict[str, Any]:
    """Job: delete the dataset's tasks and record; on failure the dataset goes back to its status from
    before (``previous``: status, message, code), with a message saying the delete failed."""
    opened = _open(project_id)
    if opened is None:
        return {"status": "project gone"}
    ops, jobs, info = opened
    try:
        ops.delete_dataset(info, dataset)
    except Exception as exc:
        code, _ = failure(exc)
        jobs.status.set(project_id, [dataset], previous[0], f"The dataset could not be deleted: {exc}", code)
        if code == SERVICE_ERROR:
            raise
        return {"status": previous[0], "message": str(exc)}
    jobs.forget(project_id, [dataset])
    return {"status": "deleted"}


def _run(
    project_id: int,
    datasets: Sequence[str],
    verb: str,
    message: str,
    work: Callable[[Datasets, ProjectInfo], dict[str, Any]],
) -> dict[str, Any]:
    opened = _open(project_id)
    if opened is None:
        return {"status": "project gone"}
    ops, jobs, info = opened
    try:
        with jobs.status.finishing(project_id, datasets, verb, message):
            result = work(ops, info)
    except Exception as exc:
        code, text = failure(exc)
        if code == SERVICE_ERROR:
            raise  # the worker logs it and keeps the job in RQ's failed registry
        log.info("project %s %s_FAILED: %s", project_id, verb, exc)
        return {"status": f"{verb}_FAILED", "message": text}
    return {"status": f"{verb}_COMPLETE", **result}


def _open(project_id: int) -> tuple[Datasets, DatasetJobs, ProjectInfo] | None:
    """A job's dataset operations, status records and project; None when the project is gone."""
    ops = Datasets(context())
    try:
        return ops, DatasetJobs(ops), ops.project(project_id)
    except DatasetError:
        return None


def _import_manifest(
    ops: Datasets, info: ProjectInfo, dataset: str, s3object: dict[str, str]
) -> ImportResult:
    location = f"s3://{s3object['Bucket']}/{s3object['Name']}"
    ops.sources.check(location)
    version = s3object.get("Version")
    if not version:
        return ops.from_manifest(info, dataset, location)
    storage = ops.ctx.storage
    with storage.spool() as spool:
        try:
            storage.client.download_fileobj(
                s3object["Bucket"], s3object["Name"], spool, ExtraArgs={"VersionId": version}
            )
        except (BotoCoreError, ClientError) as exc:
            code = codes.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT
            raise invalid(
                f"{location} (version {version}): {codes.message(code)} ({exc})", code=code
            ) from exc
        spool.seek(0)
        lines = iter_lines(spool, max_chars=codes.DEFAULT_LIMITS.max_line_chars)
        return ops.from_manifest_lines(info, dataset, lines, source=f"{location} (version {version})")
