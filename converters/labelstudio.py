"""Label Studio tasks <-> :class:`~converters.model.Entry`.

Task shape (what we import into Label Studio and read back from its JSON export or API)::

    {"data": {"image": "s3://bucket/key", "dataset": "train",
              "customlabels": {"line": {...the manifest line the task came from...}}},
     "annotations": [{"result": [...], ...}], "predictions": [...]}

Results hold the labels and boxes as Label Studio knows them: boxes in *percent of the displayed image*
(EXIF orientation applied). ``data.customlabels.line`` carries the provenance Label Studio has no place for
(attribute names, ``job-name``, ``creation-date``, confidences, unknown keys); a label or box still as it
was read reuses it exactly, so an untouched entry round-trips to the identical manifest line. Box region
ids made here are ``g<group>b<box>``, which Label Studio keeps through edits.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from converters.errors import Issue, Severity, TaskError
from converters.geometry import (
    Rect,
    clamp_rect,
    displayed_to_stored_rect,
    enclosing_rect,
    pixels_to_percent,
    round_half_up,
    stored_to_displayed_rect,
)
from converters.imagemeta import ImageMeta
from converters.labelconfig import (
    CHOICES,
    DEFAULT_BOXES_NAME,
    DEFAULT_CHOICES_NAME,
    DEFAULT_IMAGE_KEY,
    DEFAULT_IMAGE_NAME,
    RECTANGLE_LABELS,
    LabelConfig,
)
from converters.manifest import entry_to_line, parse_line, valid_source_ref
from converters.model import Box, BoxGroup, Entry, ImageLabel, ImageSize, JsonDict, Provenance

PROVENANCE_KEY = "customlabels"
DATASET_KEY = "dataset"
DATASETS = ("train", "test")
DEFAULT_BOX_ATTRIBUTE = "bounding-box"
DEFAULT_LABEL_ATTRIBUTE = "label"

WARNING_ROTATED_BOX = "WARNING_ROTATED_BOX"
WARNING_BOX_CLIPPED = "WARNING_BOX_CLIPPED"
WARNING_EMPTY_RECTANGLE = "WARNING_EMPTY_RECTANGLE"
WARNING_IGNORED_RESULT = "WARNING_IGNORED_RESULT"
WARNING_UNKNOWN_LABEL = "WARNING_UNKNOWN_LABEL"
_HALF_PIXEL = 0.5
_NUMBERS = (int, float)


@dataclass(slots=True)
class ReadOptions:
    """How to read Label Studio tasks into entries.

    ``label_config`` decides which control is which (else result types do); ``image_meta`` gives stored
    size and EXIF orientation per ``source-ref``; ``job_name`` names new labels' job; ``s3_prefix`` maps an
    image URL that is not ``s3://`` to the prefix plus the URL's path; ``now`` is the ``creation-date`` of a
    label whose annotation has no timestamp.
    """

    label_config: LabelConfig | None = None
    image_meta: Mapping[str, ImageMeta] = field(default_factory=dict)
    job_name: str | None = None
    s3_prefix: str | None = None
    now: str = "1970-01-01T00:00:00.000000"


@dataclass(slots=True)
class WriteOptions:
    """How to write entries as tasks: control names and per-image facts for the percent geometry."""

    image_meta: Mapping[str, ImageMeta] = field(default_factory=dict)
    image_name: str = DEFAULT_IMAGE_NAME
    image_key: str = DEFAULT_IMAGE_KEY
    choices_name: str = DEFAULT_CHOICES_NAME
    boxes_name: str = DEFAULT_BOXES_NAME
    dataset: str | None = None


# ------------------------------------------------------------------------------------------- reading


def image_url_to_source_ref(url: Any, s3_prefix: str | None, *, field_name: str = "data.image") -> str:
    """The ``s3://`` reference of a task's image URL; raise :class:`TaskError` when there is none.

    Label Studio's resolver URLs (``...?fileuri=<base64 of s3://...>``) are decoded; other URLs need
    ``s3_prefix`` and map to the prefix plus the URL's path (for local-files URLs, the ``d`` parameter).
    """
    if not isinstance(url, str) or not url.strip():
        raise TaskError("the task has no image URL", field=field_name)
    if url.startswith("s3://"):
        if not valid_source_ref(url):
            raise TaskError(f"not an s3://bucket/key reference: {url!r}", field=field_name)
        return url
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    if "fileuri" in query:
        try:
            decoded = base64.b64decode(query["fileuri"][0] + "==", validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise TaskError(f"undecodable fileuri in {url!r}", field=field_name) from exc
        if valid_source_ref(decoded):
            return decoded
    if not s3_prefix:
        raise TaskError(
            f"image URL {url!r} is not s3://; pass --s3-prefix s3://bucket/prefix/ to map it",
            field=field_name,
        )
    path = query["d"][0] if "d" in query else unquote(parsed.path)
    path = path.lstrip("/")
    if not path:
        raise TaskError(f"image URL {url!r} has no path to map", field=field_name)
    return s3_prefix.rstrip("/") + "/" + path


def _pick(task: JsonDict) -> tuple[str, int, JsonDict] | None:
    """The annotation (or, lacking one, prediction) the manifest is made from: kind, index, object.

    A ground-truth annotation wins; then the most recently updated one that was not cancelled. Predictions
    are used only when a task has no usable annotation.
    """
    annotations = task.get("annotations") or []
    candidates = [
        (bool(a.get("ground_truth")), str(a.get("updated_at") or a.get("created_at") or ""), _int_id(a), i, a)
        for i, a in enumerate(annotations)
        if isinstance(a, dict) and not a.get("was_cancelled")
    ]
    if candidates:
        best = candidates[0] if len(candidates) == 1 else max(candidates, key=lambda c: c[:4])
        return "annotations", best[3], best[4]
    predictions = task.get("predictions") or []
    preds = [
        (str(p.get("updated_at") or p.get("created_at") or ""), _int_id(p), i, p)
        for i, p in enumerate(predictions)
        if isinstance(p, dict)
    ]
    if preds:
        best_p = max(preds, key=lambda c: c[:3])
        return "predictions", best_p[2], best_p[3]
    return None


def _int_id(obj: JsonDict) -> int:
    value = obj.get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _utc(stamp: Any, fallback: str) -> str:
    if not isinstance(stamp, str) or not stamp:
        return fallback
    for suffix in ("Z", "+00:00"):
        if stamp.endswith(suffix):
            return stamp[: -len(suffix)]
    return stamp


@dataclass(slots=True)
class _Region:
    region_id: str | None
    label: str
    rect: Rect  # stored pixels, floats
    score: float | None


def task_to_entry(task: Any, options: ReadOptions, issues: list[Issue] | None = None) -> Entry:
    """Read one Label Studio task into an :class:`Entry` (geometry in pixels of the stored image).

    Raises :class:`TaskError` naming the field for a task that cannot be converted; appends warnings
    (rotated or clipped boxes, ignored results) to ``issues``.
    """
    if issues is None:
        issues = []
    if not isinstance(task, dict):
        raise TaskError("a task must be a JSON object")
    data = task.get("data")
    if not isinstance(data, dict):
        raise TaskError("the task has no data object", field="data")
    image_key = options.label_config.image_key if options.label_config else DEFAULT_IMAGE_KEY
    source_ref = image_url_to_source_ref(
        data.get(image_key), options.s3_prefix, field_name=f"data.{image_key}"
    )
    dataset = data.get(DATASET_KEY)
    provenance = _provenance_entry(data)
    if provenance is not None and provenance.source_ref != source_ref:
        provenance = None  # the task now points at another image: its old labels say nothing of this one
    entry = Entry(
        source_ref=source_ref,
        dataset=dataset if dataset in DATASETS else None,
        extra=dict(provenance.extra) if provenance else {},
    )
    # With no annotation, results are empty: labels go, and only groups that were empty stay empty.
    kind, index, chosen = _pick(task) or ("annotations", 0, {})
    human = kind == "annotations"
    date = _utc(chosen.get("updated_at") or chosen.get("created_at"), options.now)
    default_score = chosen.get("score") if not human else None
    results = chosen.get("result")
    if results is None:
        results = []
    if not isinstance(results, list):
        raise TaskError("must be a list", field=f"{kind}[{index}].result")

    names: dict[str, float | None] = {}
    regions: list[_Region] = []
    meta = options.image_meta.get(source_ref)
    for j, result in enumerate(results):
        where = f"{kind}[{index}].result[{j}]"
        if not isinstance(result, dict):
            raise TaskError("a result must be a JSON object", field=where)
        control = _control_kind(result, options.label_config, where, issues)
        if control == CHOICES:
            score = _score(result, default_score)
            allowed = _allowed(result, options.label_config)
            for name in _string_list(result, "choices", where):
                if allowed is None or name in allowed:
                    names.setdefault(name, score)
                else:
                    issues.append(_unknown_label(name, where))
        elif control == RECTANGLE_LABELS:
            found = _regions(result, where, meta, provenance, _score(result, default_score), issues)
            allowed = _allowed(result, options.label_config)
            if allowed is not None and any(r.label not in allowed for r in found):
                issues.extend(_unknown_label(r.label, where) for r in found if r.label not in allowed)
                found = [r for r in found if r.label in allowed]
            regions.extend(found)

    entry.labels = _merge_labels(names, provenance, human, date, options.job_name)
    entry.box_groups = _merge_boxes(regions, provenance, human, date, options.job_name, meta, results)
    return entry


def _allowed(result: JsonDict, config: LabelConfig | None) -> frozenset[str] | None:
    return config.allowed_labels(str(result.get("from_name"))) if config is not None else None


def _unknown_label(name: str, where: str) -> Issue:
    return Issue(
        WARNING_UNKNOWN_LABEL,
        f"label {name!r} is not in the label config (removed or renamed there); dropped",
        Severity.WARNING,
        field=where,
    )


def _score(result: JsonDict, default: Any) -> float | None:
    value = result.get("score", default)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _control_kind(
    result: JsonDict, config: LabelConfig | None, where: str, issues: list[Issue]
) -> str | None:
    kind = config.kind_of(str(result.get("from_name"))) if config else None
    if kind is None:
        kind = result.get("type")
        if not isinstance(kind, str):
            raise TaskError("the result has no type", field=f"{where}.type")
        kind = kind.lower()
        if kind not in (CHOICES, RECTANGLE_LABELS):
            raise TaskError(
                f"unsupported result type {kind!r} (only choices and rectanglelabels carry labels; "
                "pass --label-config so results of other controls are known and skipped)",
                field=f"{where}.type",
            )
        return kind
    if kind not in (CHOICES, RECTANGLE_LABELS):
        issues.append(
            Issue(
                WARNING_IGNORED_RESULT,
                f"result of control {result.get('from_name')!r} ({kind}) carries no Rekognition label; ignored",
                Severity.WARNING,
                field=where,
            )
        )
        return None
    return kind


def _string_list(result: JsonDict, key: str, where: str) -> list[str]:
    value = result.get("value")
    items = value.get(key) if isinstance(value, dict) else None
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise TaskError("must be a list of label names", field=f"{where}.value.{key}")
    return items


def _number(value: JsonDict, key: str, where: str) -> float:
    item = value.get(key)
    if not isinstance(item, int | float) or isinstance(item, bool):
        raise TaskError("must be a number", field=f"{where}.value.{key}")
    return float(item)


def _sizes(
    result: JsonDict, where: str, meta: ImageMeta | None, provenance: Entry | None
) -> tuple[tuple[int, int], tuple[int, int], int]:
    """Displayed size, stored size and EXIF orientation for a box result."""
    if meta is not None:
        return meta.displayed, (meta.width, meta.height), meta.orientation
    width, height = result.get("original_width"), result.get("original_height")
    if isinstance(width, int | float) and isinstance(height, int | float) and width > 0 and height > 0:
        size = (int(width), int(height))
        return size, size, 1
    if provenance is not None and provenance.box_groups:
        stored = provenance.box_groups[0].image_size
        return (stored.width, stored.height), (stored.width, stored.height), 1
    raise TaskError(
        "the box has no image size: the result lacks original_width/original_height and no --image-meta "
        "line names this image",
        field=f"{where}.original_width",
    )


def _regions(
    result: JsonDict,
    where: str,
    meta: ImageMeta | None,
    provenance: Entry | None,
    score: float | None,
    issues: list[Issue],
) -> list[_Region]:
    value = result.get("value")
    if not isinstance(value, dict):
        raise TaskError("must be an object", field=f"{where}.value")
    labels = _string_list(result, "rectanglelabels", where)
    if not labels:
        issues.append(
            Issue(
                WARNING_EMPTY_RECTANGLE,
                "a rectangle without a label is skipped",
                Severity.WARNING,
                field=where,
            )
        )
        return []
    (dw, dh), (sw, sh), orientation = _sizes(result, where, meta, provenance)
    x, y, w, h = value.get("x"), value.get("y"), value.get("width"), value.get("height")
    if not (type(x) in _NUMBERS and type(y) in _NUMBERS and type(w) in _NUMBERS and type(h) in _NUMBERS):
        for key in ("x", "y", "width", "height"):
            _number(value, key, where)
    rect = Rect(x * dw / 100.0, y * dh / 100.0, w * dw / 100.0, h * dh / 100.0)  # type: ignore[operator]
    rotation = value.get("rotation") or 0
    if not isinstance(rotation, int | float):
        raise TaskError("must be a number", field=f"{where}.value.rotation")
    if rotation % 360:
        rect = enclosing_rect(rect, float(rotation))
        issues.append(
            Issue(
                WARNING_ROTATED_BOX,
                f"rectangle rotated {rotation:g} degrees: written as the axis-aligned box that encloses it",
                Severity.WARNING,
                field=f"{where}.value.rotation",
            )
        )
    left, top = rect.left, rect.top
    inside = left >= 0 and top >= 0 and left + rect.width <= dw and top + rect.height <= dh
    clamped = rect if inside else clamp_rect(rect, dw, dh)
    if not inside and _moved(clamped, rect):
        issues.append(
            Issue(
                WARNING_BOX_CLIPPED,
                "box reaches outside the image; cut to the frame",
                Severity.WARNING,
                field=where,
            )
        )
    stored = clamped if orientation == 1 else displayed_to_stored_rect(clamped, sw, sh, orientation)
    region_id = result.get("id")
    return [
        _Region(region_id if isinstance(region_id, str) else None, label, stored, score) for label in labels
    ]


def _moved(a: Rect, b: Rect) -> bool:
    return any(abs(x - y) > 1e-9 for x, y in zip(_edges(a), _edges(b), strict=True))


def _edges(r: Rect) -> tuple[float, float, float, float]:
    return r.left, r.top, r.right, r.bottom


def _provenance_entry(data: JsonDict) -> Entry | None:
    block = data.get(PROVENANCE_KEY)
    line = block.get("line") if isinstance(block, dict) else None
    if not isinstance(line, dict):
        return None
    return parse_line(line).entry


def _merge_labels(
    names: dict[str, float | None], provenance: Entry | None, human: bool, date: str, job_name: str | None
) -> list[ImageLabel]:
    known = {label.name: label for label in provenance.labels} if provenance else {}
    out = []
    for name, score in names.items():
        if name in known:
            out.append(known[name])
        else:
            out.append(
                ImageLabel(
                    name=name,
                    confidence=1.0 if score is None else score,
                    provenance=Provenance(human_annotated=human, creation_date=date, job_name=job_name),
                )
            )
    return out


def _close(box: Box, rect: Rect) -> bool:
    return all(
        abs(a - b) <= _HALF_PIXEL
        for a, b in zip((box.left, box.top, box.width, box.height), _edges_size(rect), strict=True)
    )


def _edges_size(rect: Rect) -> tuple[float, float, float, float]:
    return rect.left, rect.top, rect.width, rect.height


def pixel_box(label: str, rect: Rect, width: int, height: int) -> Box:
    """A :class:`Box` of integer pixels from a float rectangle in a ``width`` x ``height`` image.

    Each *edge* is rounded half up on its own and kept inside the frame, so every corner of the box is
    within half a pixel of where it was, whichever way the image is oriented when shown.
    """
    # min(max(v, low), high) written out (the same picks, ties included); the hot path of every reader.
    x, y = rect.left, rect.top
    left = round_half_up(x)
    left = 0 if left < 0 else left
    left = width if width < left else left
    top = round_half_up(y)
    top = 0 if top < 0 else top
    top = height if height < top else top
    right = round_half_up(x + rect.width)  # rect.right
    right = left if left > right else right
    right = width if width < right else right
    bottom = round_half_up(y + rect.height)  # rect.bottom
    bottom = top if top > bottom else bottom
    bottom = height if height < bottom else bottom
    return Box(label, left, top, right - left, bottom - top)


def _merge_boxes(
    regions: list[_Region],
    provenance: Entry | None,
    human: bool,
    date: str,
    job_name: str | None,
    meta: ImageMeta | None,
    results: list[Any],
) -> list[BoxGroup]:
    old_groups = provenance.box_groups if provenance else []
    old_boxes = {
        f"g{g}b{i}": (g, box) for g, group in enumerate(old_groups) for i, box in enumerate(group.boxes)
    }
    groups = [
        replace(group, boxes=[], class_map=dict(group.class_map), changed=False) for group in old_groups
    ]
    fresh: list[Box] = []
    new_size: ImageSize | None = None
    for region in regions:
        hit = old_boxes.get(region.region_id) if region.region_id else None
        if hit is not None and hit[1].label == region.label and _close(hit[1], region.rect):
            groups[hit[0]].boxes.append(hit[1])
            continue
        if hit is not None:
            size = groups[hit[0]].image_size
        else:
            new_size = size = new_size or _stored_image_size(meta, results, old_groups)
        box = pixel_box(region.label, region.rect, size.width, size.height)
        box.confidence = 1.0 if region.score is None else region.score
        box.region_id = region.region_id
        if hit is not None:
            groups[hit[0]].boxes.append(box)
            groups[hit[0]].changed = True
        else:
            fresh.append(box)
    for g, group in enumerate(groups):
        if [id(b) for b in group.boxes] != [id(b) for b in old_groups[g].boxes]:
            group.changed = True
    if fresh:
        if groups:
            groups[0].boxes.extend(fresh)
            groups[0].changed = True
        else:
            size = new_size or _stored_image_size(meta, results, old_groups)
            groups.append(
                BoxGroup(attribute=DEFAULT_BOX_ATTRIBUTE, image_size=size, boxes=fresh, changed=True)
            )
    out = []
    for g, group in enumerate(groups):
        if group.changed:
            group.provenance = Provenance(
                human_annotated=human,
                creation_date=date,
                job_name=group.provenance.job_name if g < len(old_groups) else job_name,
                extra=dict(group.provenance.extra),
            )
            if not group.boxes:
                continue  # every box of the group was deleted: the line no longer claims this attribute
        out.append(group)
    return out


def _stored_image_size(meta: ImageMeta | None, results: list[Any], old_groups: list[BoxGroup]) -> ImageSize:
    if meta is not None:
        return ImageSize(meta.width, meta.height, old_groups[0].image_size.depth if old_groups else 3)
    if old_groups:
        return old_groups[0].image_size
    for result in results:
        if isinstance(result, dict) and isinstance(result.get("original_width"), int | float):
            return ImageSize(int(result["original_width"]), int(result["original_height"]), 3)
    raise TaskError("no image size for the boxes")  # unreachable: _sizes raised first


# ------------------------------------------------------------------------------------------- writing


def entry_to_task(
    entry: Entry, options: WriteOptions | None = None, *, line: JsonDict | None = None
) -> JsonDict:
    """A Label Studio task for ``entry``: boxes in percent of the displayed image.

    ``line`` is the manifest line the entry was read from, when it is already in Rekognition's form (it
    is kept as the task's provenance as is, saving a rebuild).

    Results go into an annotation when any label or box group was made by a person
    (``human-annotated: yes``), else into a prediction.
    """
    opts = options or WriteOptions()
    data: JsonDict = {opts.image_key: entry.source_ref}
    dataset = entry.dataset or opts.dataset
    if dataset:
        data[DATASET_KEY] = dataset
    data[PROVENANCE_KEY] = {"line": line if line is not None else entry_to_line(entry)}
    task: JsonDict = {"data": data}
    results: list[JsonDict] = []
    human = any(label.provenance.human_annotated for label in entry.labels) or any(
        group.provenance.human_annotated for group in entry.box_groups
    )
    if entry.labels:
        choices: JsonDict = {
            "id": "choices",
            "from_name": opts.choices_name,
            "to_name": opts.image_name,
            "type": CHOICES,
            "value": {"choices": list(dict.fromkeys(label.name for label in entry.labels))},
        }
        if not human:
            choices["score"] = min(label.confidence for label in entry.labels)
        results.append(choices)
    meta = opts.image_meta.get(entry.source_ref)
    for g, group in enumerate(entry.box_groups):
        if meta is not None:
            stored_w, stored_h, orientation = meta.width, meta.height, meta.orientation
        else:
            stored_w, stored_h, orientation = group.image_size.width, group.image_size.height, 1
        if meta is not None:
            disp_w, disp_h = meta.displayed
        else:
            disp_w, disp_h = stored_w, stored_h
        for i, box in enumerate(group.boxes):
            shown = stored_to_displayed_rect(
                Rect(box.left, box.top, box.width, box.height), stored_w, stored_h, orientation
            )
            pct = pixels_to_percent(shown, disp_w, disp_h)
            region: JsonDict = {
                "id": box.region_id or f"g{g}b{i}",
                "from_name": opts.boxes_name,
                "to_name": opts.image_name,
                "type": RECTANGLE_LABELS,
                "original_width": disp_w,
                "original_height": disp_h,
                "image_rotation": 0,
                "value": {
                    "x": pct.left,
                    "y": pct.top,
                    "width": pct.width,
                    "height": pct.height,
                    "rotation": 0,
                    "rectanglelabels": [box.label],
                },
            }
            if not human:
                region["score"] = box.confidence
            results.append(region)
    if results:
        if human:
            task["annotations"] = [{"result": results, "was_cancelled": False, "ground_truth": False}]
        else:
            confidences = [label.confidence for label in entry.labels] + [b.confidence for b in entry.boxes]
            model = next(
                (
                    p.job_name
                    for p in [
                        *(lb.provenance for lb in entry.labels),
                        *(g.provenance for g in entry.box_groups),
                    ]
                    if p.job_name
                ),
                "manifest",
            )
            task["predictions"] = [
                {"result": results, "score": sum(confidences) / len(confidences), "model_version": model}
            ]
    return task


def labels_in(entry: Entry) -> tuple[list[str], list[str]]:
    """The image-level label names and box label names of ``entry``."""
    return [label.name for label in entry.labels], [box.label for box in entry.boxes]


def rename_labels(results: Any, renames: Mapping[str, Mapping[str, str]]) -> list[Any] | None:
    """``results`` of an annotation with labels renamed per control (``{from_name: {old: new}}``).

    Returns the new results, or None when nothing in them changes.
    """
    if not isinstance(results, list) or not renames:
        return None
    out: list[Any] = []
    changed = False
    for result in results:
        table = renames.get(str(result.get("from_name"))) if isinstance(result, dict) else None
        value = result.get("value") if table else None
        if not table or not isinstance(value, dict):
            out.append(result)
            continue
        new_value = dict(value)
        for key in ("choices", "rectanglelabels", "labels"):
            names = value.get(key)
            if isinstance(names, list) and any(n in table for n in names):
                new_value[key] = [table.get(n, n) if isinstance(n, str) else n for n in names]
                changed = True
        out.append({**result, "value": new_value})
    return out if changed else None
