"""Small builders of Label Studio tasks, results and manifest lines for the tests."""

from __future__ import annotations

from typing import Any

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
