"""Publishing: Label Studio's current state -> the entry cache -> train/test manifests and summary in S3.

One publish per project at a time (a Redis lock); events that arrive meanwhile wait for the next. The
steps, and why they are safe to repeat:

1. take the recorded events (the webhook hints) atomically; on any failure they are given back;
2. read the label config (after PROJECT_UPDATED, on a rebuild, else when the events' annotation
   payloads carry another config than the one kept, or none and the last read is more than
   ``CONFIG_RECHECK_SECONDS`` old); a changed config means a full rebuild (labels may have been renamed);
3. merge the annotation payloads and deletions into the task records (:mod:`sync_service.domain.
   taskcache`) and take the tasks they answer; re-read the others from Label Studio's export endpoint
   (or all tasks on a rebuild, the records with them); convert each with the core (``task_to_entry`` +
   ``entry_to_line``, as ``customlabels convert ls-to-manifest``) and update the entry cache; tasks that
   are gone leave it;
4. write ``train.manifest``, ``test.manifest`` and ``validation/manifest_summary.json``: after a few
   changes, only what changed (from the state the last publish kept, :mod:`sync_service.domain.manifests`:
   the unchanged byte ranges of each manifest copied by S3); else each whole, keeping that state afresh.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from redis import Redis

from converters import codes
from converters.errors import ConversionError
from converters.fastlines import line_check, task_line_labels
from converters.imagemeta import ImageMeta, image_meta_from_header
from converters.jsonio import RawLine, dumps, loads
from converters.labelconfig import (
    RECTANGLE_LABELS,
    LabelConfig,
    label_lists,
    label_renames,
    parse_label_config,
)
from converters.labelstudio import ReadOptions, labels_in, rename_labels, task_to_entry
from converters.manifest import entry_to_line
from converters.split import TEST, TRAIN, SplitItem, split
from converters.validation import ManifestValidator, Row, check_line, summarize
from sync_service.domain.fingerprints import DUPLICATE_DISTANCE, in_groups, known_groups
from sync_service.domain.images import adopt_upload
from sync_service.domain.manifests import Published, keep_full, publish_changes, sized_dumps
from sync_service.domain.projects import ProjectInfo, Projects
from sync_service.domain.taskcache import (
    TaskRecords,
    apply_payload,
    delete_annotation,
    label_config_digest,
    payload_config_digest,
    read_payload,
    task_for_converter,
)
from sync_service.edges.labelstudio import LabelStudio
from sync_service.edges.s3 import ManifestChanged, Storage
from sync_service.edges.state import (
    IMAGE_META_KEY,
    CachedEntry,
    EventBatch,
    LineRow,
    ManifestKeep,
    ProjectState,
    collector_paused,
)

log = logging.getLogger(__name__)

HEADER_BYTES = (64 * 1024, 1024 * 1024)  # ranged reads tried in turn for an image's header
MAX_LINE = codes.DEFAULT_LIMITS.max_line_chars
CONFIG_RECHECK_SECONDS = 30.0
"""Seconds a label config read from Label Studio is reused by publishes of events that do not carry it
(hints: tasks created or deleted, annotations deleted); annotation payloads carry the project's config,
and while it is the one kept no read is made. A PROJECT_UPDATED, a resync or a reconcile reads it again
at once; a lost PROJECT_UPDATED is seen within this time, or at the next annotation payload."""
PREDICTIONS_ONE_BY_ONE = 20  # tasks whose predictions are read one request each; more: one for the project


def _config_vouched(batch: EventBatch, digest: str | None) -> bool:
    """Whether the batch's annotation payloads all carry the label config ``digest`` names (the one the
    cache is built with): Label Studio sends its project whole with each, so the config need not be read."""
    if digest is None or not batch.payloads:
        return False
    return all(payload_config_digest(value) == digest for value in batch.payloads.values())


def now_stamp() -> str:
    """The current UTC time as manifests write ``creation-date``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


class ImageMetaCache:
    """Stored size and EXIF orientation of images, read once from the object's header and kept in Redis."""

    def __init__(self, redis: Redis, storage: Storage) -> None:
        self.redis = redis
        self.storage = storage
        self.local: dict[str, ImageMeta | None] = {}

    def prefetch(self, source_refs: Iterable[str]) -> None:
        """Read the facts Redis holds for ``source_refs`` in one round trip (a rebuild asks for many)."""
        wanted = [ref for ref in dict.fromkeys(source_refs) if ref not in self.local]
        if not wanted:
            return
        for ref, raw in zip(wanted, self.redis.hmget(IMAGE_META_KEY, wanted), strict=True):
            if raw is not None:
                self.local[ref] = _unpack_meta(raw)

    def get(self, source_ref: str) -> ImageMeta | None:
        """The image's facts, or None when the object is missing or not an image."""
        if source_ref in self.local:
            return self.local[source_ref]
        raw = self.redis.hget(IMAGE_META_KEY, source_ref)
        if raw is not None:
            meta = _unpack_meta(raw)
        else:
            meta = self._read(source_ref)
            if meta is not None:
                self.redis.hset(IMAGE_META_KEY, source_ref, _pack_meta(meta))
        self.local[source_ref] = meta
        return meta

    def put(self, source_ref: str, meta: ImageMeta) -> None:
        """Keep facts read elsewhere (a fingerprint's read of the whole image) for later publishes."""
        self.local[source_ref] = meta
        self.redis.hset(IMAGE_META_KEY, source_ref, _pack_meta(meta))

    def _read(self, source_ref: str) -> ImageMeta | None:
        for size in HEADER_BYTES:
            head = self.storage.read_head(source_ref, size)
            if head is None:
                return None
            meta = image_meta_from_header(head)
            if meta is not None or len(head) < size:
                return meta
        return None


def _pack_meta(meta: ImageMeta) -> bytes:
    return dumps([meta.width, meta.height, meta.orientation, meta.format])


def _unpack_meta(raw: bytes | str) -> ImageMeta | None:
    width, height, orientation, fmt = loads(raw)
    return ImageMeta(width, height, orientation, fmt)


def _needs_predictions(task: dict[str, Any]) -> bool:
    """Whether the task's line is made from its predictions, which the export gave as ids only."""
    predictions = task.get("predictions")
    if not predictions or not any(isinstance(p, int) for p in predictions):
        return False
    return not any(isinstance(a, dict) and not a.get("was_cancelled") for a in task.get("annotations") or ())


def _has_boxes(task: dict[str, Any], config: LabelConfig | None) -> bool:
    for kind in ("annotations", "predictions"):
        for item in task.get(kind) or ():
            for result in (item.get("result") or ()) if isinstance(item, dict) else ():
                if not isinstance(result, dict):
                    continue
                control = config.kind_of(str(result.get("from_name"))) if config else None
                if (control or str(result.get("type", "")).lower()) == RECTANGLE_LABELS:
                    return True
    return False


def _box_image_ref(task: dict[str, Any], options: ReadOptions) -> str | None:
    """The ``s3://`` image of a task with boxes (whose geometry needs the image's stored size)."""
    if not _has_boxes(task, options.label_config):
        return None
    data = task.get("data")
    ref = (
        data.get(options.label_config.image_key if options.label_config else "image")
        if isinstance(data, dict)
        else None
    )
    return ref if isinstance(ref, str) and ref.startswith("s3://") else None


def convert_tasks(
    tasks: Iterable[dict[str, Any]], options: ReadOptions, images: ImageMetaCache | None, *, chunk: int = 500
) -> Iterator[CachedEntry]:
    """:func:`convert_task` over a stream, the image facts of each ``chunk`` of tasks read at once."""
    pending: list[dict[str, Any]] = []
    for task in tasks:
        pending.append(task)
        if len(pending) >= chunk:
            yield from _convert_chunk(pending, options, images)
            pending = []
    yield from _convert_chunk(pending, options, images)


def _convert_chunk(
    tasks: list[dict[str, Any]], options: ReadOptions, images: ImageMetaCache | None
) -> Iterator[CachedEntry]:
    if images is None:
        for task in tasks:
            yield convert_task(task, options, None)
        return
    refs = [_box_image_ref(t, options) for t in tasks]
    images.prefetch(ref for ref in refs if ref is not None)
    for task, ref in zip(tasks, refs, strict=True):
        yield convert_task(task, options, images, box_image=ref)


def convert_task(
    task: dict[str, Any],
    options: ReadOptions,
    images: ImageMetaCache | None,
    *,
    box_image: str | bool | None = True,
) -> CachedEntry:
    """One Label Studio task (export shape) -> its cache record, with the manifest line or the error.
    ``box_image``: the task's image whose stored size its boxes need, when the caller knows it already
    (None: none; True: find it here)."""
    task_id = int(task.get("id", 0))
    annotations = tuple(
        int(a["id"]) for a in task.get("annotations") or () if isinstance(a, dict) and "id" in a
    )
    data = task.get("data")
    data = data if isinstance(data, dict) else {}
    dataset = data.get("dataset")
    dataset = dataset if dataset in (TRAIN, TEST) else None
    if images is None:
        ref = None
    elif box_image is True:
        ref = _box_image_ref(task, options)
    else:
        ref = box_image if isinstance(box_image, str) else None
    if ref is not None and images is not None:
        meta = images.get(ref)
        if meta is not None:
            options = replace(options, image_meta={ref: meta})
    # The common task takes the shortcut (equal to the general reader's line, see converters.fastlines).
    made = task_line_labels(task, options)
    if made is None:
        try:
            entry = task_to_entry(task, options)
            names, boxes = labels_in(entry)
            made = entry_to_line(entry), entry.source_ref, tuple(dict.fromkeys([*names, *boxes]))
        except ConversionError as exc:
            ref = data.get("image")
            return CachedEntry(task_id, str(ref or ""), dataset, None, (), annotations, error=str(exc))
    obj, source_ref, labels = made
    line = sized_dumps(obj)  # a rebuild holds every line
    if len(line) > MAX_LINE:
        return CachedEntry(
            task_id, source_ref, dataset, None, (), annotations, error=f"line over {MAX_LINE} characters"
        )
    return CachedEntry(
        task_id, source_ref, dataset, line, labels, annotations, check=line_row(line, source_ref, obj)
    )


def line_row(line: bytes, source_ref: str, obj: Any = None) -> LineRow | None:
    """What Rekognition's per-line rules find in a manifest line, kept with its cache entry so that a
    publish counts the lines without validating them again; None if the line names another image.
    ``obj``: the line's JSON value when the caller has it (the object it was serialized from)."""
    value = loads(line) if obj is None else obj
    check = line_check(1, line, value) or check_line(RawLine(1, line, False, len(line)))
    if check.source_ref is not None and check.source_ref != source_ref:
        return None
    return (
        check.has_error,
        check.terminal,
        check.source_ref is not None,
        check.labeled,
        check.class_labels,
        check.box_labels,
    )


class Phases:
    """Seconds one publish spent in each of its steps (shown by the status endpoint, so that a slow
    publish says whether Label Studio, the cache, the manifests or S3 took the time)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the time the block takes to step ``name``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def rounded(self) -> dict[str, float]:
        """The steps' seconds, to the millisecond."""
        return {name: round(seconds, 3) for name, seconds in self.seconds.items()}


@dataclass(slots=True)
class PublishResult:
    """What one publish did."""

    project_id: int
    published: bool
    entries: dict[str, int]
    labels: dict[str, int]
    rebuilt: bool
    seconds: float


class Publisher:
    """Builds and writes one project's manifests; see the module docstring for the steps."""

    def __init__(
        self,
        redis: Redis,
        storage: Storage,
        ls: LabelStudio,
        projects: Projects,
        *,
        debounce: float = 0.0,
        duplicate_distance: int = DUPLICATE_DISTANCE,
    ) -> None:
        self.redis = redis
        self.storage = storage
        self.ls = ls
        self.projects = projects
        self.debounce = debounce
        self.duplicate_distance = duplicate_distance
        self.images = ImageMetaCache(redis, storage)
        self.phases = Phases()
        self.part_min: int | None = None  # bytes of a multipart write's smallest part (None: S3's)

    def publish(self, project_id: int, *, force: bool = False) -> PublishResult | None:
        """Bring the project's manifests up to date; ``force`` rebuilds from all tasks and rewrites all.

        Returns None when the project is not one of ours. Raises on failure, after giving the events back.
        """
        info = self.projects.find(project_id)
        state = ProjectState(self.redis, project_id)
        if info is None:
            state.unschedule()
            state.take()
            state.settle()
            log.info("project %s is not a customlabels project; events dropped", project_id)
            return None
        with state.lock():
            if state.recover():
                log.warning("project %s: events of a publish that never finished are redone", project_id)
            self._wait_debounce(state)
            state.unschedule()
            batch = state.take()
            if force:
                batch.full = True
            started = time.monotonic()
            try:
                with collector_paused():
                    result = self._publish(info, state, batch, force=force)
            except Exception as exc:
                state.give_back(batch)
                state.note_if_away(exc)  # the next reconcile reads every task (see reconcile)
                state.set_status(last_error=f"{type(exc).__name__}: {exc}", last_error_at=now_stamp())
                raise
            state.settle()
            result.seconds = time.monotonic() - started
            if result.published:  # shown by the status endpoint: how long a publish of this project takes
                state.set_status(
                    last_publish_seconds=round(result.seconds, 3),
                    last_publish_rebuilt=result.rebuilt,
                    last_publish_phases=self.phases.rounded(),
                )
            return result

    def _wait_debounce(self, state: ProjectState) -> None:
        """Wait until the first event this publish will take is ``debounce`` seconds old, so that a burst
        is published once; events that waited through the publish before are taken at once."""
        if self.debounce <= 0:
            return
        age = state.first_event_age()
        if age is not None and age < self.debounce:
            time.sleep(self.debounce - max(age, 0.0))

    def _publish(
        self, info: ProjectInfo, state: ProjectState, batch: EventBatch, *, force: bool
    ) -> PublishResult:
        phases = self.phases = Phases()
        if batch.empty and not force and state.has_entries():
            # Another publish took these events first (they came while it started): nothing to do, and
            # nothing to read, not even the label config.
            return PublishResult(info.label_studio_project_id, False, {}, {}, False, 0.0)
        # A changed config sends PROJECT_UPDATED (a full batch). Between those, the config kept from the
        # last read serves: for CONFIG_RECHECK_SECONDS after that read, and for as long as the events'
        # payloads say the project still has it, sparing Label Studio a request when it is busiest.
        xml = None
        if not (batch.full or force):
            xml = state.recent_label_config(CONFIG_RECHECK_SECONDS)
            if xml is None and _config_vouched(batch, state.config_digest()):
                xml = state.recent_label_config(math.inf)
        if xml is None:
            with phases.timed("label_studio"):
                project = self.ls.project(info.label_studio_project_id, fields=("id", "label_config"))
            xml = str(project.get("label_config") or "")
            state.keep_label_config(xml)
        digest = label_config_digest(xml)
        config = parse_label_config(xml, source=f"project {info.label_studio_project_id} label config")
        renames: dict[str, dict[str, str]] = {}
        labels_changed = False
        if digest != state.config_digest():
            batch.full = True
            declared = label_lists(config)
            if info.labels != declared:
                renames = label_renames(info.labels or {}, config)
                info = replace(info, labels=declared)
                labels_changed = True
        options = ReadOptions(label_config=config, job_name=info.job_name, now=now_stamp())
        rebuilt = batch.full or not state.has_entries()
        records = TaskRecords(self.redis, state)
        answered: list[dict[str, Any]] = []
        if not rebuilt:
            with phases.timed("cache"):
                answered, unanswered, unknown = self._from_events(records, state, batch)
            if unknown:
                rebuilt = True  # an annotation we never saw: its task cannot be named, so read all
            batch.dirty |= unanswered
        pid = info.label_studio_project_id
        if rebuilt:
            tasks = self._predicted(self._adopted(self.ls.export_tasks(pid), info, config), pid)
            if renames:
                tasks = self._renamed(tasks, renames)
            tasks = records.recording(tasks, whole=True)
            with phases.timed("rebuild"):  # read, convert and cache, streamed together
                cached = state.replace_all(convert_tasks(tasks, options, self.images))
            if labels_changed:
                # Only now, with every renamed annotation written back, is the new label list the record.
                # The record is read afresh: its other fields (datasets) may have changed meanwhile.
                with self.projects.lock(pid):
                    latest = self.projects.find(pid) or info
                    self.projects.save(replace(latest, labels=info.labels))
        elif batch.dirty or batch.gone or answered:
            # "Deleted" is a hint too: a late TASKS_DELETED may name an id SQLite gave to a new task (or
            # a delete and a create of one id came in one burst). Read them all; what is absent is gone.
            wanted = batch.dirty | batch.gone
            read: list[dict[str, Any]] = []
            if wanted:
                with phases.timed("label_studio"):
                    read = list(
                        records.recording(
                            self._predicted(
                                self._adopted(self.ls.export_tasks(pid, wanted), info, config), pid
                            ),
                            whole=False,
                        )
                    )
            missing = wanted - {int(t["id"]) for t in read if isinstance(t.get("id"), int)}
            read.extend(self._adopted(answered, info, config))
            with phases.timed("convert"):
                fresh = list(convert_tasks(read, options, self.images))
            with phases.timed("cache"):
                records.save((), removed=missing)
                state.update(fresh, missing)
        state.set_config_digest(digest)
        if not (rebuilt or batch.dirty or batch.gone or answered or force):
            return PublishResult(pid, False, {}, {}, False, 0.0)
        # The tasks whose entries may have changed: those read again and those the payloads answered.
        touched = batch.dirty | batch.gone | {int(task["id"]) for task in answered}
        changed = None if rebuilt or force else self._write_changes(info, state, touched)
        if changed is not None:
            entries, labels, errors, error_count = (
                changed.entries, changed.labels, changed.errors, changed.error_count,
            )  # fmt: skip
        else:
            if not rebuilt:  # a rebuild has what the cache holds already
                with phases.timed("cache"):
                    cached = state.entries()
            entries, labels, errors = self._write(info, cached, force=force, state=state)
            error_count = len(errors)
        state.set_status(
            last_publish=now_stamp(),
            entries=entries,
            labels=labels,
            task_errors=errors[:50],
            task_error_count=error_count,
            last_error=None,
        )
        return PublishResult(pid, True, entries, labels, rebuilt, 0.0)

    def _from_events(
        self, records: TaskRecords, state: ProjectState, batch: EventBatch
    ) -> tuple[list[dict[str, Any]], set[int], bool]:
        """Merge the batch's annotation payloads and deletions into the task records (saved before the
        entries change: a publish redone after a crash converts the same tasks again from them).

        Returns the tasks the records answer (export shape, to convert), the ids of those they cannot
        answer (to read from Label Studio), and whether a deleted annotation's task is unknown.
        """
        parts = [read_payload(value) for value in batch.payloads.values()]
        parts.sort(key=lambda p: (str(p[0].get("updated_at") or ""), str(p[1].get("updated_at") or "")))
        owners = {int(a["id"]): int(t["id"]) for t, a in parts}
        deleted = sorted(batch.gone_annotations)
        cached = state.owners_of_annotations(a for a in deleted if a not in owners)
        unknown = any(a not in owners and a not in cached for a in deleted)
        owners.update(cached)
        touched = {int(t["id"]) for t, _ in parts} | {owners[a] for a in deleted if a in owners}
        loaded = records.load(touched)
        unanswered: set[int] = set()
        for task, annotation in parts:
            if not apply_payload(loaded.get(int(task["id"])), task, annotation):
                unanswered.add(int(task["id"]))
        for ann_id in deleted:  # after the payloads: a deletion is final, whatever came first
            task_id = owners.get(ann_id)
            if task_id is not None and task_id in loaded:
                delete_annotation(loaded[task_id], ann_id)
        records.save(loaded.values())
        answered = []
        for task_id in sorted(touched - unanswered - batch.dirty - batch.gone):
            made = task_for_converter(loaded[task_id]) if task_id in loaded else None
            if made is None:
                unanswered.add(task_id)
            else:
                answered.append(made)
        return answered, unanswered, unknown

    def _adopted(
        self, tasks: Iterable[dict[str, Any]], info: ProjectInfo, config: LabelConfig
    ) -> Iterator[dict[str, Any]]:
        """Tasks whose image was uploaded into Label Studio (``/data/upload/...``) pointed at a copy in
        the project's S3 folder first (see :func:`sync_service.domain.images.adopt_upload`), so that their
        manifest lines name a real object; other tasks pass through untouched."""
        for task in tasks:
            adopt_upload(
                task, ls=self.ls, storage=self.storage, projects=self.projects, info=info,
                image_key=config.image_key,
            )  # fmt: skip
            yield task

    def _predicted(self, tasks: Iterable[dict[str, Any]], project_id: int) -> Iterator[dict[str, Any]]:
        """Tasks whose manifest line comes from their predictions (no usable annotation), with those
        predictions whole: Label Studio's JSON export lists a task's predictions by id only.

        Such tasks are held back to the end of the stream (the cache does not depend on the order), then
        their predictions are read one task at a time, or, for many tasks, in one streamed request for
        the whole project.
        """
        waiting: dict[int, dict[str, Any]] = {}
        for task in tasks:
            if _needs_predictions(task):
                waiting[int(task["id"])] = task
            else:
                yield task
        if len(waiting) <= PREDICTIONS_ONE_BY_ONE:
            for task_id, task in waiting.items():
                task["predictions"] = list(self.ls.predictions(task_id=task_id))
                yield task
            return
        found: dict[int, list[dict[str, Any]]] = {task_id: [] for task_id in waiting}
        for prediction in self.ls.predictions(project_id=project_id):
            owner = prediction.get("task")
            if isinstance(owner, int) and owner in found:
                found[owner].append(prediction)
        for task_id, task in waiting.items():
            task["predictions"] = found[task_id]
            yield task

    def _renamed(
        self, tasks: Iterable[dict[str, Any]], renames: dict[str, dict[str, str]]
    ) -> Iterator[dict[str, Any]]:
        """Tasks with renamed labels written back into their annotations (and the whole predictions a
        manifest line is made from) in Label Studio, the source of truth (Label Studio keeps the old
        names in annotations when a label is renamed in the config)."""
        for task in tasks:
            for kind, update in (
                ("annotations", self.ls.update_annotation),
                ("predictions", self.ls.update_prediction),
            ):
                for item in task.get(kind) or ():
                    if not isinstance(item, dict) or "id" not in item:
                        continue
                    result = rename_labels(item.get("result"), renames)
                    if result is not None:
                        updated = update(int(item["id"]), result)
                        item["result"] = result
                        # A renamed label is a new label: its creation-date is the change's time, as a
                        # later read of the task will say (a prediction's change sends no webhook).
                        if isinstance(updated, dict) and updated.get("updated_at"):
                            item["updated_at"] = updated["updated_at"]
            yield task

    def _write(
        self, info: ProjectInfo, cached: list[CachedEntry], *, force: bool, state: ProjectState
    ) -> tuple[dict[str, int], dict[str, int], list[dict[str, Any]]]:
        usable, errors = dedupe(cached)
        sides = assign(
            usable,
            test_fraction=info.test_fraction,
            seed=info.seed,
            has_test=info.has_dataset(TEST),
            redis=self.redis,
            distance=self.duplicate_distance,
        )
        counts = {TRAIN: 0, TEST: 0}
        label_sets: dict[str, set[str]] = {TRAIN: set(), TEST: set()}
        spools = {TRAIN: self.storage.spool(), TEST: self.storage.spool()}
        try:
            with self.phases.timed("manifests"):
                lines: dict[str, list[bytes]] = {TRAIN: [], TEST: []}
                for entry in usable:
                    side = sides[entry.source_ref]
                    assert entry.line is not None
                    lines[side].append(entry.line)
                    label_sets[side].update(entry.labels)
                digests = {}
                for side, chosen in lines.items():
                    counts[side] = len(chosen)
                    body = b"\n".join(chosen) + b"\n" if chosen else b""
                    spools[side].write(body)
                    digests[side] = hashlib.sha256(body).hexdigest()
                    del body
            with self.phases.timed("validate"):
                summary = entries_summary(
                    [e for e in usable if sides[e.source_ref] == TRAIN],
                    [e for e in usable if sides[e.source_ref] == TEST] if counts[TEST] else None,
                )
            previous = state.status().get("digests") or {}
            with self.phases.timed("upload"):
                # Before each write: a publisher that stalled past the lock's life (another one took
                # over) stops here rather than overwrite the newer manifests.
                for side, name in ((TRAIN, "train.manifest"), (TEST, "test.manifest")):
                    if force or previous.get(side) != digests[side]:
                        state.check_lock()
                        self.storage.put_file(
                            self.projects.key(info, name), spools[side], content_type="application/x-ndjson"
                        )
                state.check_lock()
                self.storage.put_bytes(
                    self.projects.key(info, "validation/manifest_summary.json"),
                    dumps(summary) + b"\n",
                    content_type="application/json",
                )
            state.set_published(digests=digests)
        finally:
            for spool in spools.values():
                spool.close()
        with self.phases.timed("keep"):
            keys = self._manifest_keys(info)
            state.check_lock()  # (a state kept by a stale holder names old ETags: the next write is whole)
            keep_full(
                ManifestKeep(self.redis, info.label_studio_project_id),
                cached=cached,
                sides=sides,
                keys=keys,
                etags={side: self.storage.object_etag(keys[side]) for side in (TRAIN, TEST)},
                seed=info.seed,
                fraction=info.test_fraction,
                has_test=info.has_dataset(TEST),
                row_of=line_row,
            )
        return counts, {side: len(names) for side, names in label_sets.items()}, errors

    def _manifest_keys(self, info: ProjectInfo) -> dict[str, str]:
        return {
            TRAIN: self.projects.key(info, "train.manifest"),
            TEST: self.projects.key(info, "test.manifest"),
            "summary": self.projects.key(info, "validation/manifest_summary.json"),
        }

    def _write_changes(self, info: ProjectInfo, state: ProjectState, touched: set[int]) -> Published | None:
        """Publish the changes of the ``touched`` tasks from the state the last publish kept; None when
        the manifests must be written whole (see :mod:`sync_service.domain.manifests`)."""
        keep = ManifestKeep(self.redis, info.label_studio_project_id)
        refs = [entry.source_ref for entry in state.cached(touched).values()]
        if in_groups(self.redis, refs, distance=self.duplicate_distance):
            # The kept split places an image alone; one of a duplicate group goes where its group is.
            log.info(
                "project %s: a changed image has duplicates; publishing in full", info.label_studio_project_id
            )
            return None
        try:
            with self.phases.timed("manifests"):
                published = publish_changes(
                    keep,
                    touched=touched,
                    cached=state.cached,
                    storage=self.storage,
                    keys=self._manifest_keys(info),
                    seed=info.seed,
                    fraction=info.test_fraction,
                    has_test=info.has_dataset(TEST),
                    row_of=line_row,
                    before_write=state.check_lock,
                    part_min=self.part_min,
                )
        except ManifestChanged as exc:
            # Another writer replaced a manifest since the last publish: write them whole (from the
            # cache, as every publish did before), which keeps the state afresh.
            log.warning("project %s: %s; the manifests are written whole", info.label_studio_project_id, exc)
            keep.forget()
            return None
        if published is not None:
            state.set_published(digests={})  # the objects changed in place: no whole-body digest holds
        return published


def dedupe(cached: Iterable[CachedEntry]) -> tuple[list[CachedEntry], list[dict[str, Any]]]:
    """The entries that make manifest lines (first task per image wins) and the tasks left out, with why."""
    seen: set[str] = set()
    usable: list[CachedEntry] = []
    errors: list[dict[str, Any]] = []
    for entry in cached:
        if entry.line is None:
            errors.append({"task": entry.task_id, "error": entry.error})
            continue
        if entry.source_ref in seen:
            errors.append({"task": entry.task_id, "error": f"{entry.source_ref} is on an earlier task"})
            continue
        seen.add(entry.source_ref)
        usable.append(entry)
    return usable, errors


def assign(
    entries: list[CachedEntry],
    *,
    test_fraction: float,
    seed: int,
    has_test: bool = True,
    redis: Redis | None = None,
    distance: int = DUPLICATE_DISTANCE,
) -> dict[str, str]:
    """Each entry's dataset: its task's ``data.dataset`` when set, else the core's stratified split.

    Entries with a dataset are kept where they are and take part in the strata, so that the unassigned
    ones fill each label's test share up to ``test_fraction``. A project without a test dataset keeps
    every unassigned entry in training (Rekognition then splits at training time). With ``redis``, the
    split keeps each group of duplicate images on one side, for the images whose fingerprints are cached
    (:func:`sync_service.domain.fingerprints.known_groups`: no image is read here); ``distance``: their
    Hamming threshold, bits of 64.
    """
    keep = {e.source_ref: e.dataset for e in entries if e.dataset is not None}
    if len(keep) == len(entries):
        return dict(keep)
    if not has_test:
        return {e.source_ref: e.dataset or TRAIN for e in entries}
    items = [SplitItem(e.source_ref, frozenset(e.labels)) for e in entries]
    refs = [e.source_ref for e in entries]
    groups = known_groups(redis, refs, distance=distance) if redis is not None else None
    return split(items, test_fraction=test_fraction, seed=seed, keep=keep, groups=groups)


def entries_summary(train: list[CachedEntry], test: list[CachedEntry] | None) -> dict[str, Any]:
    """Rekognition's ``manifest_summary.json`` of the manifests these entries make (their lines in this
    order), from each entry's cached validation (:func:`line_row`); an entry without one is validated now."""
    results = []
    for entries in (train, test):
        if entries is None:
            continue
        validator = ManifestValidator(collect_items=test is None)
        rows: list[Row] = []
        for number, entry in enumerate(entries, start=1):
            assert entry.line is not None
            row = entry.check if entry.check is not None else line_row(entry.line, entry.source_ref)
            if row is None:  # the line names another image than its entry: validate it as it is
                check = check_line(RawLine(number, entry.line, False, len(entry.line)))
                rows.append((number, *check[2:]))
                continue
            has_error, terminal, named, labeled, classes, boxes = row
            ref = entry.source_ref if named else None
            rows.append((number, has_error, terminal, ref, labeled, classes, boxes, len(entry.line) + 1))
        validator.account_rows(rows)
        results.append(validator.finish())
    summary = summarize(results[0], results[1] if len(results) > 1 else None)
    return summary.document
