"""Small builders of Label Studio tasks, results, manifest lines and COCO documents for the tests."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sync_service.config import Settings

CLS = "groundtruth/image-classification"
DET = "groundtruth/object-detection"


def choices(*names: str, from_name: str = "label", rid: str = "c") -> dict[str, Any]:
    """A Choices result."""
    return {
        "id": rid,
        "from_name": from_name,
        "to_name": "image",
        "type": "choices",
        "value": {"choices": list(names)},
    }


def rect(
    label: str,
    x: float,
    y: float,
    w: float,
    h: float,
    *,
    size: tuple[int, int] | None = (640, 480),
    rotation: float = 0,
    rid: str = "r",
    from_name: str = "bbox",
) -> dict[str, Any]:
    """A RectangleLabels result, geometry in percent of the displayed image of ``size``."""
    result: dict[str, Any] = {
        "id": rid,
        "from_name": from_name,
        "to_name": "image",
        "type": "rectanglelabels",
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]},
    }
    if size is not None:
        result["original_width"], result["original_height"] = size
    return result


def task(image: str, *results: dict[str, Any], tid: int = 1, **data: Any) -> dict[str, Any]:
    """A Label Studio task with one annotation holding ``results`` (none: no annotation)."""
    out: dict[str, Any] = {"id": tid, "data": {"image": image, **data}, "predictions": []}
    out["annotations"] = (
        [
            {
                "id": tid * 10,
                "was_cancelled": False,
                "ground_truth": False,
                "updated_at": "2026-01-02T03:04:05.000006Z",
                "result": list(results),
            }
        ]
        if results
        else []
    )
    return out


def cls_attr(
    attr: str, name: str, *, confidence: float = 1, human: str = "yes", job: str | None = "job"
) -> dict[str, Any]:
    """An image-level attribute and its metadata, as a dict to merge into a line."""
    meta: dict[str, Any] = {
        "confidence": confidence,
        "class-name": name,
        "human-annotated": human,
        "creation-date": "2020-04-15T20:17:23.433061",
        "type": CLS,
    }
    if job is not None:
        meta["job-name"] = job
    return {attr: 0, f"{attr}-metadata": meta}


def det_attr(
    attr: str,
    boxes: list[tuple[str, int, int, int, int]],
    *,
    size: tuple[int, int] = (640, 480),
    human: str = "yes",
    confidences: list[float] | None = None,
) -> dict[str, Any]:
    """A bounding-box attribute: ``boxes`` are ``(label, left, top, width, height)`` in pixels."""
    names = sorted({b[0] for b in boxes})
    ids = {n: i for i, n in enumerate(names)}
    return {
        attr: {
            "image_size": [{"width": size[0], "height": size[1], "depth": 3}],
            "annotations": [
                {"class_id": ids[b[0]], "top": b[2], "left": b[1], "width": b[3], "height": b[4]}
                for b in boxes
            ],
        },
        f"{attr}-metadata": {
            "objects": [{"confidence": c} for c in (confidences or [1] * len(boxes))],
            "class-map": {str(i): n for n, i in ids.items()},
            "type": DET,
            "human-annotated": human,
            "creation-date": "2013-11-18T02:53:27",
            "job-name": "my job",
        },
    }


def line(ref: str, *attrs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A manifest line for ``ref`` with the given attributes and unknown top-level keys."""
    out: dict[str, Any] = {"source-ref": ref}
    for attr in attrs:
        out.update(attr)
    out.update(extra)
    return out


def jsonl(*objs: Any) -> str:
    """JSON Lines text: a dict is one compact line; a ``str`` is taken as the raw line (for broken ones)."""
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs)


def coco_image(
    image_id: int, file_name: str, size: tuple[int, int] = (640, 480), **extra: Any
) -> dict[str, Any]:
    """A COCO ``images`` item."""
    return {"id": image_id, "file_name": file_name, "width": size[0], "height": size[1], **extra}


def coco_box(ann_id: int, image_id: int, category_id: int, bbox: list[float], **extra: Any) -> dict[str, Any]:
    """A COCO ``annotations`` item; ``bbox`` is ``[x, y, width, height]`` in pixels."""
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


def coco(
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    categories: dict[int, str],
    **extra: Any,
) -> dict[str, Any]:
    """A COCO object detection document; ``categories`` maps id to name."""
    return {
        **extra,
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": "thing"} for i, n in categories.items()],
    }


class MemoryLabelStudio:
    """The Label Studio calls a publish and a reconcile make, served from memory: one project's label
    config, tasks (export shape) and webhooks; ``config_reads`` counts the reads of the config."""

    url = "http://127.0.0.1:9"

    def __init__(self, config: str, tasks: list[dict[str, Any]]) -> None:
        self.config = config
        self.tasks = {t["id"]: t for t in tasks}
        self.config_reads = 0
        self.hooks: list[dict[str, Any]] = []

    def project(self, project_id: int, *, fields: Sequence[str] = ()) -> dict[str, Any]:
        self.config_reads += 1
        return {"id": project_id, "label_config": self.config}

    def export_tasks(
        self, project_id: int, task_ids: Iterable[int] | None = None
    ) -> Iterator[dict[str, Any]]:
        wanted = sorted(self.tasks) if task_ids is None else sorted(set(task_ids) & set(self.tasks))
        return (copy.deepcopy(self.tasks[i]) for i in wanted)

    def predictions(self, **_: Any) -> Iterator[dict[str, Any]]:
        return iter(())

    def tasks_updated_since(self, project_id: int, since: datetime) -> dict[int, str]:
        """Id -> ``updated_at`` of the tasks updated after ``since`` (tasks without one count as old)."""
        return {
            i: t["updated_at"]
            for i, t in sorted(self.tasks.items())
            if t.get("updated_at") and datetime.fromisoformat(t["updated_at"]) > since
        }

    def project_exists(self, project_id: int) -> bool:
        return True

    def count_tasks(self, project_id: int, *, above: int | None = None, below: int | None = None) -> int:
        return sum(1 for i in self.tasks if (above is None or i > above) and (below is None or i < below))

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        return [dict(h) for h in self.hooks]

    def create_webhook(self, project_id: int, **fields: Any) -> dict[str, Any]:
        self.hooks.append({"id": len(self.hooks) + 1, "project": project_id, **fields})
        return self.hooks[-1]


def service_settings(**overrides: Any) -> Settings:
    """The service's settings for a test: nothing answers at the Label Studio and S3 URLs and Redis is
    unused unless ``overrides`` say otherwise; a queue of the test's own."""
    fields: dict[str, Any] = {
        "ls_url": "http://127.0.0.1:9",
        "ls_api_key": "unused",
        "redis_url": "redis://unused",
        "s3_endpoint": "http://127.0.0.1:9",
        "s3_region": "us-east-1",
        "bucket": "bucket",
        "prefix": "customlabels",
        "webhook_secret": "a-webhook-secret-of-32-characters",
        "queue": f"test-{uuid.uuid4().hex}",
    }
    return Settings(**{**fields, **overrides})


# What a Label Studio 1.23.2 export holds beside the keys the converters read (19 keys a task, 21 an
# annotation, in its order, with its value types: read from an export of the real server).
REAL_TASK_KEYS: dict[str, Any] = {
    "drafts": [],
    "meta": {},
    "created_at": "2026-01-01T10:00:00.123456Z",
    "updated_at": "2026-01-02T11:00:00.654321Z",
    "allow_skip": True,
    "inner_id": 7,
    "total_annotations": 1,
    "cancelled_annotations": 0,
    "total_predictions": 0,
    "comment_count": 0,
    "unresolved_comment_count": 0,
    "last_comment_updated_at": None,
    "project": 3,
    "updated_by": 1,
    "comment_authors": [],
}
REAL_ANNOTATION_KEYS: dict[str, Any] = {
    "completed_by": 1,
    "created_at": "2026-01-01T10:00:00.000001Z",
    "draft_created_at": None,
    "lead_time": 12.5,
    "prediction": {},
    "result_count": 1,
    "unique_id": "9b1c0f0e-6a0e-4b8e-9c7a-1d2e3f4a5b6c",
    "import_id": None,
    "last_action": None,
    "bulk_created": False,
    "task": 1,
    "project": 3,
    "updated_by": 1,
    "parent_prediction": None,
    "parent_annotation": None,
    "last_created_by": None,
}


def as_exported(
    task: dict[str, Any], *, from_prediction: bool = False, draft: bool = False
) -> dict[str, Any]:
    """``task`` as Label Studio's export writes it: its keys in the export's order ("id", "annotations",
    "drafts", "predictions", "data", ...) with every key of :data:`REAL_TASK_KEYS` and, on each
    annotation, of :data:`REAL_ANNOTATION_KEYS`. ``from_prediction``: the annotations were made from a
    model's prediction, which they carry (with its result, and the keys that look like a task's);
    ``draft``: a draft with its own result sits beside them. Keys ``task`` has keep their values."""
    annotations = []
    for annotation in task.get("annotations", []):
        if not isinstance(annotation, dict):
            annotations.append(annotation)
            continue
        made = {"id": annotation.get("id"), **copy.deepcopy(REAL_ANNOTATION_KEYS), **annotation}
        if from_prediction:
            made["prediction"] = {
                "id": 5,
                "result": json.loads(json.dumps(annotation.get("result", []))),
                "model_version": "m1",
                "created_ago": "3\u00a0weeks",
                "score": 0.5,
                "cluster": None,
                "neighbors": None,
                "mislabeling": 0.0,
                "created_at": "2026-01-01T09:00:00.000001Z",
                "updated_at": "2026-01-01T09:00:00.000001Z",
                "model": None,
                "model_run": None,
                "task": task.get("id"),
                "project": 3,
            }
            made["parent_prediction"] = 5
        annotations.append(made)
    out: dict[str, Any] = {"id": task.get("id"), "annotations": annotations}
    out["drafts"] = (
        [
            {
                "id": 2,
                "user": "a@example.com",
                "created_username": "a@example.com, 1",
                "created_ago": "0\u00a0minutes",
                "result": annotations[0]["result"]
                if annotations and isinstance(annotations[0], dict)
                else [],
                "lead_time": 3.0,
                "was_postponed": False,
                "import_id": None,
                "created_at": "2026-01-01T10:00:00.000001Z",
                "updated_at": "2026-01-01T10:00:00.000001Z",
                "task": task.get("id"),
                "annotation": None,
            }
        ]
        if draft
        else []
    )
    out["predictions"] = task.get("predictions", [])
    if "data" in task:
        out["data"] = task["data"]
    for key, value in REAL_TASK_KEYS.items():
        out.setdefault(key, copy.deepcopy(value))
    for key, value in task.items():
        out.setdefault(key, value)
    return out
