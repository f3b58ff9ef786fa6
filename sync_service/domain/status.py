"""The datasets' status machine, as Rekognition's DescribeDataset shows it (spec §3.9).

One machine for every caller: the REST and Rekognition APIs start an operation (``*_IN_PROGRESS``) and
queue it, the worker's job finishes it; the command line does both in one process. Either way an
operation ends ``*_COMPLETE`` with its message, or ``*_FAILED`` with a ``StatusMessage`` and a
``StatusMessageCode``: ``CLIENT_ERROR`` when the input was wrong (a :class:`DatasetError`, e.g. a
manifest with more than 20% invalid lines, or one that cannot be read) and ``SERVICE_ERROR`` otherwise
(Label Studio or S3 failed, or another operation would not give up the dataset's lock)::

    (none) --create--> CREATE_IN_PROGRESS --> CREATE_COMPLETE | CREATE_FAILED   (empty: CREATE_COMPLETE)
    not *_IN_PROGRESS --update/distribute--> UPDATE_IN_PROGRESS --> UPDATE_COMPLETE | UPDATE_FAILED
    not *_IN_PROGRESS --delete--> DELETE_IN_PROGRESS --> gone (on failure: back to the status before)

Record writes (read, change, save ``project.json``) hold the project's record lock
(:meth:`Projects.lock`), never the long dataset lock the operations themselves take, so a request never
waits for a running import.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from sync_service.domain.datasets import DATASETS, DatasetError, Datasets, not_found
from sync_service.domain.projects import ProjectInfo

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
NOT_QUEUED = "The operation could not be queued."


def failure(exc: Exception) -> tuple[str, str]:
    """The ``(StatusMessageCode, StatusMessage)`` an operation stopped by ``exc`` records."""
    # A DatasetError is the input's fault, except a dataset lock another operation would not give up.
    if isinstance(exc, DatasetError) and exc.exception != "ResourceInUseException":
        return CLIENT_ERROR, str(exc)
    return SERVICE_ERROR, f"An internal error stopped the operation: {exc}"


class DatasetStatus:
    """Read and write the datasets' status records of the projects ``ops`` works on."""

    def __init__(self, ops: Datasets) -> None:
        self.ops = ops

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

    def set(
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

    def busy(self, info: ProjectInfo, dataset: str, exception: str) -> dict[str, Any]:
        """The dataset's record; ``exception`` (Rekognition's name) while an operation runs on it."""
        record = self.record(info, dataset)
        if record is None:
            raise not_found(f"The project has no {dataset.upper()} dataset.")
        if record["status"] in IN_PROGRESS:
            raise DatasetError(exception, f"The {dataset.upper()} dataset is {record['status']}.")
        return record

    @contextlib.contextmanager
    def finishing(self, project_id: int, datasets: Sequence[str], verb: str, message: str) -> Iterator[None]:
        """Around a started operation's work (``verb``: ``CREATE`` or ``UPDATE``): ``{verb}_COMPLETE``
        with ``message`` when it returns, ``{verb}_FAILED`` with :func:`failure` when it raises (the
        exception goes on)."""
        try:
            yield
        except Exception as exc:
            code, text = failure(exc)
            self.set(project_id, datasets, f"{verb}_FAILED", text, code)
            raise
        self.set(project_id, datasets, f"{verb}_COMPLETE", message, SUCCESS)

    @contextlib.contextmanager
    def running(
        self, info: ProjectInfo, datasets: Sequence[str], *, created: bool = False, message: str | None = None
    ) -> Iterator[None]:
        """Start and finish an operation done in this process (the command line); ``message`` is the
        ``StatusMessage`` of success (by default Rekognition's for an empty create or an update).

        As with Rekognition, an operation refused before it started (a :class:`DatasetError` without a
        validation code: a missing dataset, a test dataset that is not empty...) is answered to the caller
        and leaves an existing dataset's status as it was; a new dataset records the refusal.
        """
        pid = info.label_studio_project_id
        verb = "CREATE" if created else "UPDATE"
        before = {name: dict((info.datasets or {}).get(name) or {}) for name in datasets}
        self.set(pid, datasets, f"{verb}_IN_PROGRESS")
        try:
            done = message if message is not None else CREATED_EMPTY if created else UPDATED
            with self.finishing(pid, datasets, verb, done):
                yield
        except DatasetError as exc:
            if exc.code is None and not created:
                for name, was in before.items():
                    self.set(
                        pid,
                        [name],
                        was.get("status", CREATE_COMPLETE),
                        was.get("status_message", ""),
                        was.get("status_code", SUCCESS),
                    )
            raise
