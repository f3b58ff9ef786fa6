"""COCO object detection -> entries (spec §5.1): the field map, duplicates, round trip, bad input."""

from __future__ import annotations

import copy
import io
from typing import Any

import orjson
import pytest

from converters import codes
from converters.coco import ATTRIBUTE, coco_to_entries
from converters.errors import InputFormatError, Issue, Severity
from converters.jsonio import iter_lines
from converters.manifest import entry_to_line, parse_line
from converters.model import Entry
from converters.validation import ManifestValidator, summarize
from tests.builders import coco, coco_box, coco_image

NOW = "2026-11-24T00:00:00.000000"
PREFIX = "s3://bucket/coco/"


def convert(doc: Any, **options: Any) -> list[Entry]:
    kwargs: dict[str, Any] = {"s3_prefix": PREFIX, "now": NOW, "source": "instances.json"} | options
    return list(coco_to_entries(doc, **kwargs))


def lines_of(doc: Any, **options: Any) -> list[dict[str, Any]]:
    """The manifest lines, through JSON as they are written."""
    return [orjson.loads(orjson.dumps(entry_to_line(e))) for e in convert(doc, **options)]


def echo_doc() -> dict[str, Any]:
    """Two images, two categories, one image without annotations (the doc example's shape)."""
    return coco(
        [
            coco_image(1, "IMG_1186.png", date_captured="2013-11-14 17:02:52", license=1),
            coco_image(2, "IMG_1187.png", (1024, 768)),
            coco_image(3, "empty.png"),
        ],
        [
            coco_box(10, 1, 1, [399, 251, 155, 101], area=15655, iscrowd=0, segmentation=[[1, 2, 3, 4]]),
            coco_box(11, 1, 0, [86, 65, 220, 334]),
            coco_box(12, 2, 1, [10.5, 20.25, 30.75, 40]),
        ],
        {0: "Echo", 1: "Echo Dot", 7: "unused"},
        info={"description": "ignored"},
        licenses=[{"id": 1, "name": "ignored"}],
    )


# ------------------------------------------------------------------------------------------ field map


def test_field_map_of_an_image_with_boxes() -> None:
    first = lines_of(echo_doc(), job_name="my job")[0]
    assert first == {
        "source-ref": "s3://bucket/coco/IMG_1186.png",
        "bounding-box": {
            "image_size": [{"width": 640, "height": 480, "depth": 3}],
            "annotations": [
                {"class_id": 1, "top": 251, "left": 399, "width": 155, "height": 101},
                {"class_id": 0, "top": 65, "left": 86, "width": 220, "height": 334},
            ],
        },
        "bounding-box-metadata": {
            "objects": [{"confidence": 1}, {"confidence": 1}],
            "class-map": {"0": "Echo", "1": "Echo Dot"},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
            "creation-date": "2013-11-14T17:02:52",
            "job-name": "my job",
        },
    }
    assert ATTRIBUTE == "bounding-box"


def test_class_map_holds_only_the_categories_used_on_that_image() -> None:
    lines = lines_of(echo_doc())
    assert lines[0]["bounding-box-metadata"]["class-map"] == {"0": "Echo", "1": "Echo Dot"}
    assert lines[1]["bounding-box-metadata"]["class-map"] == {"1": "Echo Dot"}
    assert lines[2]["bounding-box-metadata"]["class-map"] == {}
    assert all("7" not in x["bounding-box-metadata"]["class-map"] for x in lines)


def test_class_ids_are_the_category_ids_in_numeric_order() -> None:
    doc = coco(
        [coco_image(1, "a.jpg")],
        [coco_box(1, 1, 18, [1, 1, 10, 10]), coco_box(2, 1, 3, [20, 1, 10, 10])],
        {3: "cat", 18: "dog"},
    )
    out = lines_of(doc)[0]
    assert [a["class_id"] for a in out["bounding-box"]["annotations"]] == [18, 3]
    assert list(out["bounding-box-metadata"]["class-map"].items()) == [("3", "cat"), ("18", "dog")]


def test_float_boxes_pass_through_and_integers_stay_integers() -> None:
    second = lines_of(echo_doc())[1]
    ann = second["bounding-box"]["annotations"][0]
    assert (ann["left"], ann["top"], ann["width"], ann["height"]) == (10.5, 20.25, 30.75, 40)
    assert type(ann["height"]) is int
    assert second["bounding-box"]["image_size"] == [{"width": 1024, "height": 768, "depth": 3}]


def test_every_image_gives_a_line_even_without_annotations() -> None:
    lines = lines_of(echo_doc())
    assert [x["source-ref"].rsplit("/", 1)[1] for x in lines] == ["IMG_1186.png", "IMG_1187.png", "empty.png"]
    empty = lines[2]
    assert empty["bounding-box"]["annotations"] == [] and empty["bounding-box-metadata"]["objects"] == []


@pytest.mark.parametrize(
    ("captured", "expected"),
    [
        ("2013-11-14 17:02:52", "2013-11-14T17:02:52"),
        ("2013-11-14T17:02:52", NOW),  # not COCO's format: the conversion time instead
        ("yesterday", NOW),
        (None, NOW),
    ],
)
def test_creation_date_comes_from_date_captured(captured: str | None, expected: str) -> None:
    extra: dict[str, Any] = {} if captured is None else {"date_captured": captured}
    doc = coco([coco_image(1, "a.jpg", **extra)], [coco_box(1, 1, 0, [1, 1, 10, 10])], {0: "cat"})
    assert lines_of(doc)[0]["bounding-box-metadata"]["creation-date"] == expected


def test_job_name_is_optional() -> None:
    meta = lines_of(echo_doc())[0]["bounding-box-metadata"]
    assert "job-name" not in meta


@pytest.mark.parametrize(
    ("prefix", "image", "expected"),
    [
        ("s3://bucket/coco/", {"file_name": "a.jpg"}, "s3://bucket/coco/a.jpg"),
        ("s3://bucket/coco", {"file_name": "/a.jpg"}, "s3://bucket/coco/a.jpg"),
        ("s3://bucket", {"file_name": "cam1/frame_0001.jpg"}, "s3://bucket/cam1/frame_0001.jpg"),
        (
            "s3://bucket/coco/",
            {"file_name": "a.jpg", "coco_url": "s3://other/x/a.jpg"},
            "s3://other/x/a.jpg",
        ),
        (
            "s3://bucket/coco/",
            {"file_name": "a.jpg", "coco_url": "http://images.cocodataset.org/val2017/a.jpg"},
            "s3://bucket/coco/a.jpg",
        ),
    ],
)
def test_source_ref_is_the_prefix_and_file_name_or_an_s3_coco_url(
    prefix: str, image: dict[str, Any], expected: str
) -> None:
    doc = coco([{"id": 1, "width": 640, "height": 480, **image}], [], {})
    assert convert(doc, s3_prefix=prefix)[0].source_ref == expected


# ---------------------------------------------------------------------------------------- duplicates


def test_a_repeated_image_keeps_its_first_occurrence_and_is_reported() -> None:
    doc = coco(
        [coco_image(1, "a.jpg"), coco_image(2, "b.jpg"), coco_image(3, "a.jpg", (800, 600))],
        [coco_box(1, 1, 0, [1, 1, 10, 10]), coco_box(2, 3, 1, [5, 5, 50, 50])],
        {0: "cat", 1: "dog"},
    )
    issues: list[tuple[int, Issue]] = []
    entries = convert(doc, issues=issues)
    assert [e.source_ref for e in entries] == ["s3://bucket/coco/a.jpg", "s3://bucket/coco/b.jpg"]
    assert [b.label for b in entries[0].boxes] == ["cat"]  # the repeat's box is not merged in
    assert entries[0].box_groups[0].image_size.width == 640
    assert len(issues) == 1
    number, issue = issues[0]
    assert (number, issue.code, issue.severity, issue.field) == (
        3,
        codes.DUPLICATE_SOURCE_REF,
        Severity.WARNING,
        "images[2]",
    )
    assert "s3://bucket/coco/a.jpg" in issue.message


def test_same_file_name_in_two_folders_is_two_images() -> None:
    doc = coco([coco_image(1, "cam1/frame_0001.jpg"), coco_image(2, "cam2/frame_0001.jpg")], [], {})
    issues: list[tuple[int, Issue]] = []
    assert len(convert(doc, issues=issues)) == 2
    assert issues == []


def test_an_s3_coco_url_repeating_a_file_name_path_is_a_duplicate() -> None:
    doc = coco(
        [coco_image(1, "a.jpg"), coco_image(2, "other.jpg", coco_url="s3://bucket/coco/a.jpg")], [], {}
    )
    issues: list[tuple[int, Issue]] = []
    assert [e.source_ref for e in convert(doc, issues=issues)] == ["s3://bucket/coco/a.jpg"]
    assert [i.code for _, i in issues] == [codes.DUPLICATE_SOURCE_REF]


# --------------------------------------------------------------------------- import and round trip


def test_written_lines_read_back_to_the_same_boxes() -> None:
    entries = convert(echo_doc(), job_name="j")
    for entry in entries:
        parsed = parse_line(orjson.loads(orjson.dumps(entry_to_line(entry))))
        assert parsed.entry is not None and parsed.issues == []
        back = parsed.entry
        assert back.source_ref == entry.source_ref
        assert [(b.label, b.left, b.top, b.width, b.height, b.class_id) for b in back.boxes] == [
            (b.label, b.left, b.top, b.width, b.height, b.class_id) for b in entry.boxes
        ]
        assert entry_to_line(back) == entry_to_line(entry)


def test_converted_manifest_passes_rekognitions_validation() -> None:
    data = b"".join(orjson.dumps(x) + b"\n" for x in lines_of(echo_doc()))
    validator = ManifestValidator()
    outputs = [orjson.loads(out or b"{}") for out in map(validator.feed, iter_lines(io.BytesIO(data)))]
    result = validator.finish()
    assert (result.total, result.valid, result.ignored, result.invalid) == (3, 2, 1, 0)
    # The image without annotations is valid but not used for training (spec §1.8).
    assert [w["code"] for w in outputs[2]["warnings"]] == [codes.WARNING_NO_ANNOTATIONS]
    assert [w["code"] for w in outputs[2]["bounding-box"]["warnings"]] == [
        codes.WARNING_NO_ATTRIBUTE_ANNOTATIONS
    ]
    assert dict(result.detection_labels) == {"Echo": 1, "Echo Dot": 2}
    test = ManifestValidator()
    for raw in iter_lines(io.BytesIO(data)):
        test.feed(raw)
    assert summarize(result, test.finish()).usable


# ------------------------------------------------------------------------------------------ bad input


def broken(path: str, value: Any) -> dict[str, Any]:
    """``echo_doc()`` with the item at ``path`` (``"annotations.0.bbox"``) replaced or removed (``...``)."""
    doc = copy.deepcopy(echo_doc())
    *parents, last = path.split(".")
    target: Any = doc
    for name in parents:
        target = target[int(name)] if isinstance(target, list) else target[name]
    key: Any = int(last) if isinstance(target, list) else last
    if value is ...:
        del target[key]
    else:
        target[key] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ([echo_doc()], None, "JSON object"),  # a Label Studio export is an array
        (broken("images", ...), "images", "list of objects"),
        (broken("annotations", {"1": {}}), "annotations", "list of objects"),
        (broken("categories", [1, 2]), "categories", "list of objects"),
        (broken("categories.1.name", ...), "categories[1]", "id and a name"),
        (broken("annotations.1.bbox", [86, 65, 220]), "annotations[1].bbox", "[x, y, width, height]"),
        (broken("annotations.1.bbox", [86, 65, "220", 334]), "annotations[1].bbox", "[x, y, width, height]"),
        (broken("annotations.1.bbox", [86, 65, True, 334]), "annotations[1].bbox", "[x, y, width, height]"),
        (broken("annotations.2.category_id", 99), "annotations[2].category_id", "99"),
        (broken("annotations.0.image_id", 42), "annotations[0].image_id", "42"),
        (broken("images.1.file_name", ...), "images[1].file_name", "missing"),
        (broken("images.1.width", "640"), "images[1]", "integers"),
        (broken("images.2.height", ...), "images[2]", "integers"),
    ],
)
def test_bad_input_names_file_and_field(doc: Any, field: str | None, message: str) -> None:
    with pytest.raises(InputFormatError, match=message) as err:
        convert(doc)
    assert err.value.field == field
    assert err.value.source == "instances.json"
    assert str(err.value).startswith("instances.json")
    if field:
        assert f"field {field!r}" in str(err.value)


def test_a_prefix_that_is_not_s3_names_the_image() -> None:
    with pytest.raises(InputFormatError, match="s3://bucket/key") as err:
        convert(echo_doc(), s3_prefix="/local/images/")
    assert err.value.field == "images[0]"


def test_nothing_is_yielded_before_the_whole_file_is_checked() -> None:
    # Annotations are checked before the first image is converted, so a caller never writes half a file.
    entries = coco_to_entries(broken("annotations.2.bbox", None), s3_prefix=PREFIX, now=NOW)
    with pytest.raises(InputFormatError):
        next(entries)
