"""Label Studio tasks <-> entries: round trips, EXIF, provenance, and the errors that name the field."""

from __future__ import annotations

import base64
import copy
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from converters.errors import Issue, TaskError
from converters.geometry import Rect, pixels_to_percent, stored_to_displayed_rect
from converters.imagemeta import ImageMeta
from converters.labelconfig import parse_label_config
from converters.labelstudio import (
    WARNING_ROTATED_BOX,
    ReadOptions,
    WriteOptions,
    entry_to_task,
    task_to_entry,
)
from converters.manifest import entry_to_line, parse_line
from tests.builders import choices, cls_attr, det_attr, line, rect, task

NOW = "2026-11-24T00:00:00.000000"


def through_json(obj: Any) -> Any:
    """What Label Studio stores and gives back: plain JSON."""
    return orjson.loads(orjson.dumps(obj))


def manifest_round_trip(obj: dict[str, Any], meta: dict[str, ImageMeta] | None = None) -> dict[str, Any]:
    entry = parse_line(through_json(obj)).entry
    assert entry is not None
    the_task = through_json(entry_to_task(entry, WriteOptions(image_meta=meta or {})))
    return entry_to_line(task_to_entry(the_task, ReadOptions(image_meta=meta or {}, now=NOW)))


# ------------------------------------------------------------------------ manifest -> LS -> manifest

label_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=12
)
dates = st.sampled_from(["2020-04-15T20:17:23.433061", "2018-10-18T22:18:13.527256", "2013-11-18T02:53:27"])


@st.composite
def manifest_lines(draw: st.DrawFn) -> dict[str, Any]:
    ref = (
        "s3://bucket/"
        + draw(st.sampled_from(["a/", "b/c/", ""]))
        + draw(st.sampled_from(["x.jpg", "frame_0001.png"]))
    )
    out: dict[str, Any] = {"source-ref": ref}
    for i, name in enumerate(draw(st.lists(label_names, max_size=3, unique=True))):
        meta: dict[str, Any] = {
            "confidence": draw(st.sampled_from([0, 0.5, 0.95, 1])),
            "class-name": name,
            "human-annotated": draw(st.sampled_from(["yes", "no"])),
            "creation-date": draw(dates),
            "type": "groundtruth/image-classification",
        }
        if draw(st.booleans()):
            meta["job-name"] = draw(st.sampled_from(["labeling-job/a", "identify-sport"]))
        out[f"attr{i}"] = draw(st.sampled_from([0, 1, "0", 7]))
        out[f"attr{i}-metadata"] = meta
    width, height = draw(st.integers(64, 4096)), draw(st.integers(64, 4096))  # one image, one size
    for g in range(draw(st.integers(0, 2))):
        n = draw(st.integers(0, 4))
        anns, objects = [], []
        class_map = {"0": draw(label_names), "5": draw(label_names)}
        for _ in range(n):
            left = draw(st.integers(0, width - 2))
            top = draw(st.integers(0, height - 2))
            anns.append(
                {
                    "class_id": draw(st.sampled_from([0, 5])),
                    "top": top,
                    "left": left,
                    "width": draw(st.integers(1, width - left)),
                    "height": draw(st.integers(1, height - top)),
                }
            )
            objects.append({"confidence": draw(st.sampled_from([0.09, 1, 0.7]))})
        out[f"bb{g}"] = {"image_size": [{"width": width, "height": height, "depth": 3}], "annotations": anns}
        out[f"bb{g}-metadata"] = {
            "objects": objects,
            "class-map": class_map,
            "type": "groundtruth/object-detection",
            "human-annotated": draw(st.sampled_from(["yes", "no"])),
            "creation-date": draw(dates),
            "job-name": "my job",
        }
    if draw(st.booleans()):
        out["cl-extra"] = {"kept": [1, 2, {"deep": True}]}
    return out


@settings(max_examples=200)
@given(manifest_lines(), orientations := st.integers(1, 8))
def test_untouched_entry_round_trips_to_the_identical_line(obj: dict[str, Any], orientation: int) -> None:
    meta = None
    groups = [k for k in obj if k.startswith("bb") and not k.endswith("-metadata")]
    if groups:
        size = obj[groups[0]]["image_size"][0]
        meta = {obj["source-ref"]: ImageMeta(size["width"], size["height"], orientation)}
    assert manifest_round_trip(obj, meta) == obj


def test_doc_examples_round_trip() -> None:
    examples = [
        '{"source-ref":"s3://custom-labels-console-us-east-1-nnnnnnnnnn/gt-job/manifest/IMG_1133.png","TestCLConsoleBucket":0,"TestCLConsoleBucket-metadata":{"confidence":0.95,"job-name":"labeling-job/testclconsolebucket","class-name":"Echo Dot","human-annotated":"yes","creation-date":"2020-04-15T20:17:23.433061","type":"groundtruth/image-classification"}}',
        '{"source-ref":"s3://AWSDOC-EXAMPLE-BUCKET/example_image.jpg","species":"0","species-metadata":{"class-name": "dog","confidence": 0.00,"type": "groundtruth/image-classification","job-name": "identify-animal-species","human-annotated": "yes","creation-date": "2018-10-18T22:18:13.527256"}}',
        '{"source-ref": "s3://bucket/images/IMG_1186.png", "bounding-box": {"image_size": [{"width": 640, "height": 480, "depth": 3}], "annotations": [{ "class_id": 1,\t"top": 251,\t"left": 399, "width": 155, "height": 101}, {"class_id": 0, "top": 65, "left": 86, "width": 220,\t"height": 334}]}, "bounding-box-metadata": {"objects": [{ "confidence": 1}, {"confidence": 1}],\t"class-map": {"0": "Echo",\t"1": "Echo Dot"}, "type": "groundtruth/object-detection", "human-annotated": "yes",\t"creation-date": "2013-11-18T02:53:27", "job-name": "my job"}}',
    ]
    for text in examples:
        obj = orjson.loads(text)
        assert manifest_round_trip(obj) == obj


def test_sagemaker_multilabel_form_becomes_rekognition_form() -> None:
    obj = orjson.loads(
        '{"source-ref":"s3://b/sky.jpg","bg-labeling":[6,0],"bg-labeling-metadata":{"job-name":"labeling-job/bg-labeling",'
        '"confidence-map":{"6":0.25,"0":0.5},"class-map":{"6":"clouds","0":"Canyon"},'
        '"type":"groundtruth/image-classification-multilabel","human-annotated":"yes","creation-date":"2024-09-27T21:31:32.051349"}}'
    )
    out = manifest_round_trip(obj)
    assert out["bg-labeling0"] == 0 and out["bg-labeling1"] == 1
    first, second = out["bg-labeling0-metadata"], out["bg-labeling1-metadata"]
    assert (first["class-name"], first["confidence"]) == ("clouds", 0.25)
    assert (second["class-name"], second["confidence"]) == ("Canyon", 0.5)
    for meta in (first, second):
        assert meta["type"] == "groundtruth/image-classification"
        assert meta["job-name"] == "labeling-job/bg-labeling"
        assert meta["creation-date"] == "2024-09-27T21:31:32.051349"
    assert "bg-labeling" not in out


def test_machine_labels_become_predictions_and_stay_machine_labels() -> None:
    obj = line("s3://b/i.jpg", cls_attr("sport", "football", confidence=0.8, human="no"))
    entry = parse_line(obj).entry
    assert entry is not None
    the_task = entry_to_task(entry)
    assert "annotations" not in the_task
    assert the_task["predictions"][0]["result"][0]["value"]["choices"] == ["football"]
    assert manifest_round_trip(obj) == obj


# ------------------------------------------------------------------------ LS -> manifest -> LS


@st.composite
def ls_boxes(draw: st.DrawFn) -> tuple[int, int, int, list[tuple[float, float, float, float]]]:
    width, height = draw(st.integers(64, 4096)), draw(st.integers(64, 4096))
    orientation = draw(st.integers(1, 8))
    boxes = []
    for _ in range(draw(st.integers(1, 4))):
        x = draw(st.floats(0, 90))
        y = draw(st.floats(0, 90))
        boxes.append((x, y, draw(st.floats(0.5, 100 - x)), draw(st.floats(0.5, 100 - y))))
    return width, height, orientation, boxes


@settings(max_examples=200)
@given(ls_boxes())
def test_label_studio_round_trip_keeps_box_edges_within_half_a_pixel(case: Any) -> None:
    width, height, orientation, boxes = case
    meta = ImageMeta(width, height, orientation)
    shown_w, shown_h = meta.displayed
    ref = "s3://b/photo.jpg"
    results = [rect(f"l{i % 2}", *b, size=(shown_w, shown_h), rid=f"r{i}") for i, b in enumerate(boxes)]
    results.append(choices("indoor"))
    options = ReadOptions(image_meta={ref: meta}, now=NOW)
    manifest = entry_to_line(task_to_entry(task(ref, *results), options))
    back = entry_to_task(parse_line(through_json(manifest)).entry, WriteOptions(image_meta={ref: meta}))  # type: ignore[arg-type]
    got = back["annotations"][0]["result"]
    assert got[0]["value"]["choices"] == ["indoor"]
    got_boxes = got[1:]
    assert len(got_boxes) == len(boxes)
    for original, result in zip(results, got_boxes, strict=False):
        assert result["value"]["rectanglelabels"] == original["value"]["rectanglelabels"]
        assert (result["original_width"], result["original_height"]) == (shown_w, shown_h)
        before, after = original["value"], result["value"]
        for start, size, scale in (("x", "width", shown_w), ("y", "height", shown_h)):
            for edge_before, edge_after in (
                (before[start], after[start]),
                (before[start] + before[size], after[start] + after[size]),
            ):
                assert abs(edge_before - edge_after) * scale / 100 <= 0.5 + 1e-9, (start, before, after)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_boxes_land_on_stored_pixels_for_every_orientation(orientation: int) -> None:
    # A 400x300 stored image; the box covers stored pixels x 40..140, y 30..90.
    meta = ImageMeta(400, 300, orientation)
    shown = stored_to_displayed_rect(Rect(40, 30, 100, 60), 400, 300, orientation)
    dw, dh = meta.displayed
    pct = pixels_to_percent(shown, dw, dh)
    the_task = task("s3://b/p.jpg", rect("cat", pct.left, pct.top, pct.width, pct.height, size=(dw, dh)))
    out = entry_to_line(task_to_entry(the_task, ReadOptions(image_meta={"s3://b/p.jpg": meta}, now=NOW)))
    assert out["bounding-box"]["image_size"] == [{"width": 400, "height": 300, "depth": 3}]
    ann = out["bounding-box"]["annotations"][0]
    assert (ann["left"], ann["top"], ann["width"], ann["height"]) == (40, 30, 100, 60)


def test_portrait_phone_photo_uses_the_stored_size_not_the_displayed_one() -> None:
    # Stored 320x240 with orientation 6: Label Studio shows and reports 240x320.
    meta = {"s3://b/phone.jpg": ImageMeta(320, 240, 6)}
    the_task = task("s3://b/phone.jpg", rect("cat", 25, 10, 50, 25, size=(240, 320)))
    out = entry_to_line(task_to_entry(the_task, ReadOptions(image_meta=meta, now=NOW)))
    assert out["bounding-box"]["image_size"][0] == {"width": 320, "height": 240, "depth": 3}
    ann = out["bounding-box"]["annotations"][0]
    assert (ann["left"], ann["top"], ann["width"], ann["height"]) == (32, 60, 80, 120)


# ------------------------------------------------------------------------ behaviour on edits


def test_rotated_rectangle_becomes_its_enclosing_box_with_a_warning() -> None:
    issues: list[Issue] = []
    the_task = task("s3://b/i.jpg", rect("cat", 50, 50, 10, 10, size=(100, 100), rotation=90))
    out = entry_to_line(task_to_entry(the_task, ReadOptions(now=NOW), issues))
    ann = out["bounding-box"]["annotations"][0]
    assert (ann["left"], ann["top"], ann["width"], ann["height"]) == (40, 50, 10, 10)
    assert [i.code for i in issues] == [WARNING_ROTATED_BOX]


def test_choices_never_leak_into_the_box_class_map() -> None:
    the_task = task("s3://b/i.jpg", choices("kitchen", "indoor"), rect("toaster", 10, 10, 20, 20))
    out = entry_to_line(task_to_entry(the_task, ReadOptions(now=NOW)))
    assert out["bounding-box-metadata"]["class-map"] == {"0": "toaster"}
    classes = {v["class-name"] for k, v in out.items() if k.endswith("-metadata") and "class-name" in v}
    assert classes == {"kitchen", "indoor"}
    for k, v in out.items():
        if k.endswith("-metadata") and "class-name" in v:
            assert v["type"] == "groundtruth/image-classification"


def test_label_config_decides_which_control_is_which() -> None:
    config = parse_label_config(
        '<View><Image name="img" value="$photo"/><Choices name="scene" toName="img"><Choice value="a"/></Choices>'
        '<RectangleLabels name="obj" toName="img"><Label value="b"/></RectangleLabels>'
        '<TextArea name="note" toName="img"/></View>'
    )
    note = {"id": "n", "from_name": "note", "to_name": "img", "type": "textarea", "value": {"text": ["hi"]}}
    the_task = task("", choices("a", from_name="scene"), rect("b", 1, 1, 5, 5, from_name="obj"), note)
    the_task["data"] = {"photo": "s3://b/i.jpg"}
    issues: list[Issue] = []
    out = entry_to_line(task_to_entry(the_task, ReadOptions(label_config=config, now=NOW), issues))
    assert out["label-metadata"]["class-name"] == "a"
    assert out["bounding-box-metadata"]["class-map"] == {"0": "b"}
    assert [i.code for i in issues] == ["WARNING_IGNORED_RESULT"]
    with pytest.raises(TaskError, match="unsupported result type 'textarea'") as err:
        task_to_entry(the_task | {"data": {"image": "s3://b/i.jpg"}}, ReadOptions(now=NOW))
    assert err.value.field == "annotations[0].result[2].type"


def test_edited_boxes_keep_the_untouched_ones_exactly_and_rebuild_the_class_map() -> None:
    obj = line(
        "s3://b/i.jpg",
        det_attr(
            "bb",
            [("cat", 10, 10, 101, 51), ("dog", 200, 100, 50, 50), ("cat", 300, 300, 30, 30)],
            confidences=[0.9, 0.8, 0.7],
        ),
    )
    entry = parse_line(obj).entry
    assert entry is not None
    the_task = through_json(entry_to_task(entry))
    results = the_task["annotations"][0]["result"]
    del results[1]  # the dog is deleted
    results[1]["value"]["x"] += 10  # the second cat moves right by 64 px
    the_task["annotations"][0]["updated_at"] = "2026-05-06T07:08:09.123Z"
    out = entry_to_line(task_to_entry(the_task, ReadOptions(now=NOW)))
    anns = out["bb"]["annotations"]
    assert anns[0] == {"class_id": 0, "top": 10, "left": 10, "width": 101, "height": 51}
    assert anns[1] == {"class_id": 0, "top": 300, "left": 364, "width": 30, "height": 30}
    assert out["bb-metadata"]["objects"] == [{"confidence": 0.9}, {"confidence": 1.0}]
    assert out["bb-metadata"]["class-map"] == {"0": "cat"}
    assert out["bb-metadata"]["creation-date"] == "2026-05-06T07:08:09.123"
    assert out["bb-metadata"]["job-name"] == "my job"


def test_a_new_label_gets_fresh_provenance_and_old_ones_keep_theirs() -> None:
    obj = line("s3://b/i.jpg", cls_attr("sport0", "football", confidence=0.8, job="identify-sport"))
    entry = parse_line(obj).entry
    assert entry is not None
    the_task = through_json(entry_to_task(entry))
    the_task["annotations"][0]["result"][0]["value"]["choices"].append("ball")
    out = entry_to_line(task_to_entry(the_task, ReadOptions(now=NOW, job_name="labeling-job/ours")))
    assert out["sport0-metadata"] == obj["sport0-metadata"]
    new = next(v for k, v in out.items() if k.endswith("-metadata") and v["class-name"] == "ball")
    assert new["job-name"] == "labeling-job/ours"
    assert new["human-annotated"] == "yes"
    assert new["confidence"] == 1.0


def test_deleting_every_label_leaves_a_source_ref_only_line_with_unknown_keys() -> None:
    obj = line("s3://b/i.jpg", cls_attr("a", "x"), det_attr("bb", [("cat", 1, 1, 100, 100)]), note="keep me")
    entry = parse_line(obj).entry
    assert entry is not None
    the_task = through_json(entry_to_task(entry))
    the_task["annotations"][0]["result"] = []
    assert entry_to_line(task_to_entry(the_task, ReadOptions(now=NOW))) == {
        "source-ref": "s3://b/i.jpg",
        "note": "keep me",
    }


def test_ground_truth_annotation_wins_then_the_latest_and_cancelled_ones_are_skipped() -> None:
    the_task = task("s3://b/i.jpg", choices("old"))
    the_task["annotations"] += [
        {
            "id": 2,
            "updated_at": "2027-01-01T00:00:00Z",
            "was_cancelled": True,
            "result": [choices("cancelled")],
        },
        {"id": 3, "updated_at": "2026-12-01T00:00:00Z", "result": [choices("latest")]},
    ]
    assert task_to_entry(the_task, ReadOptions(now=NOW)).labels[0].name == "latest"
    the_task["annotations"][0]["ground_truth"] = True
    assert task_to_entry(the_task, ReadOptions(now=NOW)).labels[0].name == "old"


# ------------------------------------------------------------------------ image URLs and bad tasks


def test_image_urls_map_to_full_source_refs() -> None:
    prefix = ReadOptions(s3_prefix="s3://bucket/imports/", now=NOW)
    assert (
        task_to_entry(task("/data/upload/3/a%20b.jpg"), prefix).source_ref
        == "s3://bucket/imports/data/upload/3/a b.jpg"
    )
    local = task("/data/local-files/?d=cams/frame_0001.jpg")
    assert task_to_entry(local, prefix).source_ref == "s3://bucket/imports/cams/frame_0001.jpg"
    encoded = base64.b64encode(b"s3://bucket/x/frame_0001.jpg").decode()
    resolver = task(f"/tasks/7/resolve/?fileuri={encoded}")
    assert task_to_entry(resolver, ReadOptions(now=NOW)).source_ref == "s3://bucket/x/frame_0001.jpg"


@pytest.mark.parametrize(
    ("the_task", "field", "message"),
    [
        ({"data": {"text": "no image"}}, "data.image", "no image URL"),
        ({"data": {"image": "https://example.invalid/a.jpg"}}, "data.image", "--s3-prefix"),
        ({"data": {"image": "s3://only-bucket"}}, "data.image", "s3://bucket/key"),
        ({"image": "s3://b/k.jpg"}, "data", "no data"),
        (
            task("s3://b/k.jpg", rect("cat", 1, 1, 5, 5, size=None)),
            "annotations[0].result[0].original_width",
            "image size",
        ),
        (
            task("s3://b/k.jpg", {"type": "choices", "from_name": "l", "value": {"choices": "x"}}),
            "annotations[0].result[0].value.choices",
            "list",
        ),
    ],
)
def test_bad_tasks_name_the_field(the_task: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(TaskError, match=message) as err:
        task_to_entry(copy.deepcopy(the_task), ReadOptions(now=NOW))
    assert err.value.field == field
