"""Dataset operations of a project: Rekognition Custom Labels' console workflow on Label Studio.

Label Studio holds the entries (one task per image, ``data.dataset`` = ``train``/``test``), their labels
(annotations, or predictions when not ``human-annotated``) and the label set (the labeling config); S3
holds the images and the derived manifests. Every operation here reads the current state through the
sync service's entry cache (brought up to date first, so reads see every change made so far) and writes
through Label Studio's API, then publishes, so the manifests in S3 follow at once.

Both the ``customlabels dataset ...`` commands and the Rekognition-compatible endpoint call these
functions; errors are :class:`DatasetError` carrying the Rekognition exception name and, where there is
one, the Rekognition error code.

Long operations report how far they are through the ``progress`` callback given to :class:`Datasets`
(``progress(stage, done, total)``, ``total`` None when unknown); it defaults to doing nothing, and this
module never prints.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from converters import codes
from converters.coco import coco_to_entries
from converters.csvfile import read_rows, row_to_entry, split_duplicates
from converters.datacheck import CheckItem, check_report
from converters.duplicates import DuplicateGroup
from converters.errors import ConversionError, Severity
from converters.jsonio import RawLine, dumps, iter_lines, loads
from converters.labelconfig import (
    CHOICES,
    RECTANGLE_LABELS,
    LabelConfig,
    add_labels,
    parse_label_config,
    remove_label,
    rename_label,
)
from converters.labelstudio import WriteOptions, entry_to_task
from converters.manifest import entry_to_line, parse_line
from converters.model import Entry, ImageLabel, Provenance
from converters.screening import screen_lines
from converters.split import TEST, TRAIN, SplitItem, labels_short_of, split
from converters.validation import dataset_entry, line_issues
from sync_service.config import Settings
from sync_service.domain.context import Context
from sync_service.domain.fingerprints import FingerprintCache, groups_of, record_groups
from sync_service.domain.images import IMAGE_SUFFIXES, store_image
from sync_service.domain.projects import ProjectInfo
from sync_service.domain.publisher import ImageMetaCache, assign, dedupe, now_stamp
from sync_service.domain.tabs import LEAK_TAB, show_leaks
from sync_service.edges.locks import LockLost, RenewingLock
from sync_service.edges.s3 import split_s3_url
from sync_service.edges.state import CachedEntry, ProjectState
from sync_service.errors import ServiceError

DATASETS = (TRAIN, TEST)
IMPORT_BATCH = 500  # tasks per Label Studio import request
MAX_UPDATE_BYTES = 5 * 1024 * 1024  # UpdateDatasetEntries' GroundTruth limit
MAX_RESULTS = 100
LOCK_TTL = 30.0  # a dataset lock whose holder died (stopped renewing it) frees itself this much later
LOCK_WAIT = 1800.0  # the longest an operation waits for another one on the same project

ProgressCallback = Callable[[str, int, int | None], None]
"""``progress(stage, done, total)``: ``done`` items of ``total`` (None: not known) in ``stage``, a
phrase such as ``"uploading images"``; a new phrase starts a new stage."""


def _lock_lost() -> DatasetError:
    return DatasetError(
        "ResourceInUseException",
        "the project's dataset lock was lost (a stall, or Redis away); the operation stopped",
    )


def no_progress(stage: str, done: int, total: int | None) -> None:
    """The default :data:`ProgressCallback`: nothing."""


class DatasetError(ServiceError):
    """A dataset operation that cannot be done; ``exception`` is Rekognition's exception name."""

    def __init__(self, exception: str, message: str, *, code: str | None = None) -> None:
        self.exception = exception
        self.code = code
        super().__init__(f"{message} [{code}]" if code else message)


def not_found(message: str) -> DatasetError:
    """Rekognition's ResourceNotFoundException."""
    return DatasetError("ResourceNotFoundException", message)


def invalid(message: str, *, code: str | None = None) -> DatasetError:
    """Rekognition's InvalidParameterException."""
    return DatasetError("InvalidParameterException", message, code=code)


@dataclass(slots=True)
class ImportResult:
    """What an import did: tasks added, updated (whole line replaced) and skipped (already there), and
    the lines rejected with their Rekognition codes (they do not stop the others)."""

    added: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """A JSON summary (at most 100 rejected lines listed)."""
        return {
            "added": self.added,
            "updated": self.updated,
            "skipped": self.skipped,
            "rejected": len(self.rejected),
            "rejected_lines": self.rejected[:100],
        }


@dataclass(frozen=True, slots=True)
class LabelStats:
    """A label's use in a dataset: images that carry it and boxes drawn with it."""

    name: str
    entries: int
    boxes: int


def dataset_record(
    status: str = "CREATE_COMPLETE", message: str = "", code: str = "SUCCESS"
) -> dict[str, Any]:
    """A new dataset's record in ``project.json`` (Rekognition's status fields, Unix times)."""
    now = time.time()
    return {"created": now, "updated": now, "status": status, "status_message": message, "status_code": code}


ALLOWED_BUCKETS_VARIABLE = "CUSTOMLABELS_ALLOWED_BUCKETS"


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """Where imports may read from.

    ``buckets``: the S3 buckets allowed (None: any bucket the credentials reach); ``local``: whether a
    local path is a source. The service reads only ``s3://`` locations in its allow-list
    (:meth:`service`): a person who may post a form must not make the worker read the machine's files
    or another team's bucket. The command line reads anything its user can (:data:`ON_THIS_MACHINE`).
    """

    buckets: frozenset[str] | None
    local: bool

    @classmethod
    def service(cls, settings: Settings) -> SourcePolicy:
        """The service's policy: ``s3://`` in :attr:`Settings.source_buckets` only."""
        return cls(buckets=frozenset(settings.source_buckets), local=False)

    def check(self, location: str) -> None:
        """Refuse ``location`` (AccessDeniedException naming the setting) unless the policy allows it;
        nothing is opened or listed here."""
        if self.local and self.buckets is None:
            return
        # Case-sensitive on purpose: ``S3://b/k`` is not what ``_open`` reads from S3.
        scheme = location.partition("://")[0] if "://" in location else ""
        if scheme == "s3":
            bucket = location[len("s3://") :].partition("/")[0]
            if self.buckets is None or bucket in self.buckets:
                return
            raise DatasetError(
                "AccessDeniedException",
                f"{location[:200]!r}: bucket {bucket[:80]!r} is not one the service may read; the "
                f"buckets it may read are {', '.join(sorted(self.buckets))} ({ALLOWED_BUCKETS_VARIABLE})",
            )
        if not scheme and self.local:
            return
        what = f"a {scheme[:20]}:// location" if scheme else "a local path"
        raise DatasetError(
            "AccessDeniedException",
            f"{location[:200]!r} is {what}; the service reads imports only from s3:// locations in the "
            f"buckets of {ALLOWED_BUCKETS_VARIABLE}; local files are a source of the command line on "
            "your own machine (customlabels dataset create --from-dir / --from-manifest)",
        )


ON_THIS_MACHINE = SourcePolicy(buckets=None, local=True)
"""The command line's policy: local files and any bucket its user's credentials reach."""


class Datasets:
    """The dataset operations over one sync-service :class:`Context`; ``progress`` hears how far the long
    ones are (imports, distribute, snapshot, delete); ``sources`` says where imports may read from
    (default: the service's allow-list, :meth:`SourcePolicy.service`)."""

    def __init__(
        self, ctx: Context, *, progress: ProgressCallback | None = None, sources: SourcePolicy | None = None
    ) -> None:
        self.ctx = ctx
        self.progress: ProgressCallback = progress or no_progress
        self._sources = sources
        self._held: RenewingLock | None = None  # the dataset lock, while an operation holds it

    @property
    def sources(self) -> SourcePolicy:
        """Where imports may read from (made from the settings on first use when none was given)."""
        if self._sources is None:
            self._sources = SourcePolicy.service(self.ctx.settings)
        return self._sources

    # ------------------------------------------------------------------------------------- projects

    def project(self, ref: str | int) -> ProjectInfo:
        """The project named by its Label Studio id, folder (slug), title or Rekognition name."""
        text = str(ref)
        if text.isdigit():
            info = self.ctx.projects.find(int(text))
            if info is not None:
                return info
        for info in self.ctx.projects.scan():
            if text in (info.slug, info.title, info.name):
                return info
        raise not_found(f"no project {text!r}")

    def save(self, info: ProjectInfo) -> ProjectInfo:
        """Write the project's record."""
        self.ctx.projects.save(info)
        return info

    @contextlib.contextmanager
    def exclusive(self, info: ProjectInfo, *, wait: float = LOCK_WAIT) -> Iterator[None]:
        """Hold the project's dataset lock: one changing operation at a time per project, so that two
        imports running at once cannot both find an image missing and both add it (the second waits,
        then finds the first one's tasks). ResourceInUseException when it stays taken ``wait`` seconds.

        The lock is renewed while held; a holder that dies frees it :data:`LOCK_TTL` seconds later. A
        holder that loses it (a stall past that, or Redis away as long) stops at its next progress report
        or Label Studio batch with a ResourceInUseException, instead of carrying on beside the operation
        that took the lock over. Not re-entrant: the operations that take it call none that take it again.
        """
        lock = RenewingLock(
            self.ctx.redis,
            f"cl:p:{info.label_studio_project_id}:datasets-lock",
            ttl=LOCK_TTL,
            wait=wait,
            on_wait=lambda: self.progress("waiting for another dataset operation on the project", 0, None),
        )
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(lock)
            except LockLost:
                raise DatasetError(
                    "ResourceInUseException", "another dataset operation on the project is running"
                ) from None
            report = self.progress

            def checked(stage: str, done: int, total: int | None) -> None:
                if lock.lost:  # the renewal thread's finding: no Redis call per report
                    raise _lock_lost()
                report(stage, done, total)

            self.progress, self._held = checked, lock
            try:
                yield
            finally:
                self.progress, self._held = report, None

    def _checkpoint(self) -> None:
        """Stop (ResourceInUseException) unless the dataset lock taken by :meth:`exclusive` is still ours;
        called before each batch of changes to Label Studio."""
        if self._held is not None and not self._held.held():
            raise _lock_lost()

    def _record(self, info: ProjectInfo) -> ProjectInfo:
        """The project's record as it is now (another process may have changed it since ``info``)."""
        return self.ctx.projects.find(info.label_studio_project_id) or info

    def has_dataset(self, info: ProjectInfo, dataset: str) -> bool:
        """Whether the project has this dataset."""
        return info.has_dataset(dataset)

    def create_dataset(self, info: ProjectInfo, dataset: str, **record: Any) -> ProjectInfo:
        """Add the dataset's record; ResourceAlreadyExists when the project has one of this type."""
        _check_dataset(dataset)
        with self.exclusive(info), self.ctx.projects.lock(info.label_studio_project_id):
            info = self._record(info)
            if info.has_dataset(dataset):
                raise DatasetError(
                    "ResourceAlreadyExistsException", f"the project already has a {dataset} dataset"
                )
            datasets = dict(info.datasets or {})
            datasets[dataset] = {**dataset_record(), **record}
            return self.save(replace(info, datasets=datasets))

    def set_status(
        self, info: ProjectInfo, dataset: str, status: str, message: str = "", code: str = "SUCCESS"
    ) -> ProjectInfo:
        """Record a dataset's status (the fields DescribeDataset shows)."""
        info = self._record(info)
        datasets = dict(info.datasets or {})
        record = dict(datasets.get(dataset) or dataset_record())
        record.update(status=status, status_message=message, status_code=code, updated=time.time())
        datasets[dataset] = record
        return self.save(replace(info, datasets=datasets))

    def delete_dataset(self, info: ProjectInfo, dataset: str) -> None:
        """Delete the dataset's tasks in Label Studio and its record."""
        _check_dataset(dataset)
        pid = info.label_studio_project_id
        with self.exclusive(info):
            info = self._record(info)
            if not info.has_dataset(dataset):
                raise not_found(f"the project has no {dataset} dataset")
            self.progress("reading the project's entries", 0, None)
            gone = [entry.task_id for entry in self.entries(info, all_tasks=True, fresh=True)[dataset]]
            for number, task_id in enumerate(gone, start=1):
                self.ctx.ls.delete_task(task_id)
                self.progress("deleting tasks", number, len(gone))
            with self.ctx.projects.lock(pid):
                info = self._record(info)
                datasets = {
                    k: v
                    for k, v in (info.datasets or {DATASETS[0]: {}, DATASETS[1]: {}}).items()
                    if k != dataset
                }
                info = self.save(replace(info, datasets=datasets))
            ProjectState(self.ctx.redis, pid).note(gone=gone)
            self.progress("publishing the manifests", 0, None)
            self._publish(info)

    # -------------------------------------------------------------------------------------- reading

    def _publish(self, info: ProjectInfo) -> None:
        self.ctx.publisher.publish(info.label_studio_project_id)

    def _set_label_config(self, info: ProjectInfo, xml: str) -> None:
        """Change the project's label config in Label Studio and have the next publish read it (as
        PROJECT_UPDATED would; the webhook may be slow, lost or not registered)."""
        self.ctx.ls.update_project(info.label_studio_project_id, label_config=xml)
        ProjectState(self.ctx.redis, info.label_studio_project_id).note(full=True)

    def entries(
        self, info: ProjectInfo, *, all_tasks: bool = False, fresh: bool = False
    ) -> dict[str, list[CachedEntry]]:
        """Each dataset's entries, in task order: as last published (what :meth:`freshness` tells), or
        with ``fresh`` (the operations that change datasets) after a publish of what is pending.

        Reads never publish: a publish waits for the project's publish lock (up to minutes behind a
        rebuild) and reads Label Studio, which an HTTP request or a listing should not do. Tasks whose
        image could not be read into an entry are listed too (``line`` None, ``error`` set); with
        ``all_tasks``, so are the later tasks of an image that an earlier task already shows.
        """
        if fresh:
            self._publish(info)
        cached = ProjectState(self.ctx.redis, info.label_studio_project_id).entries()
        usable, _ = dedupe(cached)
        sides = self.sides(info, usable)
        out: dict[str, list[CachedEntry]] = {TRAIN: [], TEST: []}
        kept = {e.task_id for e in usable}
        for entry in cached:
            if entry.task_id in kept:
                out[sides[entry.source_ref]].append(entry)
            elif entry.line is None or all_tasks:
                out[entry.dataset or sides.get(entry.source_ref) or TRAIN].append(entry)
        return out

    def freshness(self, info: ProjectInfo) -> dict[str, Any]:
        """How fresh the reads of :meth:`entries` are: ``published`` (UTC time of the last publish, None
        before the first), ``pending_events`` (changes received since, not yet in the reads) and
        ``last_error`` (of the last publish that failed, if any)."""
        status = ProjectState(self.ctx.redis, info.label_studio_project_id).status()
        return {
            "published": status.get("last_publish"),
            "pending_events": int(status.get("pending_events") or 0),
            "last_error": status.get("last_error"),
        }

    def sides(self, info: ProjectInfo, usable: list[CachedEntry]) -> dict[str, str]:
        """Each entry's dataset (see :func:`sync_service.domain.publisher.assign`)."""
        return assign(
            usable,
            test_fraction=info.test_fraction,
            seed=info.seed,
            has_test=self.has_dataset(info, TEST),
            redis=self.ctx.redis,
            distance=self.ctx.settings.duplicate_distance,
        )

    def config(self, info: ProjectInfo) -> tuple[str, LabelConfig]:
        """The project's labeling config, as XML and parsed."""
        xml = str(self.ctx.ls.project(info.label_studio_project_id).get("label_config") or "")
        return xml, parse_label_config(xml, source=f"project {info.label_studio_project_id} label config")

    # -------------------------------------------------------------------------------------- imports

    def import_entries(
        self, info: ProjectInfo, dataset: str, entries: Iterable[Entry], *, replace_existing: bool
    ) -> ImportResult:
        """Put entries into ``dataset``: new images become tasks; an image already in the project is
        skipped, or with ``replace_existing`` its whole labeling is replaced (UpdateDatasetEntries) unless
        the line would stay the same. Later entries of an image already given are skipped.

        Holds the project's dataset lock from reading what is there to the publish of what was added, so
        that no image ever gets a second task from two imports at once.
        """
        _check_dataset(dataset)
        items = list(entries)
        with self.exclusive(info):
            info = self._record(info)
            if not self.has_dataset(info, dataset):
                raise not_found(f"the project has no {dataset} dataset")
            return self._import(info, dataset, items, replace_existing=replace_existing)

    def _import(
        self, info: ProjectInfo, dataset: str, items: list[Entry], *, replace_existing: bool
    ) -> ImportResult:
        pid = info.label_studio_project_id
        result = ImportResult()
        self.progress("reading the project's entries", 0, None)
        xml, config = self.config(info)
        choices = [label.name for e in items for label in e.labels]
        boxes = [box.label for e in items for box in e.boxes]
        multiple = any(len({label.name for label in e.labels}) > 1 for e in items)
        new_xml = add_labels(xml, choices=choices, boxes=boxes, multiple=multiple)
        if new_xml != xml:
            self._set_label_config(info, new_xml)
            config = parse_label_config(new_xml)
        options = _write_options(config, dataset)
        existing: dict[str, CachedEntry] = {}
        sides: dict[str, str] = {}
        for side, listed in self.entries(info, all_tasks=True, fresh=True).items():
            for cached in listed:
                if cached.source_ref not in existing or cached.task_id < existing[cached.source_ref].task_id:
                    existing[cached.source_ref] = cached  # the first task of an image is its entry
                    sides[cached.source_ref] = side
        images = ImageMetaCache(self.ctx.redis, self.ctx.storage)
        fresh: list[dict[str, Any]] = []
        changed: list[int] = []
        seen: set[str] = set()
        for number, entry in enumerate(items, start=1):
            self.progress("checking entries", number, len(items))
            if entry.source_ref in seen:
                result.skipped += 1
                continue
            seen.add(entry.source_ref)
            entry.dataset = dataset
            old = existing.get(entry.source_ref)
            if old is not None and not replace_existing:
                result.skipped += 1
                continue
            line = entry_to_line(entry)
            if old is not None and old.line == dumps(line) and sides.get(entry.source_ref) == dataset:
                result.skipped += 1  # already just so
                continue
            meta = images.get(entry.source_ref) if entry.box_groups else None
            task = entry_to_task(
                entry, replace(options, image_meta={entry.source_ref: meta} if meta else {}), line=line
            )
            if old is None:
                fresh.append(task)
                result.added += 1
            else:
                self._replace_task(pid, old.task_id, task)
                changed.append(old.task_id)
                result.updated += 1
        made: list[int] = []
        for start in range(0, len(fresh), IMPORT_BATCH):
            self.progress("importing tasks into Label Studio", start, len(fresh))
            self._checkpoint()
            made += self.ctx.ls.import_tasks(pid, fresh[start : start + IMPORT_BATCH])
        if fresh:
            self.progress("importing tasks into Label Studio", len(fresh), len(fresh))
        if fresh or changed:
            # Task data changes send no webhook, and the import's webhook may come late: tell the cache
            # ourselves, then publish, so that the next operation finds every task made here.
            state = ProjectState(self.ctx.redis, pid)
            state.note(dirty=[*changed, *made], full=bool(fresh) and not made)
            self.progress("publishing the manifests", 0, None)
            self._publish(info)
        return result

    def _replace_task(self, project_id: int, task_id: int, task: dict[str, Any]) -> None:
        ls = self.ctx.ls
        current = next(iter(ls.export_tasks(project_id, [task_id])), None)
        if current is not None:
            for annotation in current.get("annotations") or ():
                ls.delete_annotation(int(annotation["id"]))
            for prediction in current.get("predictions") or ():
                ls.delete_prediction(int(prediction["id"]))
            data = {**current.get("data", {}), **task["data"]}
        else:
            data = task["data"]
        ls.update_task_data(task_id, data)
        for annotation in task.get("annotations") or ():
            ls.create_annotation(task_id, annotation["result"])
        for prediction in task.get("predictions") or ():
            ls.create_prediction(task_id, prediction["result"], prediction.get("score"))

    def from_manifest_lines(
        self,
        info: ProjectInfo,
        dataset: str,
        lines: Iterable[RawLine],
        *,
        source: str,
        replace_existing: bool = True,
    ) -> ImportResult:
        """Import manifest lines (every form the core reads, the SageMaker multi-label job form too).

        The lines are screened by :func:`converters.screening.screen_lines`: rejected lines are listed
        with their codes; entries with errors of their content are imported as they are, their errors
        shown by :meth:`list_entries` (``HasErrors``). When the screening refuses the import (empty, or
        more than 20% of the lines invalid) nothing is imported.
        """
        screened = screen_lines(lines, on_line=lambda count: self.progress(f"reading {source}", count, None))
        code = screened.refusal()
        if code == codes.ERROR_EMPTY_MANIFEST:
            raise invalid(f"{source}: {codes.message(code)}", code=code)
        if code is not None:
            raise invalid(
                f"{source}: {screened.invalid} of {screened.total} lines are invalid; {codes.message(code)}",
                code=code,
            )
        result = self.import_entries(info, dataset, screened.entries, replace_existing=replace_existing)
        result.rejected = [line.as_json() for line in screened.rejected]
        return result

    def from_manifest(self, info: ProjectInfo, dataset: str, location: str) -> ImportResult:
        """Import a Ground Truth manifest from ``s3://bucket/key`` or a local file (as :attr:`sources`
        allow)."""
        with self._open(location) as stream:
            return self.from_manifest_lines(
                info,
                dataset,
                iter_lines(stream, max_chars=codes.DEFAULT_LIMITS.max_line_chars),
                source=location,
            )

    def _open(self, location: str) -> IO[bytes]:
        self.sources.check(location)
        if location.startswith("s3://"):
            bucket, key = split_s3_url(location)
            spool = self.ctx.storage.spool()
            try:
                self.ctx.storage.client.download_fileobj(bucket, key, spool)
            except Exception as exc:  # botocore raises several unrelated types here
                spool.close()
                raise invalid(
                    f"{location}: {codes.message(codes.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT)} ({exc})",
                    code=codes.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT,
                ) from exc
            spool.seek(0)
            return spool
        try:
            return open(location, "rb")
        except OSError as exc:
            raise invalid(
                f"{location}: {codes.message(codes.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT)} ({exc.strerror})",
                code=codes.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT,
            ) from exc

    def from_s3(
        self, info: ProjectInfo, dataset: str, uri: str, *, labels_from_folders: bool = False
    ) -> ImportResult:
        """One task per PNG/JPEG under ``s3://bucket/prefix/``; with folder labels, each image's label is
        its immediate child folder of the prefix (images directly under it get none). Re-running imports
        only what is new."""
        self.sources.check(uri)
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket:
            raise invalid(f"{uri!r} is not an s3://bucket/prefix/ URI")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        now = now_stamp()
        entries: list[Entry] = []
        self.progress(f"listing s3://{bucket}/{prefix}", 0, None)
        for key in self.ctx.storage.list_objects(bucket, prefix):
            if not key.lower().endswith(IMAGE_SUFFIXES):
                continue
            self.progress(f"listing s3://{bucket}/{prefix}", len(entries) + 1, None)
            rest = key[len(prefix) :]
            label = rest.split("/", 1)[0] if labels_from_folders and "/" in rest else None
            entries.append(_image_entry(f"s3://{bucket}/{key}", label, now))
        return self.import_entries(info, dataset, entries, replace_existing=False)

    def from_dir(
        self, info: ProjectInfo, dataset: str, path: str, *, labels_from_folders: bool = False
    ) -> ImportResult:
        """Images of a local folder, copied into the project's S3 folder (content-addressed: the key is
        the SHA-256 of the bytes, so a re-run or a copy elsewhere makes no second object or task)."""
        self.sources.check(path)
        root = Path(path)
        if not root.is_dir():
            raise invalid(f"{path}: not a folder")
        now = now_stamp()
        entries = []
        self.progress(f"finding images in {path}", 0, None)
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        for number, file in enumerate(files, start=1):
            rel = file.relative_to(root).parts
            label = rel[0] if labels_from_folders and len(rel) > 1 else None
            entries.append(_image_entry(self.upload_image(info, file.read_bytes(), file.suffix), label, now))
            self.progress("uploading images", number, len(files))
        return self.import_entries(info, dataset, entries, replace_existing=False)

    def upload_image(self, info: ProjectInfo, data: bytes, suffix: str) -> str:
        """Store image bytes under the project's ``images/`` by content; returns its ``s3://`` URL."""
        return store_image(self.ctx.storage, self.ctx.projects, info, data, suffix)

    def from_dataset(
        self, info: ProjectInfo, dataset: str, source: ProjectInfo, source_dataset: str
    ) -> ImportResult:
        """Copy the entries (and their labels) of another project's dataset into this one.

        Within one project an image is one task, so a copy there would move the entries instead: refused.
        """
        _check_dataset(source_dataset)
        if source.label_studio_project_id == info.label_studio_project_id:
            raise invalid("copy a dataset from another project (within one, an image is one entry)")
        if not self.has_dataset(source, source_dataset):
            raise not_found(f"project {source.title!r} has no {source_dataset} dataset")
        self.progress(f"reading {source.title}/{source_dataset}", 0, None)
        lines = [
            RawLine(n, e.line or b"", False, len(e.line or b""))
            for n, e in enumerate(self.entries(source, fresh=True)[source_dataset], start=1)
            if e.line is not None
        ]
        if not lines:
            return ImportResult()
        return self.from_manifest_lines(info, dataset, lines, source=f"{source.title}/{source_dataset}")

    def from_coco(self, info: ProjectInfo, dataset: str, path: str, *, s3_prefix: str) -> ImportResult:
        """A COCO object-detection file, through the core's transform (an image already in the project
        has its labels replaced)."""
        self.progress(f"reading {path}", 0, None)
        with self._open(path) as stream:
            raw = stream.read()
        try:
            entries = list(coco_to_entries(loads(raw), s3_prefix=s3_prefix, now=now_stamp(), source=path))
        except (ValueError, ConversionError) as exc:
            raise invalid(f"{path}: not a COCO file we can read: {exc}") from exc
        return self.import_entries(info, dataset, entries, replace_existing=True)

    def from_csv(self, info: ProjectInfo, dataset: str, path: str, *, s3_prefix: str | None) -> ImportResult:
        """A CSV ``image,label,...`` file, through the core's transform; duplicate images are refused (as
        the reference script does), an image already in the project has its labels replaced."""
        self.progress(f"reading {path}", 0, None)
        with self._open(path) as stream:
            raw = stream.read()
        try:
            rows = list(read_rows(raw.decode("utf-8").splitlines(), source=path))
            _, repeats = split_duplicates(rows)
            if repeats:
                raise invalid(f"{path}: {len(repeats)} duplicate image(s), first on line {repeats[0].line}")
            now = now_stamp()
            entries = [row_to_entry(r, s3_prefix=s3_prefix, now=now, source=path) for r in rows]
        except (UnicodeDecodeError, ConversionError) as exc:
            raise invalid(f"{path}: not a CSV file we can read: {exc}") from exc
        return self.import_entries(info, dataset, entries, replace_existing=True)

    def update_entries(self, info: ProjectInfo, dataset: str, ground_truth: bytes) -> ImportResult:
        """UpdateDatasetEntries: each line replaces the whole stored line of its ``source-ref``, or adds it."""
        if not 1 <= len(ground_truth) <= MAX_UPDATE_BYTES:
            raise invalid(f"GroundTruth must hold 1 to {MAX_UPDATE_BYTES:,} bytes, got {len(ground_truth):,}")
        lines = [
            RawLine(n, data, False, len(data))
            for n, data in enumerate(ground_truth.splitlines(), start=1)
            if data.strip()
        ]
        return self.from_manifest_lines(info, dataset, lines, source="GroundTruth", replace_existing=True)

    # -------------------------------------------------------------------------------------- actions

    def distribute(self, info: ProjectInfo, *, fraction: float = 0.2) -> dict[str, int]:
        """DistributeDatasetEntries: move ``fraction`` of the training entries into the empty test
        dataset, stratified by label and deterministic (the project's seed and each ``source-ref``);
        each group of duplicate images (:meth:`check`) stays on one side.

        Refused when the test dataset is not empty, and with
        ``ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE`` when the training dataset has no entries
        or a label with fewer than 2 images (it could not be in both).
        """
        with self.exclusive(info):
            info = self._record(info)
            if not (self.has_dataset(info, TRAIN) and self.has_dataset(info, TEST)):
                raise not_found("distribute needs both a training and a test dataset")
            self.progress("reading the project's entries", 0, None)
            sets = self.entries(info, fresh=True)
            if sets[TEST]:
                raise invalid(f"the test dataset is not empty ({len(sets[TEST])} entries)")
            train = [e for e in sets[TRAIN] if e.line is not None]
            items = [SplitItem(e.source_ref, frozenset(e.labels)) for e in train]
            short = labels_short_of(items)
            if short or not items:
                names = ", ".join(f"{n} ({c})" for n, c in list(short.items())[:10]) or "no entries"
                raise invalid(
                    f"{codes.message(codes.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE)}: {names}",
                    code=codes.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE,
                )
            groups = self._duplicate_groups([e.source_ref for e in train])
            assignment = split(
                items, test_fraction=fraction, seed=info.seed, groups=[g.members for g in groups]
            )
            self._place(info, train, assignment)
            to_test = sum(1 for e in train if assignment[e.source_ref] == TEST)
            return {TRAIN: len(train) - to_test, TEST: to_test}

    def _place(self, info: ProjectInfo, entries: list[CachedEntry], sides: dict[str, str]) -> list[int]:
        """Set ``data.dataset`` of the tasks of ``entries`` to their side in ``sides`` (entries not in it
        stay), then publish; returns the task ids changed."""
        pid = info.label_studio_project_id
        by_id = {t["id"]: t for t in self.ctx.ls.export_tasks(pid, [e.task_id for e in entries])}
        moved: list[int] = []
        for number, entry in enumerate(entries, start=1):
            self.progress("placing entries", number, len(entries))
            side = sides.get(entry.source_ref)
            task = by_id.get(entry.task_id)
            if side is None or task is None or task.get("data", {}).get("dataset") == side:
                continue
            self.ctx.ls.update_task_data(entry.task_id, {**task["data"], "dataset": side})
            moved.append(entry.task_id)
        if moved:
            ProjectState(self.ctx.redis, pid).note(dirty=moved)  # task data changes send no webhook
            self.progress("publishing the manifests", 0, None)
            self._publish(info)
        return moved

    def _duplicate_groups(
        self, source_refs: list[str], *, distance: int | None = None
    ) -> list[DuplicateGroup]:
        """Groups of duplicate images among ``source_refs``, each image hashed once per ETag; ``distance``
        (bits of 64) defaults to the setting ``CUSTOMLABELS_DUPLICATE_DISTANCE``."""
        if distance is None:
            distance = self.ctx.settings.duplicate_distance
        images = ImageMetaCache(self.ctx.redis, self.ctx.storage)
        cache = FingerprintCache(self.ctx.redis, self.ctx.storage, on_meta=images.put)
        prints = cache.get_many(
            source_refs, progress=lambda done, total: self.progress("hashing images", done, total)
        )
        groups = groups_of(prints.values(), distance=distance)
        record_groups(self.ctx.redis, source_refs, groups, distance=distance)
        return groups

    def check(
        self,
        info: ProjectInfo,
        *,
        fix: bool = False,
        distance: int | None = None,
        region: str | None = None,
    ) -> dict[str, Any]:
        """The dataset check (:func:`converters.datacheck.check_report`): duplicate groups that cross
        train and test, groups within one dataset, label disagreements within a group, label coverage
        and the dataset limits of ``region``; ``fix["moves"]`` puts each crossing group on the side
        holding most of it (ties: train). A dry run unless ``fix``: then the moves are made (task data,
        as distribute does) and published, and ``fix["applied"]`` is true. ``distance``: the Hamming
        threshold of near duplicates, in bits of 64 (default: the setting).
        """
        guard = self.exclusive(info) if fix else contextlib.nullcontext()
        with guard:
            if fix:
                info = self._record(info)
            self.progress("reading the project's entries", 0, None)
            sets = self.entries(info, fresh=fix)
            items: list[CheckItem] = []
            listed: dict[str, CachedEntry] = {}
            for side in DATASETS:
                for cached in sets[side]:
                    entry = _entry_of(cached)
                    if entry is None or cached.source_ref in listed:
                        continue
                    listed[cached.source_ref] = cached
                    boxes = Counter(box.label for box in entry.boxes)
                    items.append(CheckItem(cached.source_ref, side, frozenset(entry.label_names), boxes))
            groups = self._duplicate_groups(list(listed), distance=distance)
            report = check_report(items, groups, region=region)
            report["fix"]["applied"] = False
            if fix and report["fix"]["moves"]:
                moves = {move["source-ref"]: move["to"] for move in report["fix"]["moves"]}
                self._place(info, [listed[ref] for ref in moves], moves)
                report["fix"]["applied"] = True
            leaking = [] if report["fix"]["applied"] else _crossing_refs(report)
            report["tab"] = {
                "title": LEAK_TAB,
                "view": show_leaks(
                    self.ctx.ls, info.label_studio_project_id, [listed[r].task_id for r in leaking]
                ),
                "tasks": len(leaking),
            }
            return report

    def labels(
        self, info: ProjectInfo, dataset: str | None = None, *, fresh: bool = False
    ) -> list[LabelStats]:
        """ListDatasetLabels: every label the project declares (its label config) or an entry uses, with
        the entries that carry it and its boxes (``BoundingBoxCount`` counts boxes), in ``dataset`` or in
        both. A declared label no entry uses has zero counts (the console's "Manage labels" makes those).
        Counts as last published unless ``fresh`` (see :meth:`entries`).
        """
        _, config = self.config(info)
        return _label_stats(config, self.entries(info, fresh=fresh), dataset)

    def add_label(self, info: ProjectInfo, name: str, *, kind: str = CHOICES) -> None:
        """Declare a label (image-level by default, ``kind=rectanglelabels`` for boxes)."""
        _check_label(name)
        if kind not in (CHOICES, RECTANGLE_LABELS):
            raise invalid(f"a label is of kind {CHOICES} or {RECTANGLE_LABELS}, not {kind!r}")
        with self.exclusive(info):
            xml, _ = self.config(info)
            new = add_labels(
                xml,
                choices=[name] if kind == CHOICES else [],
                boxes=[name] if kind == RECTANGLE_LABELS else [],
            )
            if new != xml:
                self._set_label_config(info, new)
                self._publish(info)

    def rename_label(self, info: ProjectInfo, old: str, new: str) -> None:
        """Rename a label in the config; the publish that follows writes the new name into every
        annotation and prediction that has the old one (Label Studio itself keeps the old names)."""
        _check_label(new)
        with self.exclusive(info):
            # Publish first: the publisher finds renames by comparing the config with the label lists
            # of the last config it saw, which must be the one just before this change.
            self._publish(info)
            xml, config = self.config(info)
            declared = config.labels_of(CHOICES) + config.labels_of(RECTANGLE_LABELS)
            if old not in declared:
                raise not_found(f"no label {old!r}")
            if new in declared:
                raise invalid(f"a label {new!r} already exists")
            self._set_label_config(info, rename_label(xml, old, new))
            self._publish(info)

    def delete_label(self, info: ProjectInfo, name: str) -> None:
        """Delete a label that no entry uses (as the console allows): ResourceInUseException else."""
        with self.exclusive(info):
            stats = {s.name: s for s in self.labels(info, fresh=True)}
            if name not in stats:
                raise not_found(f"no label {name!r}")
            if stats[name].entries or stats[name].boxes:
                raise DatasetError(
                    "ResourceInUseException",
                    f"label {name!r} is used by {stats[name].entries} entries; remove it from them first",
                )
            xml, _ = self.config(info)
            self._set_label_config(info, remove_label(xml, name))
            self._publish(info)

    def describe(self, info: ProjectInfo, dataset: str) -> dict[str, Any]:
        """DescribeDataset's ``DatasetStats``: ``TotalEntries`` (images), ``LabeledEntries`` (images with
        a label or a box), ``TotalLabels`` (the labels :meth:`labels` lists for the dataset: declared in
        the project or used by its entries) and ``ErrorEntries`` (entries with at least one error,
        tasks that could not be read into an entry included)."""
        _check_dataset(dataset)
        if not self.has_dataset(info, dataset):
            raise not_found(f"the project has no {dataset} dataset")
        _, config = self.config(info)
        sets = self.entries(info)
        labeled = errors = 0
        for cached in sets[dataset]:
            if cached.line is None:
                errors += 1
                continue
            obj = loads(cached.line)
            _, issues = line_issues(obj)
            if any(i.severity is Severity.ERROR for i in issues):
                errors += 1
            labeled += _is_labeled(obj)
        return {
            "TotalEntries": len(sets[dataset]),
            "LabeledEntries": labeled,
            "TotalLabels": len(_label_stats(config, sets, dataset)),
            "ErrorEntries": errors,
        }

    def list_entries(
        self,
        info: ProjectInfo,
        dataset: str,
        *,
        contains_labels: list[str] | None = None,
        labeled: bool | None = None,
        source_ref_contains: str | None = None,
        has_errors: bool | None = None,
        next_token: str | None = None,
        max_results: int = MAX_RESULTS,
    ) -> tuple[list[str], str | None]:
        """ListDatasetEntries: the entries' lines as Rekognition returns them, filtered and paginated."""
        if not self.has_dataset(info, dataset):
            raise not_found(f"the project has no {dataset} dataset")
        if not 1 <= max_results <= MAX_RESULTS:
            raise invalid(f"MaxResults must be 1..{MAX_RESULTS}")
        filters = dumps([contains_labels, labeled, source_ref_contains, has_errors, dataset])
        start = _read_token(next_token, filters)
        wanted = set(contains_labels or ())
        out: list[str] = []
        position = 0
        for cached in self.entries(info)[dataset]:
            if cached.line is None:
                continue
            if source_ref_contains and source_ref_contains not in cached.source_ref:
                continue
            if wanted and not wanted.intersection(cached.labels):
                continue
            obj = loads(cached.line)
            is_labeled = _is_labeled(obj)
            if labeled is not None and is_labeled != labeled:
                continue
            _, issues = line_issues(obj)
            erred = any(i.severity is Severity.ERROR for i in issues)
            if has_errors and not erred:
                continue
            if position >= start:
                if len(out) == max_results:
                    return out, _make_token(position, filters)
                out.append(dumps(dataset_entry(obj, issues, labeled=is_labeled)).decode())
            position += 1
        return out, None

    # ------------------------------------------------------------------------------------ snapshots

    def snapshot(self, info: ProjectInfo) -> dict[str, Any]:
        """Freeze the current manifests and summary under ``snapshots/<id>/`` (never overwritten)."""
        self.progress("publishing the manifests", 0, None)
        self._publish(info)
        storage, projects = self.ctx.storage, self.ctx.projects
        names = ("train.manifest", "test.manifest", "validation/manifest_summary.json")
        with ProjectState(self.ctx.redis, info.label_studio_project_id).lock():
            # Under the publish lock: the three files of one publish, never two halves.
            bodies = {name: storage.get_bytes(projects.key(info, name)) or b"" for name in names}
        digest = hashlib.sha256(b"".join(hashlib.sha256(b).digest() for b in bodies.values())).hexdigest()
        snap = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{digest[:8]}"
        existing = storage.get_bytes(projects.key(info, f"snapshots/{snap}/snapshot.json"))
        if existing is not None:
            found: dict[str, Any] = loads(existing)
            return found  # the same files in the same second: that snapshot (a snapshot is never rewritten)
        for number, (name, body) in enumerate(bodies.items(), start=1):
            self.progress("copying files", number - 1, len(bodies) + 1)
            storage.put_bytes(projects.key(info, f"snapshots/{snap}/{name}"), body)
        record = {
            "id": snap,
            "created": time.time(),
            "sha256": {name: hashlib.sha256(b).hexdigest() for name, b in bodies.items()},
            "entries": {
                TRAIN: bodies["train.manifest"].count(b"\n"),
                TEST: bodies["test.manifest"].count(b"\n"),
            },
        }
        self.progress("copying files", len(bodies), len(bodies) + 1)
        storage.put_bytes(
            projects.key(info, f"snapshots/{snap}/snapshot.json"),
            dumps(record),
            content_type="application/json",
        )
        self.progress("copying files", len(bodies) + 1, len(bodies) + 1)
        return record

    def snapshots(self, info: ProjectInfo) -> list[str]:
        """The project's snapshot ids, oldest first."""
        base = self.ctx.projects.key(info, "snapshots/")
        return sorted(p[len(base) :].rstrip("/") for p in self.ctx.storage.list_keys(base, delimiter="/"))

    def diff(self, info: ProjectInfo, a: str, b: str) -> dict[str, list[dict[str, Any]]]:
        """Entries added, removed and relabelled (labels, boxes or dataset changed) from snapshot a to b."""
        before, after = self._snapshot_entries(info, a), self._snapshot_entries(info, b)
        added = [{"source-ref": r, **after[r]} for r in after if r not in before]
        removed = [{"source-ref": r, **before[r]} for r in before if r not in after]
        relabelled = [
            {"source-ref": r, "before": before[r], "after": after[r]}
            for r in after
            if r in before and before[r] != after[r]
        ]
        return {"added": added, "removed": removed, "relabelled": relabelled}

    def _snapshot_entries(self, info: ProjectInfo, snap: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        found = False
        for side in DATASETS:
            body = self.ctx.storage.get_bytes(
                self.ctx.projects.key(info, f"snapshots/{snap}/{side}.manifest")
            )
            if body is None:
                continue
            found = True
            for raw in body.splitlines():
                entry = parse_line(loads(raw)).entry if raw.strip() else None
                if entry is not None:
                    out[entry.source_ref] = {
                        "dataset": side,
                        "labels": sorted(entry.label_names),
                        "boxes": sorted(
                            (b.label, round(b.left), round(b.top), round(b.width), round(b.height))
                            for b in entry.boxes
                        ),
                    }
        if not found:
            raise not_found(f"no snapshot {snap!r}")
        return out


# ------------------------------------------------------------------------------------------ helpers


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise invalid(f"dataset must be train or test, got {dataset!r}")


def _check_label(name: str) -> None:
    if not name or len(name) > codes.DEFAULT_LIMITS.max_label_name or any(ord(c) < 32 for c in name):
        raise invalid(f"a label name has 1 to {codes.DEFAULT_LIMITS.max_label_name} printable characters")


def _write_options(config: LabelConfig, dataset: str) -> WriteOptions:
    choices = config.first(CHOICES)
    boxes = config.first(RECTANGLE_LABELS)
    options = WriteOptions(dataset=dataset, image_key=config.image_key)
    if choices is not None:
        options = replace(
            options, choices_name=choices.name, image_name=choices.to_name or options.image_name
        )
    if boxes is not None:
        options = replace(options, boxes_name=boxes.name, image_name=boxes.to_name or options.image_name)
    return options


def _image_entry(source_ref: str, label: str | None, now: str) -> Entry:
    entry = Entry(source_ref=source_ref)
    if label:
        entry.labels.append(ImageLabel(label, provenance=Provenance(human_annotated=True, creation_date=now)))
    return entry


def _is_labeled(obj: Any) -> bool:
    """Whether a stored line has a label or a box (``cl-metadata.is_labeled``), valid or not."""
    entry = parse_line(obj).entry
    return entry is not None and entry.is_labeled


def _label_stats(
    config: LabelConfig, sets: dict[str, list[CachedEntry]], dataset: str | None
) -> list[LabelStats]:
    declared = config.labels_of(CHOICES) + config.labels_of(RECTANGLE_LABELS)
    entries: dict[str, int] = dict.fromkeys(declared, 0)
    boxes: dict[str, int] = dict.fromkeys(declared, 0)
    for side in [dataset] if dataset else list(DATASETS):
        for cached in sets[side]:
            entry = _entry_of(cached)
            if entry is None:
                continue
            for name in entry.label_names:
                entries[name] = entries.get(name, 0) + 1
            for box in entry.boxes:
                boxes[box.label] = boxes.get(box.label, 0) + 1
    return [LabelStats(name, entries[name], boxes.get(name, 0)) for name in entries]


def _crossing_refs(report: dict[str, Any]) -> list[str]:
    """The images of the groups a check found in both train and test."""
    return [ref for group in report["crossing"] for side in (TRAIN, TEST) for ref in group[side]]


def _entry_of(cached: CachedEntry) -> Entry | None:
    if cached.line is None:
        return None
    try:
        return parse_line(loads(cached.line)).entry
    except (ValueError, ConversionError):
        return None


def _make_token(position: int, filters: bytes) -> str:
    raw = dumps({"p": position, "f": hashlib.sha256(filters).hexdigest()[:16]})
    return base64.urlsafe_b64encode(raw).decode()


def _read_token(token: str | None, filters: bytes) -> int:
    if not token:
        return 0
    try:
        obj = loads(base64.urlsafe_b64decode(token.encode()))
        position = int(obj["p"])
        same = obj["f"] == hashlib.sha256(filters).hexdigest()[:16]
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError("InvalidPaginationTokenException", "the NextToken is not one we gave") from exc
    if not same or position < 0:
        raise DatasetError("InvalidPaginationTokenException", "the NextToken belongs to other filters")
    return position
