"""Shortcuts for the common manifest line, exact to the general readers and writers.

Almost every line of a Ground Truth manifest is well formed: ``source-ref`` and label attributes of the
image-classification and object-detection types, nothing else, nothing wrong. For such a line,
:func:`line_task` returns what :func:`~converters.manifest.parse_line` followed by
:func:`~converters.labelstudio.entry_to_task` (with the line as its own provenance) gives, and
:func:`line_check` what :func:`~converters.validation.check_line` gives, without building the entry.
Likewise :func:`task_line` returns what :func:`~converters.labelstudio.task_to_entry` followed by
:func:`~converters.manifest.entry_to_line` gives for the common Label Studio task: an ``s3://`` image
with no provenance yet, choices and upright rectangles inside the image, nothing to warn of.

Each returns None for any line or task outside that shape (another attribute type, an unknown key,
anything the general readers would report or change, image facts to apply), and the caller takes the
general path: the shortcuts decide nothing of their own. They take decoded JSON (dicts, lists, strings,
numbers), as the readers get it. ``tests/converters/test_fastlines.py`` pins the equality on
generated lines; a change to the general readers must keep it (or make these return None).
"""

from __future__ import annotations

from collections.abc import Mapping
from math import floor
from typing import Any

from converters import codes
from converters.geometry import Rect, pixels_to_percent, stored_to_displayed_rect
from converters.imagemeta import ImageMeta
from converters.labelconfig import CHOICES, DEFAULT_IMAGE_KEY, RECTANGLE_LABELS, LabelConfig
from converters.labelstudio import (
    DATASET_KEY,
    DEFAULT_BOX_ATTRIBUTE,
    DEFAULT_LABEL_ATTRIBUTE,
    PROVENANCE_KEY,
    ReadOptions,
    WriteOptions,
    _pick,
)
from converters.manifest import META_SUFFIX, _free_attribute
from converters.model import JsonDict
from converters.validation import MAX_DEPTH, LineCheck

_NUMBERS = (int, float)
_CUT = -len(META_SUFFIX)
_CLASSIFICATION, _DETECTION = codes.TYPE_CLASSIFICATION, codes.TYPE_DETECTION

# name, confidence, human-annotated, job-name
_Label = tuple[str, Any, bool, str | None]
# name, left, top, width, height, confidence
_Box = tuple[str, Any, Any, Any, Any, Any]
# width, height, boxes, human-annotated, job-name
_Group = tuple[int, int, list[_Box], bool, str | None]


def _read(obj: Any, max_label_name: int) -> tuple[str, list[_Label], list[_Group]] | None:
    """The source-ref, labels and box groups of a line :func:`parse_line` reads without an issue, as
    entry and unchanged; None for any other line."""
    if type(obj) is not dict:
        return None
    ref = obj.get("source-ref")
    if type(ref) is not str or not ref.startswith("s3://"):
        return None
    slash = ref.find("/", 5)  # as valid_source_ref: a bucket, then a key
    if slash <= 5 or slash == len(ref) - 1:
        return None
    labels: list[_Label] = []
    groups: list[_Group] = []
    for attr, value in obj.items():
        if attr == "source-ref":
            continue
        if attr.endswith(META_SUFFIX):
            if attr[:_CUT] in obj:
                continue  # read with its attribute
            return None  # an orphan (ERROR_NO_LABEL_ATTRIBUTES), or Rekognition's cl-metadata
        meta = obj.get(attr + META_SUFFIX)
        if type(meta) is not dict:
            # An attribute without its metadata (ERROR_NO_LABEL_ATTRIBUTES), an unknown key kept
            # aside, or metadata that is not an object: the general reader decides which.
            return None
        human = meta.get("human-annotated")
        job = meta.get("job-name")
        if (
            type(human) is not str
            or human not in ("yes", "no")
            or type(meta.get("creation-date")) is not str
            or (type(job) is not str if job is not None else "job-name" in meta)
        ):
            return None
        kind = meta.get("type")
        if kind == _CLASSIFICATION:
            name = meta.get("class-name")
            confidence: Any = meta.get("confidence")
            if (
                type(value) is not int
                or type(name) is not str
                or not name
                or len(name) > max_label_name
                or type(confidence) not in _NUMBERS
                or not 0 <= confidence <= 1
            ):
                return None
            labels.append((name, confidence, human == "yes", job))
        elif kind == _DETECTION:
            group = _read_boxes(value, meta, max_label_name)
            if group is None:
                return None
            groups.append((group[0], group[1], group[2], human == "yes", job))
        else:
            return None
    if not labels and not groups:
        return None
    return ref, labels, groups


def _read_boxes(value: Any, meta: JsonDict, max_label_name: int) -> tuple[int, int, list[_Box]] | None:
    if type(value) is not dict:
        return None
    sizes = value.get("image_size")
    if type(sizes) is not list or len(sizes) != 1:
        return None
    size = sizes[0]
    if type(size) is not dict:
        return None
    width, height = size.get("width"), size.get("height")
    if type(width) is not int or type(height) is not int or type(size.get("depth")) is not int:
        return None
    annotations = value.get("annotations")
    objects = meta.get("objects")
    class_map = meta.get("class-map")
    if (
        type(annotations) is not list
        or type(objects) is not list
        or len(objects) < len(annotations)
        or type(class_map) is not dict
    ):
        return None
    for key, name in class_map.items():
        if type(key) is not str or type(name) is not str or len(name) > max_label_name:
            return None
    boxes: list[_Box] = []
    for i, ann in enumerate(annotations):
        if type(ann) is not dict:
            return None
        class_id, top, left = ann.get("class_id"), ann.get("top"), ann.get("left")
        box_width, box_height = ann.get("width"), ann.get("height")
        found = objects[i]
        confidence = found.get("confidence") if type(found) is dict else None
        if (
            type(class_id) is not int
            or type(top) not in _NUMBERS
            or type(left) not in _NUMBERS
            or type(box_width) not in _NUMBERS
            or type(box_height) not in _NUMBERS
            or type(confidence) not in _NUMBERS
        ):
            return None
        name = class_map.get(str(class_id))
        if name is None:
            return None
        boxes.append((name, left, top, box_width, box_height, confidence or 0))
    return width, height, boxes


def line_task(
    obj: Any, options: WriteOptions, *, max_label_name: int = codes.DEFAULT_LIMITS.max_label_name
) -> tuple[JsonDict, list[str], list[str]] | None:
    """``entry_to_task(parse_line(obj).entry, options, line=obj)`` with the entry's label names and box
    labels (in order, repeats kept), for a line :func:`parse_line` reads without an issue and as is;
    None for any other line."""
    read = _read(obj, max_label_name)
    if read is None:
        return None
    ref, labels, groups = read
    boxes_name, image_name = options.boxes_name, options.image_name
    data: JsonDict = {options.image_key: ref}
    if options.dataset:
        data[DATASET_KEY] = options.dataset
    data[PROVENANCE_KEY] = {"line": obj}
    task: JsonDict = {"data": data}
    results: list[JsonDict] = []
    human = any([label[2] for label in labels]) or any([group[3] for group in groups])
    names = [label[0] for label in labels]
    if labels:
        choices: JsonDict = {
            "id": "choices",
            "from_name": options.choices_name,
            "to_name": image_name,
            "type": CHOICES,
            "value": {"choices": list(dict.fromkeys(names))},
        }
        if not human:
            choices["score"] = min(label[1] for label in labels)
        results.append(choices)
    meta: ImageMeta | None = options.image_meta.get(ref)
    box_labels: list[str] = []
    for g, (width, height, boxes, _, _) in enumerate(groups):
        if meta is not None:
            stored_w, stored_h, orientation = meta.width, meta.height, meta.orientation
            disp_w, disp_h = meta.displayed
        else:
            stored_w, stored_h, orientation = width, height, 1
            disp_w, disp_h = width, height
        for i, (label, left, top, box_width, box_height, confidence) in enumerate(boxes):
            if orientation == 1:  # as stored_to_displayed_rect and pixels_to_percent compute it
                x, y = left * 100.0 / disp_w, top * 100.0 / disp_h
                w, h = box_width * 100.0 / disp_w, box_height * 100.0 / disp_h
            else:
                shown = stored_to_displayed_rect(
                    Rect(left, top, box_width, box_height), stored_w, stored_h, orientation
                )
                pct = pixels_to_percent(shown, disp_w, disp_h)
                x, y, w, h = pct.left, pct.top, pct.width, pct.height
            region: JsonDict = {
                "id": f"g{g}b{i}",
                "from_name": boxes_name,
                "to_name": image_name,
                "type": RECTANGLE_LABELS,
                "original_width": disp_w,
                "original_height": disp_h,
                "image_rotation": 0,
                "value": {
                    "x": x,
                    "y": y,
                    "width": w,
                    "height": h,
                    "rotation": 0,
                    "rectanglelabels": [label],
                },
            }
            if not human:
                region["score"] = confidence
            results.append(region)
            box_labels.append(label)
    if results:
        if human:
            task["annotations"] = [{"result": results, "was_cancelled": False, "ground_truth": False}]
        else:
            confidences = [label[1] for label in labels] + [box[5] for group in groups for box in group[2]]
            jobs = [label[3] for label in labels] + [group[4] for group in groups]
            model = next((job for job in jobs if job), "manifest")
            task["predictions"] = [
                {"result": results, "score": sum(confidences) / len(confidences), "model_version": model}
            ]
    return task, names, box_labels


def line_check(
    number: int,
    data: bytes,
    obj: Any,
    *,
    limits: codes.Limits = codes.DEFAULT_LIMITS,
    image_meta: Mapping[str, ImageMeta] | None = None,
) -> LineCheck | None:
    """``check_line(RawLine(number, data))`` for the line ``data`` decoded as ``obj``, when every
    per-line rule passes it without a word and no image facts apply to it; None otherwise."""
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH:
        return None  # perhaps nested too deep: check_line walks it
    read = _read(obj, limits.max_label_name)
    if read is None:
        return None
    ref, labels, groups = read
    if image_meta and ref in image_meta:
        return None
    for width, height, _, _, _ in groups:
        if not (
            limits.min_image_side <= width <= limits.max_image_side
            and limits.min_image_side <= height <= limits.max_image_side
            and max(width, height) / min(width, height) <= limits.max_aspect_ratio
        ):
            return None
    box_labels: list[str] = []
    for width, height, boxes, _, _ in groups:
        if not boxes or len(boxes) > limits.max_boxes:
            return None
        scale = min(1.0, limits.training_downscale_side / max(width, height))
        for label, left, top, box_width, box_height, _ in boxes:
            if (
                left < 0
                or top < 0
                or box_width < 0
                or box_height < 0
                or left + box_width > width
                or top + box_height > height
                or box_width * scale <= 1
                or box_height * scale <= 1
            ):
                return None
            box_labels.append(label)
    class_labels = tuple(dict.fromkeys(label[0] for label in labels))
    return LineCheck(number, data, False, False, ref, True, class_labels, tuple(box_labels), len(data) + 1)


_KINDS = (CHOICES, RECTANGLE_LABELS)
# The kind and allowed labels of each control name of one label config, looked up once per name rather
# than twice per result (a worker converts with one config; a new config starts a new table).
_Controls = dict[str, tuple[str | None, frozenset[str] | None]]
_CONTROLS: tuple[LabelConfig | None, _Controls] = (None, {})


def _controls_of(config: LabelConfig) -> _Controls:
    global _CONTROLS  # noqa: PLW0603 (a cache, replaced when the config changes)
    if _CONTROLS[0] is not config:
        _CONTROLS = (config, {})
    return _CONTROLS[1]


def _control_of(
    config: LabelConfig | None, controls: _Controls, name: str
) -> tuple[str | None, frozenset[str] | None]:
    assert config is not None
    found = controls[name] = (config.kind_of(name), config.allowed_labels(name))
    return found


def task_line(task: Any, options: ReadOptions) -> tuple[JsonDict, str] | None:
    """``entry_to_line(task_to_entry(task, options))`` and the entry's source-ref, for a task that
    converts without a warning, with no provenance (``data.customlabels``) and no image facts that change
    its boxes; None for any other task."""
    made = task_line_labels(task, options)
    return None if made is None else (made[0], made[1])


def task_line_labels(task: Any, options: ReadOptions) -> tuple[JsonDict, str, tuple[str, ...]] | None:
    """:func:`task_line`, and the entry's label names, image-level then box labels, each once
    (``dict.fromkeys`` of :func:`~converters.labelstudio.labels_in`'s two lists).

    Image facts (``options.image_meta``) of an upright image (EXIF orientation 1) whose size is the one
    every result gives change nothing and are taken here; any other facts leave the task to the general
    reader."""
    if type(task) is not dict:
        return None
    data = task.get("data")
    if type(data) is not dict:
        return None
    config = options.label_config
    ref = data.get(config.image_key if config else DEFAULT_IMAGE_KEY)
    if type(ref) is not str or not ref.startswith("s3://"):
        return None
    slash = ref.find("/", 5)  # as valid_source_ref: a bucket, then a key
    if slash <= 5 or slash == len(ref) - 1 or data.get(PROVENANCE_KEY) is not None:
        return None
    meta = options.image_meta.get(ref)
    if meta is not None and meta.orientation != 1:
        return None  # the boxes turn with the image
    annotations = task.get("annotations")
    if (  # one annotation, not cancelled: the one _pick picks, without its weighing of several
        type(annotations) is list
        and len(annotations) == 1
        and type(annotations[0]) is dict
        and not annotations[0].get("was_cancelled")
    ):
        kind, chosen = "annotations", annotations[0]
    else:
        kind, _, chosen = _pick(task) or ("annotations", 0, {})
    human = kind == "annotations"
    stamp = chosen.get("updated_at") or chosen.get("created_at")
    if type(stamp) is not str or not stamp:  # _utc(stamp, options.now), written out
        date = options.now
    elif stamp[-1] == "Z":
        date = stamp[:-1]
    else:
        date = stamp[:-6] if stamp.endswith("+00:00") else stamp
    default_score = chosen.get("score") if not human else None
    results = chosen.get("result")
    if results is None:
        results = []
    if type(results) is not list:
        return None
    names: dict[str, float | None] = {}
    controls = _controls_of(config) if config is not None else None
    sized: JsonDict | None = None  # the first result with an original_width: _stored_image_size's
    stored_w = stored_h = -1  # its size (stored pixels), read at the first box
    ids: dict[str, int] = {}
    boxes: list[JsonDict] = []
    objects: list[JsonDict] = []
    for result in results:
        if type(result) is not dict:
            return None
        get = result.get
        if sized is None and isinstance(get("original_width"), _NUMBERS):
            sized = result
        control: str | None = None
        allowed: frozenset[str] | None = None
        if controls is not None:
            from_name = get("from_name")
            key = from_name if type(from_name) is str else str(from_name)
            control, allowed = controls.get(key) or _control_of(config, controls, key)
        if control is None:
            declared = get("type")
            if type(declared) is not str:
                return None
            control = declared.lower()
        if control not in _KINDS:
            return None  # an error, or a result ignored with a warning
        score: Any = get("score", default_score)
        score = float(score) if type(score) in _NUMBERS else None
        value = get("value")
        if type(value) is not dict:
            return None
        items = value.get("choices" if control == CHOICES else "rectanglelabels")
        if type(items) is not list:
            return None
        for item in items:
            if type(item) is not str:
                return None
        if allowed is not None and not allowed.issuperset(items):
            return None  # a label the config no longer has: dropped with a warning
        if control == CHOICES:
            for name in items:
                names.setdefault(name, score)
            continue
        size_w: Any = get("original_width")
        size_h: Any = get("original_height")
        x: Any = value.get("x")
        y: Any = value.get("y")
        w: Any = value.get("width")
        h: Any = value.get("height")
        rotation: Any = value.get("rotation") or 0
        if (
            not items
            or type(size_w) not in _NUMBERS
            or type(size_h) not in _NUMBERS
            or not (size_w > 0 and size_h > 0)
            or type(x) not in _NUMBERS
            or type(y) not in _NUMBERS
            or type(w) not in _NUMBERS
            or type(h) not in _NUMBERS
            or type(rotation) not in _NUMBERS
            or rotation % 360
        ):
            return None  # no label, no size, a rotated box: a warning or an error
        disp_w, disp_h = int(size_w), int(size_h)
        if meta is not None and (disp_w != meta.width or disp_h != meta.height):
            return None  # the image's facts overrule the size the result gives
        left, top = x * disp_w / 100.0, y * disp_h / 100.0
        width, height = w * disp_w / 100.0, h * disp_h / 100.0
        if not (left >= 0 and top >= 0 and left + width <= disp_w and top + height <= disp_h):
            return None  # clipped to the image, with a warning
        if stored_w < 0:  # the first box: the stored size as _stored_image_size reads it
            assert sized is not None  # this result has a number for original_width
            height_of: Any = sized.get("original_height")
            if type(height_of) not in _NUMBERS:
                return None
            stored_w, stored_h = int(sized["original_width"]), int(height_of)
            if meta is not None and (stored_w != meta.width or stored_h != meta.height):
                return None
        # pixel_box(label, Rect(left, top, width, height), stored_w, stored_h), written out
        x0, y0 = floor(left + 0.5), floor(top + 0.5)
        x0 = 0 if x0 < 0 else x0
        x0 = stored_w if stored_w < x0 else x0
        y0 = 0 if y0 < 0 else y0
        y0 = stored_h if stored_h < y0 else y0
        x1, y1 = floor(left + width + 0.5), floor(top + height + 0.5)
        x1 = x0 if x0 > x1 else x1
        x1 = stored_w if stored_w < x1 else x1
        y1 = y0 if y0 > y1 else y1
        y1 = stored_h if stored_h < y1 else y1
        confidence = 1.0 if score is None else score
        for label in items:
            class_id = ids.setdefault(label, len(ids))
            boxes.append({"class_id": class_id, "top": y0, "left": x0, "width": x1 - x0, "height": y1 - y0})
            objects.append({"confidence": confidence})

    job = options.job_name
    made = "yes" if human else "no"
    line: JsonDict = {"source-ref": ref}
    used = {"source-ref"}
    for name, score in names.items():
        attr = DEFAULT_LABEL_ATTRIBUTE if len(used) == 1 else _free_attribute(DEFAULT_LABEL_ATTRIBUTE, used)
        used.add(attr)
        label_meta: JsonDict = {"confidence": 1.0 if score is None else score}
        if job is not None:
            label_meta["job-name"] = job
        label_meta["class-name"] = name
        label_meta["human-annotated"] = made
        label_meta["creation-date"] = date
        label_meta["type"] = _CLASSIFICATION
        line[attr] = 1
        line[attr + META_SUFFIX] = label_meta
    if boxes:
        line[DEFAULT_BOX_ATTRIBUTE] = {
            "image_size": [{"width": stored_w, "height": stored_h, "depth": 3}],
            "annotations": boxes,
        }
        box_meta: JsonDict = {
            "objects": objects,
            "class-map": dict(zip(map(str, range(len(ids))), ids, strict=True)),  # ids: label -> 0, 1, ...
            "type": _DETECTION,
            "human-annotated": made,
            "creation-date": date,
        }
        if job is not None:
            box_meta["job-name"] = job
        line[DEFAULT_BOX_ATTRIBUTE + META_SUFFIX] = box_meta
    return line, ref, tuple(dict.fromkeys([*names, *ids]))
