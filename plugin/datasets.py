"""Dataset operations of a project: Rekognition Custom Labels' console workflow on Label Studio.

Label Studio holds the entries (one task per image, ``data.dataset`` = ``train``/``test``), their labels
(annotations, or predictions when not ``human-annotated``) and the label set (the labeling config); S3
holds the images and the derived manifests. Every operation here reads the current state through the
sync service's entry cache (brought up to date first, so reads see every change made so far) and writes
through Label Studio's API, then publishes, so the manifests in S3 follow at once.

Both the ``customlabels dataset ...`` commands and the Rekognition-compatible endpoint call these
functions; errors are :class:`DatasetError` carrying the Rekognition exception name and, where there is
one, the Rekognition error code.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from converters import codes as C
from converters.coco import coco_to_entries
from converters.csvfile import read_rows, row_to_entry, split_duplicates
from converters.errors import ConversionError
from converters.imagemeta import ImageMeta
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
from converters.manifest import parse_line
from converters.model import Entry, ImageLabel, Provenance
from converters.split import TEST, TRAIN, SplitItem, labels_short_of, split
from converters.validation import dataset_entry, line_issues
from sync_service.errors import ServiceError
from sync_service.jobs import Context
from sync_service.projects import ProjectInfo
from sync_service.publisher import dedupe, now_stamp
from sync_service.s3 import split_s3_url
from sync_service.state import CachedEntry, ProjectState

DATASETS = (TRAIN, TEST)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMPORT_BATCH = 500  # tasks per Label Studio import request
MAX_UPDATE_BYTES = 5 * 1024 * 1024  # UpdateDatasetEntries' GroundTruth limit
MAX_RESULTS = 100


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


class Datasets:
    """The dataset operations over one sync-service :class:`Context`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

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

    def has_dataset(self, info: ProjectInfo, dataset: str) -> bool:
        """Whether the project has this dataset."""
        return info.has_dataset(dataset)

    def create_dataset(self, info: ProjectInfo, dataset: str, **record: Any) -> ProjectInfo:
        """Add the dataset's record; ResourceAlreadyExists when the project has one of this type."""
        _check_dataset(dataset)
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
        info = self.project(info.label_studio_project_id)  # the freshest record
        datasets = dict(info.datasets or {})
        record = dict(datasets.get(dataset) or dataset_record())
        record.update(status=status, status_message=message, status_code=code, updated=time.time())
        datasets[dataset] = record
        return self.save(replace(info, datasets=datasets))

    def delete_dataset(self, info: ProjectInfo, dataset: str) -> None:
        """Delete the dataset's tasks in Label Studio and its record."""
        pid = info.label_studio_project_id
        gone = [entry.task_id for entry in self.entries(info)[dataset]]
        for task_id in gone:
            self.ctx.ls.delete_task(task_id)
        datasets = {k: v for k, v in (info.datasets or {}).items() if k != dataset}
        info = self.save(replace(info, datasets=datasets))
        ProjectState(self.ctx.redis, pid).note(gone=gone)
        self._publish(info)

    # -------------------------------------------------------------------------------------- reading

    def _publish(self, info: ProjectInfo) -> None:
        self.ctx.publisher.publish(info.label_studio_project_id)

    def entries(self, info: ProjectInfo) -> dict[str, list[CachedEntry]]:
        """Each dataset's entries as of now (the cache brought up to date first), in task order.

        Tasks whose image could not be read into an entry are listed too (``line`` None, ``error`` set).
        """
        self._publish(info)
        cached = ProjectState(self.ctx.redis, info.label_studio_project_id).entries()
        usable, _ = dedupe(cached)
        sides = self.sides(info, usable)
        out: dict[str, list[CachedEntry]] = {TRAIN: [], TEST: []}
        kept = {e.task_id for e in usable}
        for entry in cached:
            if entry.task_id in kept:
                out[sides[entry.source_ref]].append(entry)
            elif entry.line is None:
                out[entry.dataset or TRAIN].append(entry)
        return out

    def sides(self, info: ProjectInfo, usable: list[CachedEntry]) -> dict[str, str]:
        """Each entry's dataset (see :func:`sync_service.publisher.assign`)."""
        from sync_service.publisher import assign  # noqa: PLC0415 (one definition of the policy)

        return assign(
            usable, test_fraction=info.test_fraction, seed=info.seed, has_test=self.has_dataset(info, TEST)
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
        skipped, or with ``replace_existing`` its whole labeling is replaced (UpdateDatasetEntries)."""
        _check_dataset(dataset)
        if not self.has_dataset(info, dataset):
            raise not_found(f"the project has no {dataset} dataset")
        items = list(entries)
        result = ImportResult()
        xml, config = self.config(info)
        choices = [label.name for e in items for label in e.labels]
        boxes = [box.label for e in items for box in e.boxes]
        new_xml = add_labels(xml, choices=choices, boxes=boxes)
        if new_xml != xml:
            self.ctx.ls.update_project(info.label_studio_project_id, label_config=new_xml)
            config = parse_label_config(new_xml)
        options = _write_options(config, dataset)
        existing = {e.source_ref: e for side in self.entries(info).values() for e in side}
        fresh: list[dict[str, Any]] = []
        changed: list[int] = []
        seen: set[str] = set()
        for entry in items:
            if entry.source_ref in seen:
                result.skipped += 1
                continue
            seen.add(entry.source_ref)
            entry.dataset = dataset
            task = entry_to_task(entry, replace(options, image_meta=self._meta_for(entry)))
            old = existing.get(entry.source_ref)
            if old is None:
                fresh.append(task)
                result.added += 1
            elif replace_existing:
                self._replace_task(info.label_studio_project_id, old.task_id, task)
                changed.append(old.task_id)
                result.updated += 1
            else:
                result.skipped += 1
        pid = info.label_studio_project_id
        for start in range(0, len(fresh), IMPORT_BATCH):
            self.ctx.ls.import_tasks(pid, fresh[start : start + IMPORT_BATCH])
        if changed:
            # Task data changes send no webhook: tell the cache ourselves.
            ProjectState(self.ctx.redis, pid).note(dirty=changed)
        if fresh or changed:
            ProjectState(self.ctx.redis, pid).note(full=bool(fresh) and not changed)
            self._publish(info)
        return result

    def _meta_for(self, entry: Entry) -> dict[str, ImageMeta]:
        if not entry.box_groups:
            return {}
        from sync_service.publisher import ImageMetaCache  # noqa: PLC0415

        meta = ImageMetaCache(self.ctx.redis, self.ctx.storage).get(entry.source_ref)
        return {entry.source_ref: meta} if meta is not None else {}

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
        """Import manifest lines (every form the core reads): lines with a terminal error are rejected
        with their codes and do not stop the others; more than 20% of them fails the whole import."""
        entries: list[Entry] = []
        rejected: list[dict[str, Any]] = []
        total = 0
        for raw in lines:
            total += 1
            if raw.too_long or not raw.data.strip():
                rejected.append({"line": raw.number, "code": C.ERROR_INVALID_JSON_LINE})
                continue
            try:
                obj = loads(raw.data)
            except ValueError:
                rejected.append({"line": raw.number, "code": C.ERROR_INVALID_JSON_LINE})
                continue
            entry, issues = line_issues(obj)
            if entry is None:
                codes = [i.code for i in issues] or [C.ERROR_INVALID_JSON_LINE]
                rejected.append({"line": raw.number, "code": codes[0], "codes": codes})
                continue
            entries.append(entry)
        if total == 0:
            raise invalid(f"{source}: {C.message(C.ERROR_EMPTY_MANIFEST)}", code=C.ERROR_EMPTY_MANIFEST)
        if len(rejected) / total > C.DEFAULT_LIMITS.invalid_row_fraction:
            raise invalid(
                f"{source}: {len(rejected)} of {total} lines are invalid; "
                f"{C.message(C.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST)}",
                code=C.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST,
            )
        result = self.import_entries(info, dataset, entries, replace_existing=replace_existing)
        result.rejected = rejected
        return result

    def from_manifest(self, info: ProjectInfo, dataset: str, location: str) -> ImportResult:
        """Import a Ground Truth manifest from ``s3://bucket/key`` or a local file."""
        with self._open(location) as stream:
            return self.from_manifest_lines(
                info, dataset, iter_lines(stream, max_chars=C.DEFAULT_LIMITS.max_line_chars), source=location
            )

    def _open(self, location: str) -> IO[bytes]:
        if location.startswith("s3://"):
            bucket, key = split_s3_url(location)
            spool = self.ctx.storage.spool()
            try:
                self.ctx.storage.client.download_fileobj(bucket, key, spool)
            except Exception as exc:  # botocore raises several unrelated types here
                spool.close()
                raise invalid(
                    f"{location}: {C.message(C.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT)} ({exc})",
                    code=C.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT,
                ) from exc
            spool.seek(0)
            return spool
        try:
            return open(location, "rb")
        except OSError as exc:
            raise invalid(
                f"{location}: {C.message(C.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT)} ({exc.strerror})",
                code=C.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT,
            ) from exc

    def from_s3(
        self, info: ProjectInfo, dataset: str, uri: str, *, labels_from_folders: bool = False
    ) -> ImportResult:
        """One task per PNG/JPEG under ``s3://bucket/prefix/``; with folder labels, each image's label is
        its immediate child folder of the prefix (images directly under it get none). Re-running imports
        only what is new."""
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket:
            raise invalid(f"{uri!r} is not an s3://bucket/prefix/ URI")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        now = now_stamp()
        entries = []
        for key in self.ctx.storage.list_objects(bucket, prefix):
            if not key.lower().endswith(IMAGE_SUFFIXES):
                continue
            rest = key[len(prefix) :]
            label = rest.split("/", 1)[0] if labels_from_folders and "/" in rest else None
            entries.append(_image_entry(f"s3://{bucket}/{key}", label, now))
        return self.import_entries(info, dataset, entries, replace_existing=False)

    def from_dir(
        self, info: ProjectInfo, dataset: str, path: str, *, labels_from_folders: bool = False
    ) -> ImportResult:
        """Images of a local folder, copied into the project's S3 folder (content-addressed: the key is
        the SHA-256 of the bytes, so a re-run or a copy elsewhere makes no second object or task)."""
        root = Path(path)
        if not root.is_dir():
            raise invalid(f"{path}: not a folder")
        now = now_stamp()
        entries = []
        for file in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            rel = file.relative_to(root).parts
            label = rel[0] if labels_from_folders and len(rel) > 1 else None
            entries.append(_image_entry(self.upload_image(info, file.read_bytes(), file.suffix), label, now))
        return self.import_entries(info, dataset, entries, replace_existing=False)

    def upload_image(self, info: ProjectInfo, data: bytes, suffix: str) -> str:
        """Store image bytes under the project's ``images/`` by content; returns its ``s3://`` URL."""
        digest = hashlib.sha256(data).hexdigest()
        ext = suffix.lower() if suffix.lower() in IMAGE_SUFFIXES else ".jpg"
        key = self.ctx.projects.key(info, f"images/{digest[:2]}/{digest}{ext}")
        if not self.ctx.storage.exists(key):
            self.ctx.storage.put_bytes(
                key, data, content_type=mimetypes.guess_type(f"x{ext}")[0] or "image/jpeg"
            )
        return f"s3://{self.ctx.storage.bucket}/{key}"

    def from_dataset(
        self, info: ProjectInfo, dataset: str, source: ProjectInfo, source_dataset: str
    ) -> ImportResult:
        """Copy the entries (and their labels) of another dataset into this one."""
        _check_dataset(source_dataset)
        if not self.has_dataset(source, source_dataset):
            raise not_found(f"project {source.title!r} has no {source_dataset} dataset")
        lines = [
            RawLine(n, e.line or b"", False, len(e.line or b""))
            for n, e in enumerate(self.entries(source)[source_dataset], start=1)
            if e.line is not None
        ]
        if not lines:
            return ImportResult()
        return self.from_manifest_lines(info, dataset, lines, source=f"{source.title}/{source_dataset}")

    def from_coco(self, info: ProjectInfo, dataset: str, path: str, *, s3_prefix: str) -> ImportResult:
        """A COCO object-detection file, through the core's transform."""
        with self._open(path) as stream:
            coco = loads(stream.read())
        entries = list(coco_to_entries(coco, s3_prefix=s3_prefix, now=now_stamp(), source=path))
        return self.import_entries(info, dataset, entries, replace_existing=True)

    def from_csv(self, info: ProjectInfo, dataset: str, path: str, *, s3_prefix: str | None) -> ImportResult:
        """A CSV ``image,label,...`` file, through the core's transform; duplicate images are refused."""
        with self._open(path) as stream:
            text = stream.read().decode("utf-8")
        rows = list(read_rows(text.splitlines(), source=path))
        _, repeats = split_duplicates(rows)
        if repeats:
            raise invalid(f"{path}: {len(repeats)} duplicate image(s), first on line {repeats[0].line}")
        now = now_stamp()
        entries = [row_to_entry(r, s3_prefix=s3_prefix, now=now, source=path) for r in rows]
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
        """Move ``fraction`` of the training entries into the (empty) test dataset, stratified by label."""
        if not (self.has_dataset(info, TRAIN) and self.has_dataset(info, TEST)):
            raise not_found("distribute needs both a training and a test dataset")
        sets = self.entries(info)
        if sets[TEST]:
            raise invalid(f"the test dataset is not empty ({len(sets[TEST])} entries)")
        train = [e for e in sets[TRAIN] if e.line is not None]
        items = [SplitItem(e.source_ref, frozenset(e.labels)) for e in train]
        short = labels_short_of(items)
        if short or not items:
            names = ", ".join(f"{n} ({c})" for n, c in list(short.items())[:10]) or "no entries"
            raise invalid(
                f"{C.message(C.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE)}: {names}",
                code=C.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE,
            )
        assignment = split(items, test_fraction=fraction, seed=info.seed)
        pid = info.label_studio_project_id
        by_id = {t["id"]: t for t in self.ctx.ls.export_tasks(pid, [e.task_id for e in train])}
        moved = 0
        for entry in train:
            side = assignment[entry.source_ref]
            task = by_id.get(entry.task_id)
            if task is None or task.get("data", {}).get("dataset") == side:
                continue
            self.ctx.ls.update_task_data(entry.task_id, {**task["data"], "dataset": side})
            moved += side == TEST
        ProjectState(self.ctx.redis, pid).note(dirty=[e.task_id for e in train])
        self._publish(info)
        return {TRAIN: len(train) - moved, TEST: moved}

    def labels(self, info: ProjectInfo, dataset: str | None = None) -> list[LabelStats]:
        """Every declared or used label with its entry and box counts (in ``dataset``, or both)."""
        _, config = self.config(info)
        declared = config.labels_of(CHOICES) + config.labels_of(RECTANGLE_LABELS)
        entries: dict[str, int] = dict.fromkeys(declared, 0)
        boxes: dict[str, int] = dict.fromkeys(declared, 0)
        sets = self.entries(info)
        for side in [dataset] if dataset else list(DATASETS):
            for cached in sets[side]:
                entry = _entry_of(cached)
                if entry is None:
                    continue
                for name in entry.label_names:
                    entries[name] = entries.get(name, 0) + 1
                    boxes.setdefault(name, 0)
                for box in entry.boxes:
                    boxes[box.label] = boxes.get(box.label, 0) + 1
        return [LabelStats(name, entries[name], boxes.get(name, 0)) for name in entries]

    def add_label(self, info: ProjectInfo, name: str, *, kind: str = CHOICES) -> None:
        """Declare a label (image-level by default, ``kind=rectanglelabels`` for boxes)."""
        _check_label(name)
        xml, _ = self.config(info)
        new = add_labels(
            xml, choices=[name] if kind == CHOICES else [], boxes=[name] if kind == RECTANGLE_LABELS else []
        )
        if new != xml:
            self.ctx.ls.update_project(info.label_studio_project_id, label_config=new)
            self._publish(info)

    def rename_label(self, info: ProjectInfo, old: str, new: str) -> None:
        """Rename a label in the config; the next publish writes the new name into every annotation."""
        _check_label(new)
        xml, config = self.config(info)
        if old not in config.labels_of(CHOICES) + config.labels_of(RECTANGLE_LABELS):
            raise not_found(f"no label {old!r}")
        if new in config.labels_of(CHOICES) + config.labels_of(RECTANGLE_LABELS):
            raise invalid(f"a label {new!r} already exists")
        self.ctx.ls.update_project(info.label_studio_project_id, label_config=rename_label(xml, old, new))
        ProjectState(self.ctx.redis, info.label_studio_project_id).note(full=True)
        self._publish(info)

    def delete_label(self, info: ProjectInfo, name: str) -> None:
        """Delete a label that no entry uses (as the console allows)."""
        stats = {s.name: s for s in self.labels(info)}
        if name not in stats:
            raise not_found(f"no label {name!r}")
        if stats[name].entries or stats[name].boxes:
            raise DatasetError(
                "ResourceInUseException",
                f"label {name!r} is used by {stats[name].entries} entries; remove it from them first",
            )
        xml, _ = self.config(info)
        self.ctx.ls.update_project(info.label_studio_project_id, label_config=remove_label(xml, name))
        self._publish(info)

    def describe(self, info: ProjectInfo, dataset: str) -> dict[str, Any]:
        """DescribeDataset's ``DatasetStats``: ``TotalEntries``, ``LabeledEntries``, ``TotalLabels``,
        ``ErrorEntries`` (entries with at least one error, including tasks that could not be read)."""
        if not self.has_dataset(info, dataset):
            raise not_found(f"the project has no {dataset} dataset")
        labeled = errors = 0
        used: set[str] = set()
        entries = self.entries(info)[dataset]
        for cached in entries:
            if cached.line is None:
                errors += 1
                continue
            entry, issues = line_issues(loads(cached.line))
            if any(i.severity.value == "error" for i in issues):
                errors += 1
            if entry is not None and entry.is_labeled:
                labeled += 1
            used.update(cached.labels)
        return {
            "TotalEntries": len(entries),
            "LabeledEntries": labeled,
            "TotalLabels": len(used),
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
            entry, issues = line_issues(obj)
            is_labeled = entry is not None and entry.is_labeled
            if labeled is not None and is_labeled != labeled:
                continue
            erred = any(i.severity.value == "error" for i in issues)
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
        self._publish(info)
        storage, projects = self.ctx.storage, self.ctx.projects
        names = ("train.manifest", "test.manifest", "validation/manifest_summary.json")
        bodies = {name: storage.get_bytes(projects.key(info, name)) or b"" for name in names}
        digest = hashlib.sha256(b"".join(hashlib.sha256(b).digest() for b in bodies.values())).hexdigest()
        snap = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{digest[:8]}"
        if storage.exists(projects.key(info, f"snapshots/{snap}/snapshot.json")):
            raise DatasetError("ResourceAlreadyExistsException", f"snapshot {snap} exists")
        for name, body in bodies.items():
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
        storage.put_bytes(
            projects.key(info, f"snapshots/{snap}/snapshot.json"),
            dumps(record),
            content_type="application/json",
        )
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
    if not name or len(name) > C.DEFAULT_LIMITS.max_label_name or any(ord(c) < 32 for c in name):
        raise invalid(f"a label name has 1 to {C.DEFAULT_LIMITS.max_label_name} printable characters")


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
