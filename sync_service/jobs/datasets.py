"""Rekognition's asynchronous dataset operations: the status machine, and the RQ jobs doing the work.

CreateDataset from a manifest or from another dataset, UpdateDatasetEntries, DistributeDatasetEntries
and DeleteDataset answer at once: :class:`DatasetJobs` checks the dataset's status, records
``*_IN_PROGRESS`` and queues a job. The job does the work with :class:`sync_service.domain.datasets.Datasets` and
records ``*_COMPLETE``, or ``*_FAILED`` with a ``StatusMessage`` and a ``StatusMessageCode``:
``CLIENT_ERROR`` when the input was wrong (a :class:`DatasetError`, e.g. a manifest with more than 20%
invalid lines, or one that cannot be read) and ``SERVICE_ERROR`` otherwise (Label Studio or S3
failed). Jobs are not retried: as with Rekognition, a failed operation is the caller's to repeat, and a
distribute stopped half-way must not run again over its own result.

Status machine (spec §3.9)::

    (none) --create--> CREATE_IN_PROGRESS --> CREATE_COMPLETE | CREATE_FAILED   (empty: CREATE_COMPLETE)
    not *_IN_PROGRESS --update/distribute--> UPDATE_IN_PROGRESS --> UPDATE_COMPLETE | UPDATE_FAILED
    not *_IN_PROGRESS --delete--> DELETE_IN_PROGRESS --> gone (on failure: back to the status before)

Record writes (read, change, save ``project.json``) hold the project's record lock
(:meth:`Projects.lock`), never the long dataset lock the operations themselves take, so a request
never waits for a running import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError
from rq import Queue

from converters import codes as C
from converters.jsonio import iter_lines
from sync_service.domain.datasets import DATASETS, DatasetError, Datasets, ImportResult, invalid, not_found
from sync_service.domain.projects import ProjectInfo
from sync_service.jobs.publish import JOB_TIMEOUT, context

log = logging.getLogger(__name__)

CREATE_IN_PROGRESS = "CREATE_IN_PROGRESS"
CREATE_COMPLETE = "CREATE_COMPLETE"
CREATE_FAILED = "CREATE_FAILED"
UPDATE_IN_PROGRESS = "UPDATE_IN_PROGRESS"
UPDATE_COMPLETE = "UPDATE_COMPLETE"
UPDATE_FAILED = "UPDATE_FAILED"
DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"
IN_PROGRESS = frozenset({CREATE_IN_PROGRESS, UPDATE_IN_PROGRESS, DELETE_IN_PROGRESS})
SUCCESS, CLIENT_ERROR, SERVICE_ERROR = "SUCCESS", "CLIENT_ERROR", "SERVICE_ERROR"

CREATED_EMPTY = "The dataset was successfully created."
CREATED_FROM_MANIFEST = "The dataset was successfully created from the manifest file."
CREATED_FROM_DATASET = "The dataset was successfully created from the source dataset."
UPDATED = "The dataset was successfully updated."
ZERO_STATS = {"LabeledEntries": 0, "TotalEntries": 0, "TotalLabels": 0, "ErrorEntries": 0}


def _stats_key(project_id: int, dataset: str) -> str:
    # The last DatasetStats computed, shown while an operation runs (Redis: a cache, rebuilt on read).
    return f"cl:p:{project_id}:stats:{dataset}"


class DatasetJobs:
    """Start the asynchronous dataset operations and read the records they leave."""

    def __init__(self, ops: Datasets, queue: Queue | None = None) -> None:
        self.ops = ops
        self.queue = queue

    # ------------------------------------------------------------------------------------ records

    @staticmethod
    def record(info: ProjectInfo, dataset: str) -> dict[str, Any] | None:
        """The dataset's record (Rekognition's status fields, Unix times), or None if it has none.

        A project recorded before datasets existed has both, complete since the project's creation.
        """
        if info.datasets is None:
            return {
                "created": info.created,
                "updated": info.created,
                "status": CREATE_COMPLETE,
                "status_message": "",
                "status_code": SUCCESS,
            }
        return info.datasets.get(dataset)

    def fresh(self, project_id: int) -> ProjectInfo:
        """The project's record as stored now (hold :meth:`Projects.lock` to change it); a record from
        before datasets gets both made explicit first, so that a status change keeps the other one."""
        info = self.ops.ctx.projects.find(project_id)
        if info is None:
            raise not_found(f"The project {project_id} does not exist.")
        if info.datasets is None:
            both = {dataset: dict(self.record(info, dataset) or {}) for dataset in DATASETS}
            info = self.ops.save(replace(info, datasets=both))
        return info

    def set_status(
        self,
        project_id: int,
        datasets: Sequence[str],
        status: str,
        message: str = "",
        code: str = SUCCESS,
    ) -> None:
        """Record ``status`` for these datasets of the project (one gone meanwhile is left gone)."""
        with self.ops.ctx.projects.lock(project_id):
            try:
                info = self.fresh(project_id)
            except DatasetError:
                return  # the project was deleted meanwhile
            for dataset in datasets:
                if dataset in (info.datasets or {}):
                    info = self.ops.set_status(info, dataset, status, message, code)

    def _busy(self, info: ProjectInfo, dataset: str, exception: str) -> dict[str, Any]:
        record = self.record(info, dataset)
        if record is None:
            raise not_found(f"The project has no {dataset.upper()} dataset.")
        if record["status"] in IN_PROGRESS:
            raise DatasetError(exception, f"The {dataset.upper()} dataset is {record['status']}.")
        return record

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
            self._busy(other, other_dataset, "InvalidParameterException")
            source = {"dataset": [other.label_studio_project_id, other_dataset]}
        with self.ops.ctx.projects.lock(pid):
            info = self.fresh(pid)
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
                undo=lambda: self.set_status(
                    pid, [dataset], CREATE_FAILED, "The operation could not be queued.", SERVICE_ERROR
                ),
            )
        return record

    def update(self, info: ProjectInfo, dataset: str, ground_truth: bytes) -> None:
        """UpdateDatasetEntries: queued; ResourceInUseException while the dataset is in progress."""
        pid = info.label_studio_project_id
        with self.ops.ctx.projects.lock(pid):
            info = self.fresh(pid)
            self._busy(info, dataset, "ResourceInUseException")
            self.ops.set_status(info, dataset, UPDATE_IN_PROGRESS)
        self._enqueue(
            update_entries_job,
            (pid, dataset, ground_truth),
            f"UpdateDatasetEntries {dataset} of project {pid}",
            undo=lambda: self.set_status(
                pid, [dataset], UPDATE_FAILED, "The operation could not be queued.", SERVICE_ERROR
            ),
        )

    def distribute(self, info: ProjectInfo) -> None:
        """DistributeDatasetEntries: both datasets UPDATE_IN_PROGRESS, queued;
        ResourceNotReadyException while either is in progress."""
        pid = info.label_studio_project_id
        with self.ops.ctx.projects.lock(pid):
            info = self.fresh(pid)
            for dataset in DATASETS:
                self._busy(info, dataset, "ResourceNotReadyException")
            for dataset in DATASETS:
                info = self.ops.set_status(info, dataset, UPDATE_IN_PROGRESS)
        self._enqueue(
            distribute_job,
            (pid,),
            f"DistributeDatasetEntries of project {pid}",
            undo=lambda: self.set_status(
                pid, DATASETS, UPDATE_FAILED, "The operation could not be queued.", SERVICE_ERROR
            ),
        )

    def delete(self, info: ProjectInfo, dataset: str) -> None:
        """DeleteDataset: DELETE_IN_PROGRESS, queued; ResourceInUseException while in progress."""
        pid = info.label_studio_project_id
        with self.ops.ctx.projects.lock(pid):
            info = self.fresh(pid)
            before = self._busy(info, dataset, "ResourceInUseException")
            self.ops.set_status(info, dataset, DELETE_IN_PROGRESS)
        previous = [before["status"], before.get("status_message", ""), before.get("status_code", SUCCESS)]
        self._enqueue(
            delete_dataset_job,
            (pid, dataset, previous),
            f"DeleteDataset {dataset} of project {pid}",
            undo=lambda: self.set_status(pid, [dataset], *previous),
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
    return _run(project_id, [dataset], CREATE_COMPLETE, CREATE_FAILED, done, work)


def update_entries_job(project_id: int, dataset: str, ground_truth: bytes) -> dict[str, Any]:
    """Job: UpdateDatasetEntries' lines replace or add entries; UPDATE_COMPLETE or UPDATE_FAILED."""
    return _run(
        project_id,
        [dataset],
        UPDATE_COMPLETE,
        UPDATE_FAILED,
        UPDATED,
        lambda ops, info: ops.update_entries(info, dataset, ground_truth).as_json(),
    )


def distribute_job(project_id: int) -> dict[str, Any]:
    """Job: move 20% of the training entries into the empty test dataset; both datasets then
    UPDATE_COMPLETE, or both UPDATE_FAILED."""
    return _run(
        project_id,
        DATASETS,
        UPDATE_COMPLETE,
        UPDATE_FAILED,
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
        code = _code_of(exc)
        jobs.set_status(project_id, [dataset], previous[0], f"The dataset could not be deleted: {exc}", code)
        if code == SERVICE_ERROR:
            raise
        return {"status": previous[0], "message": str(exc)}
    jobs.forget(project_id, [dataset])
    return {"status": "deleted"}


def _run(
    project_id: int,
    datasets: Sequence[str],
    complete: str,
    failed: str,
    message: str,
    work: Callable[[Datasets, ProjectInfo], dict[str, Any]],
) -> dict[str, Any]:
    opened = _open(project_id)
    if opened is None:
        return {"status": "project gone"}
    ops, jobs, info = opened
    try:
        result = work(ops, info)
    except Exception as exc:
        code = _code_of(exc)
        text = str(exc) if code == CLIENT_ERROR else f"An internal error stopped the operation: {exc}"
        jobs.set_status(project_id, datasets, failed, text, code)
        if code == SERVICE_ERROR:
            raise  # the worker logs it and keeps the job in RQ's failed registry
        log.info("project %s %s: %s", project_id, failed, exc)
        return {"status": failed, "message": text}
    jobs.set_status(project_id, datasets, complete, message, SUCCESS)
    return {"status": complete, **result}


def _open(project_id: int) -> tuple[Datasets, DatasetJobs, ProjectInfo] | None:
    """A job's dataset operations, status records and project; None when the project is gone."""
    ops = Datasets(context())
    try:
        return ops, DatasetJobs(ops), ops.project(project_id)
    except DatasetError:
        return None


def _code_of(exc: Exception) -> str:
    # A DatasetError is the input's fault, except a dataset lock another operation would not give up.
    if isinstance(exc, DatasetError) and exc.exception != "ResourceInUseException":
        return CLIENT_ERROR
    return SERVICE_ERROR


def _import_manifest(
    ops: Datasets, info: ProjectInfo, dataset: str, s3object: dict[str, str]
) -> ImportResult:
    location = f"s3://{s3object['Bucket']}/{s3object['Name']}"
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
            code = C.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT
            raise invalid(f"{location} (version {version}): {C.message(code)} ({exc})", code=code) from exc
        spool.seek(0)
        lines = iter_lines(spool, max_chars=C.DEFAULT_LIMITS.max_line_chars)
        return ops.from_manifest_lines(info, dataset, lines, source=f"{location} (version {version})")
