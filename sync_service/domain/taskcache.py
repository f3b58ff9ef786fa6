"""What a publish needs of each task to choose its annotation without reading Label Studio again.

ANNOTATION_CREATED and ANNOTATION_UPDATED carry the whole annotation and its task. The webhook keeps the
parts a publish needs (:func:`payload_parts`, newest per annotation by ``updated_at``); the publish merges
them into the task's record (:class:`TaskRecord`: every annotation's place in the converter's choice,
the results of the best :data:`KEPT_RESULTS`, tombstones of deleted annotations) and converts the task
from the record alone (:func:`task_for_converter`). The record cannot answer, and Label Studio is read,
when it is missing or of another task that had the same id, when the counts Label Studio sent disagree
with it, when the annotation chosen is one whose result it did not keep, when predictions would make the
line, and when a payload older than the record names an annotation it does not know (it may be one that
was deleted since).

The choice is the converter's (:func:`converters.labelstudio.task_to_entry`): a ground-truth annotation
wins, then the latest ``updated_at`` (else ``created_at``), then the highest id, among annotations not
cancelled; predictions only without one.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis import Redis

from sync_service.edges.state import REBUILD_CHUNK, REBUILD_KEYS_TTL, Bulk, ProjectState

MAX_PAYLOAD_BYTES = 256 * 1024
"""Largest kept payload; a bigger annotation is read from Label Studio instead (its task is a hint)."""

KEPT_RESULTS = 2
"""Annotations per task whose results are kept: the one chosen and the next (chosen if it is deleted)."""

MAX_ANNOTATIONS = 64
"""Annotations a record knows of; beyond, the least likely to be chosen go and the record reads again."""

MAX_TOMBSTONES = 64
"""Deleted annotations a record remembers (their stale payloads are then ignored without a read)."""


def _stamp(annotation: dict[str, Any]) -> str:
    """An annotation's place in time, as the converter orders them and as payloads are ordered."""
    return str(annotation.get("updated_at") or annotation.get("created_at") or "")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def label_config_digest(xml: str) -> str:
    """The digest a label config is known by (of its text as Label Studio holds it)."""
    return hashlib.sha256(xml.encode()).hexdigest()


def payload_parts(annotation: Any, task: Any, project: Any = None) -> tuple[int, bytes] | None:
    """The annotation id and kept value (``<updated_at>\\n<json>``) of an ANNOTATION_CREATED or
    ANNOTATION_UPDATED payload, or None when it is not the shape Label Studio sends (or too big): the
    event is then a hint that its task changed. The digest of ``project``'s label config (the payload
    carries the whole project) is kept too: it vouches for the config the publish would otherwise read."""
    if type(annotation) is not dict or type(task) is not dict:
        return None
    ann_id, task_id = annotation.get("id"), task.get("id")
    data, result = task.get("data"), annotation.get("result")
    if type(ann_id) is not int or type(task_id) is not int or type(data) is not dict:
        return None
    if result is not None and type(result) is not list:
        return None
    total, predictions = _count(task.get("total_annotations")), _count(task.get("total_predictions"))
    if total is None or predictions is None:
        return None
    kept: dict[str, dict[str, Any]] = {
        "t": {
            "id": task_id,
            "data": data,
            "created_at": _text(task.get("created_at")),
            "updated_at": _text(task.get("updated_at")),
            "total_annotations": total,
            "total_predictions": predictions,
        },
        "a": {
            "id": ann_id,
            "result": result,
            "was_cancelled": bool(annotation.get("was_cancelled")),
            "ground_truth": bool(annotation.get("ground_truth")),
            "created_at": _text(annotation.get("created_at")),
            "updated_at": _text(annotation.get("updated_at")),
        },
    }
    config = project.get("label_config") if type(project) is dict else None
    if type(config) is str:
        kept["c"] = {"digest": label_config_digest(config)}
    value = _stamp(kept["a"]).encode() + b"\n" + orjson.dumps(kept)
    return (ann_id, value) if len(value) <= MAX_PAYLOAD_BYTES else None


def read_payload(value: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The task and annotation parts of a value made by :func:`payload_parts`."""
    kept = orjson.loads(value.partition(b"\n")[2])
    return kept["t"], kept["a"]


def payload_config_digest(value: bytes) -> str | None:
    """The digest of the label config the project had when the payload was sent (None: not carried)."""
    kept = orjson.loads(value.partition(b"\n")[2])
    config = kept.get("c")
    return str(config["digest"]) if isinstance(config, dict) and "digest" in config else None


@dataclass(slots=True)
class Annotation:
    """One annotation as the choice needs it; ``result`` None when not kept (never chosen while kept
    ones rank above it) or cancelled."""

    id: int
    ground_truth: bool
    cancelled: bool
    created_at: str
    updated_at: str
    result: list[Any] | None

    @property
    def stamp(self) -> str:
        """Its place in time (``updated_at``, else ``created_at``)."""
        return self.updated_at or self.created_at

    def rank(self) -> tuple[bool, str, int]:
        """Its place in the converter's choice (higher wins) among annotations not cancelled."""
        return (self.ground_truth, self.stamp, self.id)

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Annotation:
        """From an exported annotation or a payload's annotation part."""
        result = obj.get("result")
        return cls(
            id=int(obj["id"]),
            ground_truth=bool(obj.get("ground_truth")),
            cancelled=bool(obj.get("was_cancelled")),
            created_at=_text(obj.get("created_at")),
            updated_at=_text(obj.get("updated_at")),
            result=result if isinstance(result, list) else ([] if result is None else None),
        )


@dataclass(slots=True)
class TaskRecord:
    """What the choice of a task's annotation needs, as the last payload or read of it said."""

    task_id: int
    created_at: str
    updated_at: str
    data: dict[str, Any]
    predictions: int
    annotations: dict[int, Annotation] = field(default_factory=dict)
    tombstones: dict[int, str] = field(default_factory=dict)
    """Deleted annotation id -> its ``created_at`` ('' when unknown)."""
    complete: bool = True
    """Whether ``annotations`` holds every annotation not cancelled that Label Studio has."""

    def usable(self) -> list[Annotation]:
        """The annotations not cancelled, best first."""
        return sorted(
            (a for a in self.annotations.values() if not a.cancelled), key=Annotation.rank, reverse=True
        )

    def trim(self) -> None:
        """Keep the results of the best :data:`KEPT_RESULTS` only, at most :data:`MAX_ANNOTATIONS`
        annotations (cancelled ones go first) and :data:`MAX_TOMBSTONES` tombstones (the oldest go)."""
        usable = self.usable()
        for extra in usable[KEPT_RESULTS:]:
            extra.result = None
        if len(self.annotations) > MAX_ANNOTATIONS:
            cancelled = [a.id for a in self.annotations.values() if a.cancelled]
            order = cancelled + [a.id for a in reversed(usable)]
            for ann_id in order[: len(self.annotations) - MAX_ANNOTATIONS]:
                dropped = self.annotations.pop(ann_id)
                if not dropped.cancelled:
                    self.complete = False
        while len(self.tombstones) > MAX_TOMBSTONES:
            del self.tombstones[next(iter(self.tombstones))]

    def pack(self) -> bytes:
        """The Redis value of the record."""
        return orjson.dumps(
            {
                "c": self.created_at,
                "u": self.updated_at,
                "d": self.data,
                "p": self.predictions,
                "k": self.complete,
                "a": [
                    [a.id, a.ground_truth, a.cancelled, a.created_at, a.updated_at, a.result]
                    for a in self.annotations.values()
                ],
                "t": [[ann_id, created] for ann_id, created in self.tombstones.items()],
            }
        )

    @classmethod
    def unpack(cls, task_id: int, raw: bytes | str) -> TaskRecord:
        """Read a value written by :meth:`pack`."""
        obj = orjson.loads(raw)
        return cls(
            task_id=task_id,
            created_at=obj["c"],
            updated_at=obj["u"],
            data=obj["d"],
            predictions=obj["p"],
            complete=obj["k"],
            annotations={a[0]: Annotation(a[0], a[1], a[2], a[3], a[4], a[5]) for a in obj["a"]},
            tombstones={t[0]: t[1] for t in obj["t"]},
        )


def record_from_task(task: dict[str, Any], previous: TaskRecord | None = None) -> TaskRecord:
    """The record of a task as Label Studio's export gives it (whole: the record is complete). The
    tombstones of ``previous`` (the record it replaces, if of the same task) are kept, and its annotations
    that are gone become tombstones, so that their late payloads change nothing."""
    annotations = {}
    for obj in task.get("annotations") or ():
        if isinstance(obj, dict) and type(obj.get("id")) is int:
            annotation = Annotation.of(obj)
            annotations[annotation.id] = annotation
    data = task.get("data")
    record = TaskRecord(
        task_id=int(task["id"]),
        created_at=_text(task.get("created_at")),
        updated_at=_text(task.get("updated_at")),
        data=data if isinstance(data, dict) else {},
        predictions=len(task.get("predictions") or ()),
        annotations=annotations,
    )
    if previous is not None and previous.created_at == record.created_at:
        record.tombstones = {k: v for k, v in previous.tombstones.items() if k not in annotations}
        for gone in previous.annotations.values():
            if gone.id not in annotations:
                record.tombstones[gone.id] = gone.created_at
    record.trim()
    return record


def packed_record(task: dict[str, Any], previous: bytes | str | None) -> bytes:
    """``record_from_task(task, TaskRecord.unpack(id, previous)).pack()``: the packed record of an exported
    task, ``previous`` the packed record it replaces (None: none). The common case (at most
    :data:`KEPT_RESULTS` annotations, nothing to remember of the previous record) is written out without
    building the record: a rebuild packs one per task."""
    annotations = task.get("annotations") or ()
    created = _text(task.get("created_at"))
    if type(annotations) is list and len(annotations) <= KEPT_RESULTS:
        kept: dict[int, list[Any]] = {}
        for obj in annotations:
            if isinstance(obj, dict) and type(ann_id := obj.get("id")) is int:
                result = obj.get("result")
                kept[ann_id] = [
                    ann_id,
                    bool(obj.get("ground_truth")),
                    bool(obj.get("was_cancelled")),
                    _text(obj.get("created_at")),
                    _text(obj.get("updated_at")),
                    result if isinstance(result, list) else ([] if result is None else None),
                ]
        old = orjson.loads(previous) if previous is not None else None
        # The previous record leaves tombstones only when of the same task, with tombstones or with an
        # annotation gone since.
        if old is None or old["c"] != created or (not old["t"] and all(a[0] in kept for a in old["a"])):
            data = task.get("data")
            return orjson.dumps(
                {
                    "c": created,
                    "u": _text(task.get("updated_at")),
                    "d": data if isinstance(data, dict) else {},
                    "p": len(task.get("predictions") or ()),
                    "k": True,
                    "a": list(kept.values()),
                    "t": [],
                }
            )
    earlier = TaskRecord.unpack(int(task["id"]), previous) if previous is not None else None
    return record_from_task(task, earlier).pack()


def apply_payload(record: TaskRecord | None, task: dict[str, Any], annotation: dict[str, Any]) -> bool:
    """Merge one payload (:func:`read_payload`) into ``record``; False when the record cannot take it
    (missing, of another task with this id, or a payload older than it naming an annotation it does not
    know): the task must then be read from Label Studio."""
    if record is None or _text(task.get("created_at")) != record.created_at:
        return False
    incoming = Annotation.of(annotation)
    tomb = record.tombstones.get(incoming.id)
    if tomb is not None:
        if tomb and tomb == incoming.created_at:
            return True  # a late payload of a deleted annotation
        if not tomb or not incoming.created_at:
            return False  # deleted, and whether this is the same annotation cannot be told
        del record.tombstones[incoming.id]  # the id was given to a new annotation (SQLite reuses ids)
    known = record.annotations.get(incoming.id)
    if known is not None and known.stamp >= incoming.stamp:
        return True  # a duplicate, or older than what the record holds
    task_updated = _text(task.get("updated_at"))
    if known is None and task_updated < record.updated_at:
        return False  # older than the record: the annotation may have been deleted since
    record.annotations[incoming.id] = incoming
    if task_updated >= record.updated_at:
        record.updated_at = task_updated
        data = task.get("data")
        record.data = data if isinstance(data, dict) else {}
        record.predictions = int(task.get("total_predictions") or 0)
        record.complete = len(record.usable()) == int(task.get("total_annotations") or 0)
    record.trim()
    return True


def delete_annotation(record: TaskRecord, annotation_id: int) -> None:
    """An annotation of the record's task was deleted: it leaves, and a tombstone stays."""
    gone = record.annotations.pop(annotation_id, None)
    record.tombstones.pop(annotation_id, None)
    record.tombstones[annotation_id] = gone.created_at if gone is not None else ""
    record.trim()


def task_for_converter(record: TaskRecord) -> dict[str, Any] | None:
    """The task, in the export shape the converter reads, that makes the same manifest line as the task
    Label Studio holds; None when the record cannot tell (see the module docstring)."""
    if not record.complete:
        return None
    usable = record.usable()
    if usable and usable[0].result is None:
        return None
    if not usable and record.predictions:
        return None  # the line comes from predictions, which payloads do not carry
    return {
        "id": record.task_id,
        "data": record.data,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "annotations": [
            {
                "id": a.id,
                "result": a.result,
                "was_cancelled": a.cancelled,
                "ground_truth": a.ground_truth,
                "created_at": a.created_at,
                "updated_at": a.updated_at,
            }
            for a in record.annotations.values()
        ],
        "predictions": [],
    }


class TaskRecords:
    """The records of one project's tasks in Redis (``cl:p:<id>:tasks``)."""

    def __init__(self, redis: Redis, state: ProjectState) -> None:
        self.redis = redis
        self.key = state.k_tasks

    def load(self, task_ids: Iterable[int]) -> dict[int, TaskRecord]:
        """The records Redis holds of ``task_ids``."""
        ids = sorted(set(task_ids))
        if not ids:
            return {}
        found = self.redis.hmget(self.key, [str(i) for i in ids])
        return {i: TaskRecord.unpack(i, raw) for i, raw in zip(ids, found, strict=True) if raw is not None}

    def count(self) -> int:
        """How many tasks have a record."""
        return int(self.redis.hlen(self.key))

    def ids(self) -> set[int]:
        """The task ids that have a record."""
        return {int(k) for k in self.redis.hkeys(self.key)}

    def save(self, records: Iterable[TaskRecord], removed: Iterable[int] = ()) -> None:
        """Write ``records`` and drop the records of ``removed`` tasks."""
        mapping = {str(r.task_id): r.pack() for r in records}
        gone = [str(t) for t in removed]
        pipe = self.redis.pipeline(transaction=True)
        if gone:
            pipe.hdel(self.key, *gone)
        if mapping:
            pipe.hset(self.key, mapping=mapping)  # type: ignore[arg-type]
        pipe.execute()

    def recording(self, tasks: Iterable[dict[str, Any]], *, whole: bool) -> Iterator[dict[str, Any]]:
        """Pass ``tasks`` (read from Label Studio, export shape) through, writing each one's record.
        ``whole``: they are all the project's tasks, and replace every record once the stream ends."""
        target = f"{self.key}:new:{uuid.uuid4().hex}" if whole else self.key
        chunk: list[dict[str, Any]] = []

        def flush() -> None:
            ids = [str(t["id"]) for t in chunk]
            previous = self.redis.hmget(self.key, ids)
            mapping = {
                key: packed_record(task, old) for key, task, old in zip(ids, chunk, previous, strict=True)
            }
            bulk = Bulk(self.redis)
            bulk.pairs("HSET", target, mapping.items())
            if whole:
                bulk.command("EXPIRE", target, REBUILD_KEYS_TTL)  # a rebuild killed half-way: it expires
            bulk.send()
            chunk.clear()

        for task in tasks:
            if isinstance(task.get("id"), int):
                chunk.append(task)
                if len(chunk) >= REBUILD_CHUNK:
                    flush()
            yield task
        if chunk:
            flush()
        if whole:
            swap = self.redis.pipeline(transaction=True)
            swap.delete(self.key)
            if self.redis.exists(target):
                swap.rename(target, self.key)
                swap.persist(self.key)
            swap.execute()
