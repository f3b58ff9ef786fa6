"""The shortcuts of converters.fastlines give exactly what the general readers give, or step aside."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from converters import codes
from converters.errors import ConversionError
from converters.fastlines import line_check, line_task, task_line, task_line_labels
from converters.imagemeta import ImageMeta
from converters.jsonio import RawLine
from converters.labelconfig import parse_label_config
from converters.labelstudio import ReadOptions, WriteOptions, entry_to_task, labels_in, task_to_entry
from converters.manifest import entry_to_line, parse_line
from converters.validation import check_line
from tests.builders import as_exported

CLS = "groundtruth/image-classification"
DET = "groundtruth/object-detection"
SMALL = replace(
    codes.DEFAULT_LIMITS,
    max_label_name=5,
    max_boxes=2,
    min_image_side=100,
    max_image_side=1500,
    max_aspect_ratio=2.0,
    training_downscale_side=300,
)


def outcome(task: Any) -> Any:
    """The task as the output gets it: its JSON, or what stops orjson writing it."""
    try:
        return orjson.dumps(task)
    except orjson.JSONEncodeError as exc:
        return repr(exc)


def general_task(obj: Any, options: WriteOptions, max_label_name: int) -> tuple[Any, ...] | None:
    """What manifest-to-ls does with a line the general way, when the line is one line_task may take."""
    parsed = parse_line(obj, max_label_name=max_label_name)
    entry = parsed.entry
    if entry is None or parsed.issues or parsed.normalized or entry.extra:
        return None
    task = entry_to_task(entry, options, line=obj)
    return outcome(task), [label.name for label in entry.labels], [box.label for box in entry.boxes]


def assert_same(obj: Any, meta: dict[str, ImageMeta]) -> None:
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()  # deeper than orjson
    decoded = orjson.loads(data)
    for options in (
        WriteOptions(),
        WriteOptions(image_meta=meta, dataset="test"),
        WriteOptions(image_name="img", image_key="pic", choices_name="c", boxes_name="b", dataset="train"),
    ):
        for max_name in (codes.DEFAULT_LIMITS.max_label_name, 5):
            fast = line_task(copy.deepcopy(decoded), options, max_label_name=max_name)
            if fast is not None:
                assert general_task(decoded, options, max_name) == (outcome(fast[0]), fast[1], fast[2])
    for limits in (codes.DEFAULT_LIMITS, SMALL):
        for image_meta in (None, meta):
            check = line_check(7, data, decoded, limits=limits, image_meta=image_meta)
            if check is not None:
                assert check == check_line(RawLine(7, data), limits=limits, image_meta=image_meta)


names = st.sampled_from(["cat", "dog", "a b", "Ünïcødé", "", "longer-name"])
PERTURBATIONS: list[Any] = [
    lambda o, a: o.__setitem__("source-ref", "s3://b"),
    lambda o, a: o.__setitem__("other", 1),
    lambda o, a: o.__setitem__("cl-metadata", {"is_labeled": True}),
    lambda o, a: o.__setitem__("orphan-metadata", {}),
    lambda o, a: o[a + "-metadata"].__setitem__("job-name", None),
    lambda o, a: o[a + "-metadata"].__setitem__("human-annotated", "maybe"),
    lambda o, a: o[a + "-metadata"].__setitem__("creation-date", 5),
    lambda o, a: o[a + "-metadata"].__setitem__("type", "groundtruth/semantic-segmentation"),
    lambda o, a: o[a + "-metadata"].__setitem__("unknown-key", [1]),
    lambda o, a: o.__setitem__(a, "0") if "class-name" in o[a + "-metadata"] else o[a].__setitem__("x", 1),
    lambda o, a: o[a + "-metadata"].__setitem__("confidence", True),
    lambda o, a: o[a + "-metadata"].__setitem__("class-name", "name-too-long-for-small-limits"),
    lambda o, a: o[a + "-metadata"].get("objects", []).append({"confidence": 0.0}),
    lambda o, a: (
        o[a + "-metadata"].get("objects", [{}])[:1].clear()
        or o[a + "-metadata"].get("objects", []).insert(0, {})
    ),
    lambda o, a: o[a + "-metadata"].__setitem__("class-map", {"0": 5}),
    lambda o, a: (
        o[a]["annotations"].append({"class_id": 0, "top": 1.5, "left": -1, "width": 2, "height": 3})
        if isinstance(o[a], dict)
        else None
    ),
    lambda o, a: (
        o[a]["annotations"].append({"class_id": 7, "top": 1, "left": 1, "width": 2, "height": 3, "e": 1})
        if isinstance(o[a], dict)
        else None
    ),
    lambda o, a: o[a]["image_size"][0].__setitem__("depth", 1.0) if isinstance(o[a], dict) else None,
    lambda o, a: o[a].__setitem__("annotations", []) if isinstance(o[a], dict) else None,
    # Orphans (ERROR_NO_LABEL_ATTRIBUTES): an attribute without its metadata, a metadata without its
    # attribute, a misspelt metadata key, an orphan beside proper pairs; and unknown keys that are not.
    lambda o, a: o.__delitem__(a + "-metadata"),
    lambda o, a: o.__delitem__(a),
    lambda o, a: o.__setitem__(a + "-metdata", o.pop(a + "-metadata")),
    lambda o, a: o.__setitem__("extra-box", copy.deepcopy(o[a])),
    lambda o, a: o.__setitem__("more", [0, "1"]),
    lambda o, a: o.__setitem__("note", "free text"),
    lambda o, a: o.__setitem__("score", 0.5),
]


@st.composite
def lines(draw: st.DrawFn, *, perturb: bool = True) -> dict[str, Any]:
    """Mostly well-formed lines (the shortcuts' business), some with one thing off (when ``perturb``)."""
    width, height = draw(st.sampled_from([(640, 480), (480, 640), (90, 90), (1400, 600), (4000, 100)]))
    out: dict[str, Any] = {"source-ref": draw(st.sampled_from(["s3://b/k.jpg", "s3://b/d/k.png"]))}
    attrs = draw(
        st.lists(
            st.sampled_from(["label", "bounding-box", "a1", "a2", "cl"]), min_size=1, max_size=3, unique=True
        )
    )
    for attr in attrs:
        meta: dict[str, Any] = {"confidence": draw(st.sampled_from([1, 1.0, 0.0, 0, 0.5]))}
        job = draw(st.sampled_from(["job", "", "absent", "other job"]))
        if job != "absent":
            meta["job-name"] = job
        meta["human-annotated"] = draw(st.sampled_from(["yes", "no"]))
        meta["creation-date"] = "2020-04-15T20:17:23.433061"
        if draw(st.booleans()):
            meta["type"] = CLS
            meta["class-name"] = draw(names.filter(bool))
            out[attr] = draw(st.sampled_from([0, 1, 7]))
        else:
            meta.pop("confidence")
            meta["type"] = DET
            class_map = draw(st.sampled_from([{"0": "cat", "1": "dog"}, {"0": "cat", "1": "a b", "2": ""}]))
            boxes, objects = [], []
            for _ in range(draw(st.integers(0, 3))):
                left = draw(st.integers(0, width - 1) | st.floats(0, width - 1))
                top = draw(st.integers(0, height - 1) | st.floats(0, height - 1))
                box = {
                    "class_id": draw(st.sampled_from([int(k) for k in class_map])),
                    "top": top,
                    "left": left,
                    "width": draw(st.integers(0, int(width - left)) | st.floats(0, width - left)),
                    "height": draw(st.integers(0, int(height - top)) | st.floats(0, height - top)),
                }
                if draw(st.integers(0, 9)) == 0:
                    box["extra"] = 1
                boxes.append(box)
                objects.append({"confidence": draw(st.sampled_from([1, 1.0, 0.0, 0.7]))})
            meta["objects"] = objects
            meta["class-map"] = class_map
            out[attr] = {"image_size": [{"width": width, "height": height, "depth": 3}], "annotations": boxes}
        out[attr + "-metadata"] = meta
    if perturb and draw(st.integers(0, 2)) == 0:
        draw(st.sampled_from(PERTURBATIONS))(out, draw(st.sampled_from(attrs)))
    return out


@settings(max_examples=400, deadline=None)
@given(lines(), st.integers(1, 8))
def test_shortcuts_equal_the_general_readers(obj: dict[str, Any], orientation: int) -> None:
    meta = {"s3://b/k.jpg": ImageMeta(640, 480, orientation), "s3://b/d/k.png": ImageMeta(90, 90, 1)}
    assert_same(obj, meta)


ORPHANINGS: list[Any] = PERTURBATIONS[-7:-3]


@st.composite
def orphaned_lines(draw: st.DrawFn) -> dict[str, Any]:
    """Well-formed generated lines with one label attribute or metadata left without its other half."""
    obj = draw(lines(perturb=False))
    attr = draw(st.sampled_from([k for k in obj if k != "source-ref" and not k.endswith("-metadata")]))
    draw(st.sampled_from(ORPHANINGS))(obj, attr)
    return obj


@settings(max_examples=200, deadline=None)
@given(orphaned_lines())
def test_an_orphan_is_no_label_attributes_on_both_paths(obj: dict[str, Any]) -> None:
    data = orjson.dumps(obj)
    assert line_check(1, data, obj) is None
    assert line_task(obj, WriteOptions()) is None
    check = check_line(RawLine(1, data))
    assert check.has_error and check.source_ref is None and not check.terminal
    assert [e["code"] for e in orjson.loads(check.output)["errors"]] == [codes.ERROR_NO_LABEL_ATTRIBUTES]
    assert_same(obj, {})


def common_line() -> dict[str, Any]:
    return {
        "source-ref": "s3://b/k.jpg",
        "label": 1,
        "label-metadata": {
            "confidence": 1,
            "job-name": "job",
            "class-name": "cat",
            "human-annotated": "yes",
            "creation-date": "2020-04-15T20:17:23.433061",
            "type": CLS,
        },
        "bounding-box": {
            "image_size": [{"width": 640, "height": 480, "depth": 3}],
            "annotations": [{"class_id": 0, "top": 10, "left": 20, "width": 30, "height": 40}],
        },
        "bounding-box-metadata": {
            "objects": [{"confidence": 1}],
            "class-map": {"0": "dog"},
            "type": DET,
            "human-annotated": "no",
            "creation-date": "2013-11-18T02:53:27",
            "job-name": "my job",
        },
    }


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_the_common_line_takes_the_shortcut() -> None:
    obj = common_line()
    assert line_task(obj, WriteOptions()) is not None
    assert line_check(1, orjson.dumps(obj), obj) is not None
    assert_same(obj, {})


@pytest.mark.parametrize(
    "change",
    [
        lambda o: o["label-metadata"].__setitem__("job-name", None),
        lambda o: o["label-metadata"].pop("job-name"),
        lambda o: o["label-metadata"].__setitem__("human-annotated", "maybe"),
        lambda o: o.__setitem__("label", "1"),
        lambda o: o.__setitem__("cl-metadata", {"is_labeled": True}),
        lambda o: o.__setitem__("other", 1),
        lambda o: o["bounding-box"].__setitem__("annotations", []),
        lambda o: o["bounding-box-metadata"].__setitem__("objects", []),
        lambda o: o["bounding-box-metadata"]["objects"][0].__setitem__("confidence", 0.0),
        lambda o: o["bounding-box-metadata"].__setitem__("human-annotated", "yes"),
        lambda o: o["bounding-box"]["annotations"][0].__setitem__("left", 620),
        lambda o: o["bounding-box"]["annotations"][0].__setitem__("width", 0.5),
        lambda o: o["bounding-box"]["annotations"][0].__setitem__("class_id", 3),
        lambda o: o["bounding-box"]["image_size"][0].__setitem__("width", 5000),
        lambda o: o.__delitem__("label"),
        lambda o: o["label-metadata"].__setitem__("deep", nested(300)),
        lambda o: o["bounding-box"]["annotations"][0].__setitem__("deep", nested(260)),
        lambda o: o.__delitem__("bounding-box-metadata"),
        lambda o: o.__delitem__("bounding-box"),
        lambda o: o.__setitem__("bounding-box-metdata", o.pop("bounding-box-metadata")),
        lambda o: o.__setitem__("label2", 1),
    ],
)
def test_odd_lines_give_the_same_or_step_aside(change: Any) -> None:
    obj = common_line()
    change(obj)
    assert_same(obj, {"s3://b/k.jpg": ImageMeta(480, 640, 6)})


# ------------------------------------------------------------------------------ Label Studio tasks

CONFIG = parse_label_config(
    '<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
    '<Choice value="cat"/><Choice value="dog"/></Choices><RectangleLabels name="bbox" toName="image">'
    '<Label value="cat"/><Label value="face"/></RectangleLabels><TextArea name="note" toName="image"/></View>',
    source="config",
)
TASK_PERTURBATIONS: list[Any] = [
    lambda t, r: t["data"].__setitem__("image", "https://host/x.jpg"),
    lambda t, r: t["data"].__setitem__("image", "s3://bucket"),
    lambda t, r: t["data"].__setitem__("customlabels", {"line": {"source-ref": t["data"]["image"]}}),
    lambda t, r: t["data"].__setitem__("dataset", "test"),
    lambda t, r: r.__setitem__("type", "polygonlabels"),
    lambda t, r: r.__setitem__("from_name", "note"),
    lambda t, r: r.__setitem__("score", 0.25),
    lambda t, r: r.__setitem__("score", True),
    lambda t, r: r.__setitem__("id", 7),
    lambda t, r: r["value"].__setitem__("rotation", 30),
    lambda t, r: r["value"].__setitem__("rotation", 360),
    lambda t, r: r["value"].__setitem__("x", 99.5),
    lambda t, r: r["value"].__setitem__("choices" if "choices" in r["value"] else "rectanglelabels", []),
    lambda t, r: r["value"].__setitem__(
        "choices" if "choices" in r["value"] else "rectanglelabels", ["horse"]
    ),
    lambda t, r: r.pop("original_width", None),
    lambda t, r: r.__setitem__("original_width", 0),
    lambda t, r: t.__setitem__("predictions", [{"result": [r], "score": 0.5, "model_version": "m"}]),
    lambda t, r: [a.__setitem__("was_cancelled", True) for a in t["annotations"][:1]],
    lambda t, r: t["annotations"].append({"result": [], "ground_truth": True}),
]


@st.composite
def tasks(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly tasks converted without a word (the shortcut's business), some with one thing off."""
    width, height = draw(st.sampled_from([(640, 480), (480, 640), (1920, 1080), (100, 50)]))
    results: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 4))):
        if draw(st.integers(0, 2)) == 0:
            results.append(
                {
                    "id": f"c{i}",
                    "from_name": "label",
                    "to_name": "image",
                    "type": draw(st.sampled_from(["choices", "Choices"])),
                    "value": {"choices": draw(st.lists(st.sampled_from(["cat", "dog"]), max_size=2))},
                }
            )
            continue
        x = draw(st.integers(0, 90) | st.floats(0, 90))
        y = draw(st.integers(0, 90) | st.floats(0, 90))
        result: dict[str, Any] = {
            "id": draw(st.sampled_from([f"r{i}", "g0b0", None])),
            "from_name": "bbox",
            "to_name": "image",
            "type": "rectanglelabels",
            "original_width": draw(st.sampled_from([width, float(width)])),
            "original_height": height,
            "image_rotation": 0,
            "value": {
                "x": x,
                "y": y,
                "width": draw(st.floats(0, 100 - x)),
                "height": draw(st.floats(0, 100 - y)),
                "rotation": draw(st.sampled_from([0, 0.0, None])),
                "rectanglelabels": draw(st.lists(st.sampled_from(["cat", "face"]), min_size=1, max_size=2)),
            },
        }
        if draw(st.integers(0, 5)) == 0:
            result["score"] = draw(st.sampled_from([0.5, 1, None]))
        results.append(result)
    annotation: dict[str, Any] = {"id": 1, "was_cancelled": False, "ground_truth": False, "result": results}
    if draw(st.booleans()):
        annotation["updated_at"] = draw(
            st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-02T00:00:00+00:00", ""])
        )
    task: dict[str, Any] = {
        "id": 1,
        "data": {"image": draw(st.sampled_from(["s3://b/k.jpg", "s3://b/d/k.png"]))},
        "annotations": [annotation] if draw(st.integers(0, 4)) else [],
        "predictions": [],
    }
    if not task["annotations"] and draw(st.booleans()):
        task["predictions"] = [{"result": results, "score": 0.7, "model_version": "m"}]
    if results and draw(st.integers(0, 2)) == 0:
        draw(st.sampled_from(TASK_PERTURBATIONS))(task, draw(st.sampled_from(results)))
    if draw(st.booleans()):  # every key of a real export, a prediction and a draft carried beside
        return as_exported(task, from_prediction=draw(st.booleans()), draft=draw(st.booleans()))
    return task


def general_line(task: Any, options: ReadOptions) -> tuple[Any, ...]:
    issues: list[Any] = []
    try:
        entry = task_to_entry(copy.deepcopy(task), options, issues)
    except ConversionError as exc:
        return ("error", repr(exc))
    return orjson.dumps(entry_to_line(entry)), entry.source_ref, issues


def general_labels(task: Any, options: ReadOptions) -> tuple[str, ...]:
    names, boxes = labels_in(task_to_entry(copy.deepcopy(task), options))
    return tuple(dict.fromkeys([*names, *boxes]))


@settings(max_examples=400, deadline=None)
@given(tasks(), st.sampled_from([(640, 480), (480, 640), (1920, 1080)]))
def test_task_shortcut_equals_the_general_reader(task: dict[str, Any], size: tuple[int, int]) -> None:
    """Image facts of an upright image of the results' size change nothing (the shortcut takes them);
    a turned image or another size is the general reader's."""
    for meta in (ImageMeta(640, 480, 6), ImageMeta(*size, 1)):
        for options in (
            ReadOptions(now="NOW"),
            ReadOptions(label_config=CONFIG, job_name="job", now="NOW"),
            ReadOptions(image_meta={"s3://b/d/k.png": meta}, now="NOW"),
            ReadOptions(label_config=CONFIG, image_meta={"s3://b/d/k.png": meta}, now="NOW"),
        ):
            fast = task_line_labels(copy.deepcopy(task), options)
            if fast is not None:
                assert general_line(task, options) == (orjson.dumps(fast[0]), fast[1], [])
                assert fast[2] == general_labels(task, options)
                assert task_line(copy.deepcopy(task), options) == fast[:2]


def test_image_facts_that_change_the_boxes_leave_the_task_to_the_general_reader() -> None:
    task = {
        "data": {"image": "s3://b/k.jpg"},
        "annotations": [
            {
                "result": [
                    {
                        "from_name": "bbox",
                        "type": "rectanglelabels",
                        "original_width": 640,
                        "original_height": 480,
                        "value": {"x": 10, "y": 10, "width": 20, "height": 30, "rectanglelabels": ["face"]},
                    }
                ]
            }
        ],
    }

    def fast(meta: ImageMeta) -> Any:
        return task_line_labels(task, ReadOptions(image_meta={"s3://b/k.jpg": meta}, now="NOW"))

    made = fast(ImageMeta(640, 480, 1))
    assert made is not None and made[2] == ("face",)
    assert fast(ImageMeta(640, 480, 6)) is None  # turned: stored and displayed sizes differ
    assert fast(ImageMeta(1280, 960, 1)) is None  # the stored image is larger than the results say


def test_the_common_task_takes_the_shortcut() -> None:
    task = {
        "data": {"image": "s3://b/k.jpg"},
        "annotations": [
            {
                "result": [
                    {"from_name": "label", "type": "choices", "value": {"choices": ["cat"]}},
                    {
                        "id": "r",
                        "from_name": "bbox",
                        "type": "rectanglelabels",
                        "original_width": 640,
                        "original_height": 480,
                        "value": {
                            "x": 10,
                            "y": 10,
                            "width": 20,
                            "height": 30,
                            "rotation": 0,
                            "rectanglelabels": ["face"],
                        },
                    },
                ]
            }
        ],
    }
    fast = task_line(task, ReadOptions(label_config=CONFIG, now="NOW"))
    assert fast is not None
    assert general_line(task, ReadOptions(label_config=CONFIG, now="NOW")) == (
        orjson.dumps(fast[0]),
        fast[1],
        [],
    )
