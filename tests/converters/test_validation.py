"""Rekognition's validation rules: every code is triggered and lands where Rekognition places it.

Line codes are checked in the validation-manifest line (``errors``/``warnings`` at line level, in the
label attribute, in ``<attr>-metadata``, in ``annotations[i]``); dataset codes in ``manifest_summary.json``
(``statistics.training``/``statistics.testing`` or the top-level ``errors``). The two tables at the top
are the coverage contract: together with :data:`CLI_ONLY_CODES` they name every code of
``converters/codes.py`` but the S3-edge ones.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pytest

from converters import codes
from converters.errors import Scope, Severity
from converters.imagemeta import ImageMeta
from converters.jsonio import iter_lines
from converters.manifest import parse_line
from converters.validation import (
    DatasetResult,
    LineCheck,
    ManifestValidator,
    Summary,
    check_line,
    summarize,
    use_case_of,
)
from tests.builders import cls_attr, det_attr, line

REF = "s3://bucket/images/a.jpg"
LIMITS = codes.DEFAULT_LIMITS

# Codes the pure core cannot raise, with the test that triggers them through the command line.
CLI_ONLY_CODES = {
    # Needs the file system: a manifest that cannot be opened (the core reads streams handed to it).
    codes.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT: "tests/plugin/test_cli_validate.py",
    # Rekognition's DistributeDatasetEntries code; our split command warns with it, the core only counts.
    codes.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE: "tests/plugin/test_cli_validate.py",
}


# ------------------------------------------------------------------------------------------ helpers


def encode(obj: Any) -> bytes:
    """A manifest line: a dict serialized, a ``str`` taken as the raw text (for broken lines)."""
    return obj.encode() if isinstance(obj, str) else orjson.dumps(obj)


def validate(
    lines: list[Any],
    *,
    limits: codes.Limits = LIMITS,
    meta: dict[str, ImageMeta] | None = None,
    collect_items: bool = False,
) -> tuple[list[dict[str, Any]], DatasetResult]:
    """Validate one dataset's lines as a stream; return the validation-manifest lines and the result."""
    data = b"".join(encode(x) + b"\n" for x in lines)
    validator = ManifestValidator(limits=limits, image_meta=meta, collect_items=collect_items)
    outputs = []
    for raw in iter_lines(io.BytesIO(data), max_chars=limits.max_line_chars):
        out = validator.feed(raw)
        if out is not None:
            outputs.append(orjson.loads(out))
    return outputs, validator.finish()


def summary_of(train: list[Any], test: list[Any] | None = None, *, limits: codes.Limits = LIMITS) -> Summary:
    """``manifest_summary.json`` of a train (and test) manifest; no test means an auto-split."""
    _, train_result = validate(train, limits=limits, collect_items=test is None)
    test_result = None if test is None else validate(test, limits=limits)[1]
    return summarize(train_result, test_result, limits=limits)


def places(out: dict[str, Any], code: str) -> set[str]:
    """Where ``code`` sits in a validation-manifest line, as paths: ``errors``, ``bb.errors``,
    ``bb-metadata.warnings``, ``bb.annotations[1].errors``."""
    found = set()

    def scan(obj: Any, path: str) -> None:
        for key in ("errors", "warnings"):
            if any(e["code"] == code for e in obj.get(key, [])):
                found.add(f"{path}{key}")

    scan(out, "")
    for name, value in out.items():
        if not isinstance(value, dict):
            continue
        scan(value, f"{name}.")
        annotations = value.get("annotations")
        if isinstance(annotations, list):
            for i, ann in enumerate(annotations):
                if isinstance(ann, dict):
                    scan(ann, f"{name}.annotations[{i}].")
    return found


def messages(out: dict[str, Any], code: str) -> set[str]:
    """Every message ``code`` carries anywhere in a validation-manifest line."""
    found: set[str] = set()

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            for key in ("errors", "warnings"):
                found.update(e["message"] for e in obj.get(key, []) if e["code"] == code)
            for value in obj.values():
                walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)

    walk(out)
    return found


def dataset_codes(doc: dict[str, Any]) -> dict[str, set[str]]:
    """The dataset-level codes of a summary: ``{"training": ..., "testing": ..., "top": ...}``."""
    stats = doc["statistics"]
    return {
        "training": {e["code"] for e in stats["training"]["errors"]},
        "testing": {e["code"] for e in stats["testing"]["errors"]},
        "top": {e["code"] for e in doc["errors"]},
    }


def cls_line(n: int, name: str, *, bucket: str = "bucket", attr: str = "label") -> dict[str, Any]:
    """Image ``n`` with one image-level label."""
    return line(f"s3://{bucket}/img{n}.jpg", cls_attr(attr, name))


def cls_lines(*names: str, start: int = 0) -> list[dict[str, Any]]:
    """One image per name, each with that image-level label, numbered from ``start``."""
    return [cls_line(start + i, name) for i, name in enumerate(names)]


def det_line(n: int, *labels: str) -> dict[str, Any]:
    """Image ``n`` with one 50x50 box per label, side by side."""
    boxes = [(name, 10 + 60 * i, 10, 50, 50) for i, name in enumerate(labels)]
    return line(f"s3://bucket/img{n}.jpg", det_attr("bb", boxes))


def unsupported(attr: str, kind: str = "groundtruth/label-verification") -> dict[str, Any]:
    """A label attribute whose metadata ``type`` Rekognition does not train on."""
    meta = cls_attr(attr, "x")[f"{attr}-metadata"] | {"type": kind}
    return {attr: 0, f"{attr}-metadata": meta}


def image_size_as_object() -> dict[str, Any]:
    """The COCO doc sample's mistake (spec §6.11): ``image_size`` an object, not a one-item array."""
    obj = line(REF, det_attr("bb", [("cat", 10, 10, 50, 50)]))
    obj["bb"]["image_size"] = {"width": 640, "height": 480, "depth": 3}
    return obj


def class_map_without(missing: str) -> dict[str, Any]:
    obj = line(REF, det_attr("bb", [("cat", 10, 10, 50, 50), ("dog", 100, 10, 50, 50)]))
    class_map = obj["bb-metadata"]["class-map"]
    obj["bb-metadata"]["class-map"] = {k: v for k, v in class_map.items() if v != missing}
    return obj


# ------------------------------------------------------------------------------ the line-code table


@dataclass(frozen=True)
class LineCase:
    """Manifest lines whose last validation line must carry the code exactly at ``where``."""

    lines: list[Any]
    where: set[str]
    args: tuple[object, ...] = ()
    meta: dict[str, ImageMeta] | None = None


LINE_CASES: dict[str, LineCase] = {
    codes.ERROR_MISSING_SOURCE_REF: LineCase(
        [{"source_ref": REF, **cls_attr("label", "cat")}],  # misspelt key
        {"errors"},
    ),
    codes.ERROR_INVALID_SOURCE_REF_FORMAT: LineCase(
        [line("https://bucket.s3.amazonaws.com/a.jpg", cls_attr("label", "cat"))], {"errors"}
    ),
    codes.ERROR_NO_LABEL_ATTRIBUTES: LineCase(
        # The attribute is misspelt, so its -metadata has no sibling.
        [{"source-ref": REF, "sprot": 0, "sport-metadata": cls_attr("sport", "ball")["sport-metadata"]}],
        {"errors"},
    ),
    codes.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT: LineCase(
        [image_size_as_object()], {"errors", "bb.errors"}, ("bb",)
    ),
    codes.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT: LineCase(
        [line(REF, cls_attr("label", "cat", human="maybe"))], {"errors", "label-metadata.errors"}
    ),
    codes.ERROR_NO_VALID_LABEL_ATTRIBUTES: LineCase([line(REF, unsupported("check"))], {"errors"}),
    codes.ERROR_MISSING_BOUNDING_BOX_CONFIDENCE: LineCase(
        [line(REF, det_attr("bb", [("cat", 10, 10, 50, 50), ("cat", 100, 10, 50, 50)], confidences=[1]))],
        {"errors", "bb-metadata.errors"},
    ),
    codes.ERROR_MISSING_CLASS_MAP_ID: LineCase([class_map_without("dog")], {"errors", "bb-metadata.errors"}),
    codes.ERROR_INVALID_JSON_LINE: LineCase([f'{{"source-ref": "{REF}", "label": 0'], {"errors"}),
    codes.ERROR_INVALID_IMAGE: LineCase(
        [line(REF, cls_attr("label", "cat"))], {"errors"}, meta={REF: ImageMeta(640, 480, format="gif")}
    ),
    codes.ERROR_INVALID_IMAGE_DIMENSION: LineCase(
        [line(REF, det_attr("bb", [("cat", 10, 10, 50, 50)], size=(4097, 480)))], {"errors"}
    ),
    codes.ERROR_INVALID_BOUNDING_BOX: LineCase(
        [line(REF, det_attr("bb", [("cat", 10, 10, 50, 50), ("dog", 600, 10, 50, 50)]))],
        {"bb.annotations[1].errors"},
    ),
    codes.ERROR_BOUNDING_BOX_TOO_SMALL: LineCase(
        # 2 px of a 3000 px image are 0.85 px once training scales it to 1280 px.
        [
            line(
                REF, det_attr("bb", [("speck", 10, 10, 2, 2), ("cat", 100, 100, 500, 500)], size=(3000, 3000))
            )
        ],
        {"bb.annotations[0].errors"},
    ),
    codes.ERROR_TOO_MANY_BOUNDING_BOXES: LineCase(
        [line(REF, det_attr("bb", [("cat", 12 * i, 10, 10, 10) for i in range(51)]))], {"errors", "bb.errors"}
    ),
    codes.ERROR_NO_VALID_ANNOTATIONS: LineCase(
        [line(REF, cls_attr("scene", "kitchen"), det_attr("bb", [("cat", -5, 10, 50, 50)]))],
        {"errors", "bb.errors"},
    ),
    codes.ERROR_UNSUPPORTED_USE_CASE_TYPE: LineCase(
        [line(REF, unsupported("BB"))], {"errors", "BB-metadata.errors"}, ("BB-metadata",)
    ),
    codes.ERROR_INVALID_LABEL_NAME_LENGTH: LineCase(
        [line(REF, cls_attr("label", "x" * 257))], {"errors", "label-metadata.errors"}
    ),
    codes.DUPLICATE_SOURCE_REF: LineCase(
        [line(REF, cls_attr("label", "cat")), line(REF, cls_attr("label", "dog"))], {"errors"}
    ),
    codes.WARNING_UNANNOTATED_RECORD: LineCase([{"source-ref": REF}], {"warnings"}),
    codes.WARNING_NO_ANNOTATIONS: LineCase([line(REF, det_attr("bb", []))], {"warnings"}),
    codes.WARNING_NO_ATTRIBUTE_ANNOTATIONS: LineCase([line(REF, det_attr("bb", []))], {"bb.warnings"}),
}


@pytest.mark.parametrize("code", sorted(LINE_CASES))
def test_line_code_is_placed_where_rekognition_places_it(code: str) -> None:
    case = LINE_CASES[code]
    outputs, _ = validate(case.lines, meta=case.meta)
    out = outputs[-1]
    assert places(out, code) == case.where, out
    assert messages(out, code) == {codes.message(code, *case.args)}


# --------------------------------------------------------------------------- the dataset-code table


def rows_exceeding() -> dict[str, Any]:
    limits = replace(LIMITS, max_rows=3)
    return summary_of(
        cls_lines("a", "b", "a", "b", "a"), cls_lines("a", "b", start=10), limits=limits
    ).document


def manifest_too_large() -> dict[str, Any]:
    train = cls_lines("a", "b", "a", "b")
    size = sum(len(encode(x)) + 1 for x in train)
    limits = replace(LIMITS, max_manifest_bytes=size - 1)
    return summary_of(train, cls_lines("a", "b", start=10), limits=limits).document


def empty_training_manifest() -> dict[str, Any]:
    return summary_of([], cls_lines("a", "b")).document


def too_many_invalid_rows() -> dict[str, Any]:
    bad = [line(f"s3://bucket/bad{i}.jpg", cls_attr("label", "a", human="maybe")) for i in range(2)]
    return summary_of([*cls_lines("a", "b", "a"), *bad], cls_lines("a", "b", start=10)).document


def too_many_records_in_error() -> dict[str, Any]:
    return summary_of([*cls_lines("a", "b", "a"), "{", "not json"], cls_lines("a", "b", start=10)).document


def images_in_two_buckets() -> dict[str, Any]:
    train = [cls_line(0, "a"), cls_line(1, "b"), cls_line(2, "a", bucket="other"), cls_line(3, "b")]
    return summary_of(train, cls_lines("a", "b", start=10)).document


def label_with_one_image_and_no_test_set() -> dict[str, Any]:
    return summary_of(cls_lines("a", "a", "a", "b", "b", "lonely")).document


def one_classification_label() -> dict[str, Any]:
    return summary_of(cls_lines("a", "a", "a"), cls_lines("a", "b", start=10)).document


def too_many_labels() -> dict[str, Any]:
    names = [f"label{i}" for i in range(251)]
    return summary_of(cls_lines(*names), cls_lines(*names[:126], start=1000)).document


def labels_barely_overlapping() -> dict[str, Any]:
    train = cls_lines("a", "b", "c", "d", "a", "b", "c", "d")
    return summary_of(train, cls_lines("a", "e", start=10)).document


def too_few_usable_labels() -> dict[str, Any]:
    # Classification wins (3 lines to 2), so the box labels b and c are not usable.
    train = [*cls_lines("a", "a", "a"), det_line(3, "b"), det_line(4, "c")]
    return summary_of(train, cls_lines("a", "b", start=10)).document


def usable_labels_barely_overlapping() -> dict[str, Any]:
    # All labels overlap 3/5; the usable (image-level) ones only 1/3.
    train = [*cls_lines("a", "b", "e", "a", "b", "e"), det_line(6, "c"), det_line(7, "d")]
    test = [*cls_lines("a", "x", start=10), det_line(12, "c", "d")]
    return summary_of(train, test).document


DATASET_CASES = {
    codes.ERROR_MANIFEST_ROWS_EXCEEDS_MAXIMUM: ("training", rows_exceeding),
    codes.ERROR_MANIFEST_SIZE_TOO_LARGE: ("training", manifest_too_large),
    codes.ERROR_EMPTY_MANIFEST: ("training", empty_training_manifest),
    codes.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST: ("training", too_many_invalid_rows),
    codes.ERROR_TOO_MANY_RECORDS_IN_ERROR: ("training", too_many_records_in_error),
    codes.ERROR_IMAGES_IN_MULTIPLE_S3_BUCKETS: ("training", images_in_two_buckets),
    codes.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_AUTOSPLIT: (
        "training",
        label_with_one_image_and_no_test_set,
    ),
    codes.ERROR_MANIFEST_TOO_FEW_LABELS: ("training", one_classification_label),
    codes.ERROR_MANIFEST_TOO_MANY_LABELS: ("training", too_many_labels),
    codes.ERROR_INSUFFICIENT_LABEL_OVERLAP: ("top", labels_barely_overlapping),
    codes.ERROR_MANIFEST_TOO_FEW_USABLE_LABELS: ("training", too_few_usable_labels),
    codes.ERROR_INSUFFICIENT_USABLE_LABEL_OVERLAP: ("top", usable_labels_barely_overlapping),
}


@pytest.mark.parametrize("code", sorted(DATASET_CASES))
def test_dataset_code_is_reported_for_the_right_set(code: str) -> None:
    where, build = DATASET_CASES[code]
    found = dataset_codes(build())
    assert code in found[where], found
    assert all(code not in place_codes for place, place_codes in found.items() if place != where), found


def test_every_code_but_the_s3_edge_ones_is_triggered() -> None:
    declared = {
        value
        for name, value in vars(codes).items()
        if isinstance(value, str) and name.startswith(("ERROR_", "WARNING_", "DUPLICATE_"))
    }
    assert declared == set(codes.MESSAGES)
    triggered = set(LINE_CASES) | set(DATASET_CASES) | set(CLI_ONLY_CODES)
    assert not set(LINE_CASES) & set(DATASET_CASES)
    assert not (set(LINE_CASES) | set(DATASET_CASES)) & set(CLI_ONLY_CODES)
    assert triggered == declared - codes.S3_EDGE_CODES


# ---------------------------------------------------------------------------------- Rekognition's words

# Spec §2.5, verbatim where the documentation gives a message.
DOCUMENTED_MESSAGES = {
    codes.ERROR_MISSING_SOURCE_REF: "The source-ref key is missing.",
    codes.ERROR_INVALID_SOURCE_REF_FORMAT: "The format of the source-ref value is invalid.",
    codes.ERROR_NO_LABEL_ATTRIBUTES: "No label attributes found.",
    codes.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT: "The format of the label attribute metadata is invalid.",
    codes.ERROR_NO_VALID_LABEL_ATTRIBUTES: "No valid label attributes found.",
    codes.ERROR_MISSING_BOUNDING_BOX_CONFIDENCE: "One or more bounding boxes has a missing confidence value.",
    codes.ERROR_MISSING_CLASS_MAP_ID: "One of more class ids is missing from the class map.",
    codes.ERROR_INVALID_JSON_LINE: "The JSON Line has an invalid format.",
    codes.ERROR_INVALID_IMAGE: "The image is invalid. Check S3 path and/or image properties.",
    codes.ERROR_INVALID_IMAGE_DIMENSION: "The image dimension(s) do not conform to allowed dimensions.",
    codes.ERROR_INVALID_BOUNDING_BOX: "The bounding box has off frame values.",
    codes.ERROR_BOUNDING_BOX_TOO_SMALL: "The height and width of the bounding box is too small.",
    codes.ERROR_TOO_MANY_BOUNDING_BOXES: "There are more bounding boxes than the allowed maximum.",
    codes.ERROR_NO_VALID_ANNOTATIONS: "No valid annotations found.",
    codes.WARNING_UNANNOTATED_RECORD: "Record is unannotated.",
    codes.WARNING_NO_ANNOTATIONS: "No annotations were found.",
    codes.WARNING_NO_ATTRIBUTE_ANNOTATIONS: "No attribute annotations were found.",
    codes.ERROR_MANIFEST_TOO_MANY_LABELS: "The manifest file has too many labels.",
    codes.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST: "The manifest file contains too many invalid rows.",
    codes.ERROR_IMAGES_IN_MULTIPLE_S3_BUCKETS: "The manifest file contains images from multiple S3 buckets.",
    codes.ERROR_EMPTY_MANIFEST: "The manifest file is empty.",
    codes.ERROR_TOO_MANY_RECORDS_IN_ERROR: "The manifest file has too many terminal errors.",
}


@pytest.mark.parametrize("code", sorted(DOCUMENTED_MESSAGES))
def test_messages_are_rekognitions_own(code: str) -> None:
    assert codes.message(code) == DOCUMENTED_MESSAGES[code]


def test_messages_with_a_placeholder_name_the_attribute_as_rekognition_does() -> None:
    out = validate([line(REF, unsupported("BB", "groundtruth/wrongtype"))])[0][0]
    assert out["BB-metadata"]["errors"] == [
        {
            "code": codes.ERROR_UNSUPPORTED_USE_CASE_TYPE,
            "message": "The use case type of the BB-metadata label attribute metadata is unsupported. "
            "Check the type field.",
        }
    ]
    assert out["errors"][-1] == {
        "code": codes.ERROR_NO_VALID_LABEL_ATTRIBUTES,
        "message": "No valid label attributes found.",
    }
    overlap = dataset_codes(labels_barely_overlapping())
    assert overlap["top"] == {codes.ERROR_INSUFFICIENT_LABEL_OVERLAP}
    assert labels_barely_overlapping()["errors"][0]["message"] == (
        "Less than 50% label overlap between the training and testing manifest files."
    )


# ------------------------------------------------------------------------------ per-line rules in depth


def test_invalid_json_line_is_replaced_by_its_error_alone() -> None:
    outputs, result = validate(['{"source-ref": "s3://bucket/a.jpg", "label": 0', "[1, 2]", ""])
    expected = {
        "errors": [
            {"code": codes.ERROR_INVALID_JSON_LINE, "message": codes.message(codes.ERROR_INVALID_JSON_LINE)}
        ]
    }
    assert outputs == [expected, expected, expected]
    assert (result.total, result.invalid, result.terminal) == (3, 3, 3)


def test_line_length_is_counted_in_characters_up_to_100000() -> None:
    base = line(REF, cls_attr("label", "cat"))
    pad = 100_000 - len(orjson.dumps(base | {"pad": ""}).decode())
    exactly = base | {"pad": "é" * pad}  # two bytes each: the limit is in characters
    assert len(orjson.dumps(exactly).decode()) == 100_000
    over = line("s3://bucket/images/b.jpg", cls_attr("label", "cat")) | {"pad": "é" * (pad + 1)}
    outputs, result = validate([exactly, over])
    assert "errors" not in outputs[0]
    assert places(outputs[1], codes.ERROR_INVALID_JSON_LINE) == {"errors"}
    assert "100,000" in outputs[1]["errors"][0]["message"]
    assert (result.valid, result.invalid, result.terminal) == (1, 1, 1)


def test_source_ref_needs_a_lower_case_s3_scheme_a_bucket_and_a_key() -> None:
    for ref in ("S3://bucket/a.jpg", "s3://bucket", "s3://bucket/", "s3:///a.jpg", "bucket/a.jpg", 42):
        out = validate([{"source-ref": ref, **cls_attr("label", "cat")}])[0][0]
        assert places(out, codes.ERROR_INVALID_SOURCE_REF_FORMAT) == {"errors"}, ref


def test_a_line_stopping_error_hides_later_checks() -> None:
    # An off-frame box and an unknown class id: only the class-map error is reported (spec §2.5 precedence).
    obj = class_map_without("dog")
    obj["bb"]["annotations"][0]["left"] = -100
    out = validate([obj])[0][0]
    assert [e["code"] for e in out["errors"]] == [codes.ERROR_MISSING_CLASS_MAP_ID]
    assert "errors" not in out["bb"]["annotations"][0]
    # A missing source-ref stops everything, even a broken label attribute.
    bare = {"image": REF, **cls_attr("label", "cat", human="maybe")}
    assert validate([bare])[0][0]["errors"] == [
        {"code": codes.ERROR_MISSING_SOURCE_REF, "message": "The source-ref key is missing."}
    ]


def test_one_bad_attribute_invalidates_the_whole_line() -> None:
    obj = line(REF, cls_attr("good", "cat"), cls_attr("bad", "dog", human="maybe"))
    out, result = validate([obj])
    assert places(out[0], codes.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT) == {
        "errors",
        "bad-metadata.errors",
    }
    assert (result.valid, result.invalid) == (0, 1)


def test_an_unsupported_attribute_beside_a_valid_one_leaves_the_line_valid() -> None:
    # GT verification chains add attributes of other types (spec §6.5): they are reported, not fatal.
    obj = line(REF, cls_attr("label", "cat"), unsupported("verify"))
    out, result = validate([obj])
    assert places(out[0], codes.ERROR_UNSUPPORTED_USE_CASE_TYPE) == {"errors", "verify-metadata.errors"}
    assert codes.ERROR_NO_VALID_LABEL_ATTRIBUTES not in {e["code"] for e in out[0]["errors"]}
    assert (result.valid, result.invalid, dict(result.classification_labels)) == (1, 0, {"cat": 1})


def test_sagemaker_multilabel_form_is_read_and_a_missing_class_id_reported() -> None:
    meta = {
        "job-name": "labeling-job/bg",
        "confidence-map": {"6": 0.5, "0": 0.5},
        "class-map": {"6": "clouds", "0": "canyon"},
        "type": codes.TYPE_MULTILABEL,
        "human-annotated": "yes",
        "creation-date": "2024-09-27T21:31:32.051349",
    }
    good = {"source-ref": REF, "bg": [6, 0], "bg-metadata": meta}
    bad = {"source-ref": "s3://bucket/b.jpg", "bg": [6, 3], "bg-metadata": meta}
    outputs, result = validate([good, bad])
    assert "errors" not in outputs[0]
    assert dict(result.classification_labels) == {"clouds": 1, "canyon": 1}
    assert places(outputs[1], codes.ERROR_MISSING_CLASS_MAP_ID) == {"errors", "bg-metadata.errors"}


def test_label_name_may_have_256_characters_in_labels_and_class_maps() -> None:
    ok = line(REF, cls_attr("label", "x" * 256), det_attr("bb", [("y" * 256, 10, 10, 50, 50)]))
    long_box = line("s3://bucket/b.jpg", det_attr("bb", [("y" * 257, 10, 10, 50, 50)]))
    outputs, result = validate([ok, long_box])
    assert "errors" not in outputs[0]
    assert places(outputs[1], codes.ERROR_INVALID_LABEL_NAME_LENGTH) == {"errors", "bb-metadata.errors"}
    assert (result.valid, result.invalid) == (1, 1)


def test_label_attribute_values_may_be_integers_or_numeric_strings() -> None:
    lines = [line(f"s3://bucket/{i}.jpg", cls_attr("label", "cat")) for i in range(4)]
    for obj, value in zip(lines, [0, "0", 7, "abc"], strict=True):
        obj["label"] = value
    outputs, result = validate(lines)
    assert [
        codes.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT in {e["code"] for e in o.get("errors", [])}
        for o in outputs
    ] == [
        False,
        False,
        False,
        True,
    ]
    assert result.valid == 3


@pytest.mark.parametrize(
    ("meta", "kind", "code"),
    [
        (ImageMeta(640, 480, format="gif"), "cls", codes.ERROR_INVALID_IMAGE),
        (ImageMeta(640, 480, format="png", bytes=0), "cls", codes.ERROR_INVALID_IMAGE),
        (ImageMeta(640, 480, format="jpeg", bytes=15 * 1024 * 1024 + 1), "cls", codes.ERROR_INVALID_IMAGE),
        (ImageMeta(63, 480), "cls", codes.ERROR_INVALID_IMAGE),
        (ImageMeta(4097, 480), "cls", codes.ERROR_INVALID_IMAGE),
        (ImageMeta(2100, 100), "cls", codes.ERROR_INVALID_IMAGE),  # 21:1
        (ImageMeta(63, 480), "det", codes.ERROR_INVALID_IMAGE_DIMENSION),
        (ImageMeta(4097, 480), "det", codes.ERROR_INVALID_IMAGE_DIMENSION),
        (ImageMeta(640, 480, format="jpg", bytes=15 * 1024 * 1024), "cls", None),
        (ImageMeta(2000, 100, format="png"), "cls", None),  # exactly 20:1
        (ImageMeta(4096, 4096), "det", None),
        (ImageMeta(64, 64), "det", None),
    ],
)
def test_image_rules_from_image_meta(meta: ImageMeta, kind: str, code: str | None) -> None:
    attr = (
        cls_attr("label", "cat") if kind == "cls" else det_attr("bb", [("cat", 1, 1, 40, 40)], size=(64, 64))
    )
    out, result = validate([line(REF, attr)], meta={REF: meta})
    assert [e["code"] for e in out[0].get("errors", [])] == ([code] if code else [])
    assert result.invalid == (1 if code else 0)
    if code:
        assert places(out[0], code) == {"errors"}


def test_image_size_in_the_manifest_is_checked_without_image_meta() -> None:
    for size, bad in (((63, 480), True), ((64, 64), False), ((4096, 4096), False), ((4096, 4097), True)):
        out = validate([line(REF, det_attr("bb", [("cat", 1, 1, 40, 40)], size=size))])[0][0]
        assert (codes.ERROR_INVALID_IMAGE_DIMENSION in {e["code"] for e in out.get("errors", [])}) is bad, (
            size
        )


@pytest.mark.parametrize(
    ("box", "size", "code"),
    [
        ((0, 0, 640, 480), (640, 480), None),  # the whole frame
        ((-1, 0, 50, 50), (640, 480), codes.ERROR_INVALID_BOUNDING_BOX),
        ((0, -1, 50, 50), (640, 480), codes.ERROR_INVALID_BOUNDING_BOX),
        ((591, 0, 50, 50), (640, 480), codes.ERROR_INVALID_BOUNDING_BOX),
        ((0, 431, 50, 50), (640, 480), codes.ERROR_INVALID_BOUNDING_BOX),
        ((10, 10, 1, 50), (640, 480), codes.ERROR_BOUNDING_BOX_TOO_SMALL),  # 1 px is not more than 1 px
        ((10, 10, 2, 2), (640, 480), None),
        ((10, 10, 1, 1), (3000, 3000), codes.ERROR_BOUNDING_BOX_TOO_SMALL),  # the documented example
        ((10, 10, 3, 3), (3000, 3000), None),  # 1.28 px after the downscale
    ],
)
def test_box_rules(box: tuple[int, int, int, int], size: tuple[int, int], code: str | None) -> None:
    obj = line(REF, det_attr("bb", [("cat", *box), ("dog", 5, 5, 30, 30)], size=size))
    out, result = validate([obj])
    assert [e["code"] for e in out[0]["bb"]["annotations"][0].get("errors", [])] == ([code] if code else [])
    assert "errors" not in out[0]["bb"]["annotations"][1]
    # A bad box invalidates only itself: the line trains with the other one.
    assert (result.valid, dict(result.detection_labels)) == (1, {"dog": 1} if code else {"cat": 1, "dog": 1})


def test_fifty_boxes_are_allowed_and_fifty_one_are_not() -> None:
    fifty = line(REF, det_attr("bb", [("cat", 12 * i, 10, 10, 10) for i in range(50)]))
    fifty_one = line("s3://bucket/b.jpg", det_attr("bb", [("cat", 12 * i, 10, 10, 10) for i in range(51)]))
    outputs, result = validate([fifty, fifty_one])
    assert "errors" not in outputs[0]
    assert [e["code"] for e in outputs[1]["errors"]] == [
        codes.ERROR_TOO_MANY_BOUNDING_BOXES,
        codes.ERROR_NO_VALID_LABEL_ATTRIBUTES,
    ]
    assert (result.valid, result.invalid, result.boxes_per_label["cat"]) == (1, 1, 50)


def test_no_valid_annotations_drops_the_attribute_and_a_line_with_nothing_else() -> None:
    alone = line(REF, det_attr("bb", [("cat", 600, 10, 50, 50)]))
    out, result = validate([alone])
    assert [e["code"] for e in out[0]["errors"]] == [
        codes.ERROR_NO_VALID_ANNOTATIONS,
        codes.ERROR_NO_VALID_LABEL_ATTRIBUTES,
    ]
    assert out[0]["bb"]["errors"] == [
        {"code": codes.ERROR_NO_VALID_ANNOTATIONS, "message": "No valid annotations found."}
    ]
    assert places(out[0], codes.ERROR_INVALID_BOUNDING_BOX) == {"bb.annotations[0].errors"}
    assert (result.valid, result.invalid, result.terminal) == (0, 1, 0)


def test_unlabeled_lines_are_warnings_counted_as_ignored() -> None:
    lines = [{"source-ref": REF}, line("s3://bucket/b.jpg", det_attr("bb", [])), cls_line(2, "cat")]
    outputs, result = validate(lines)
    assert outputs[0] == {
        "source-ref": REF,
        "warnings": [{"code": codes.WARNING_UNANNOTATED_RECORD, "message": "Record is unannotated."}],
    }
    assert "errors" not in outputs[1] and "warnings" not in outputs[1]["bb-metadata"]
    assert (result.total, result.valid, result.invalid, result.ignored) == (3, 1, 0, 1 + 1)
    assert result.error_lines == []


def test_rekognitions_own_keys_on_a_dataset_entry_are_not_label_attributes() -> None:
    # An unlabeled entry as ListDatasetEntries returns it (spec §1.2, §1.9).
    entry = {"source-ref": REF, "cl-metadata": {"is_labeled": False}}
    out, result = validate([entry])
    assert [w["code"] for w in out[0]["warnings"]] == [codes.WARNING_UNANNOTATED_RECORD]
    assert "errors" not in out[0]
    assert result.ignored == 1
    parsed = parse_line(entry)
    assert parsed.entry is not None and parsed.entry.extra == {"cl-metadata": {"is_labeled": False}}


def test_check_line_is_pure_and_the_validator_adds_only_what_needs_order() -> None:
    raw = next(iter_lines(io.BytesIO(encode(cls_line(0, "cat")) + b"\n")))
    first, second = check_line(raw), check_line(raw)
    assert first == second
    assert isinstance(first, LineCheck)
    assert (first.has_error, first.source_ref, first.labeled, first.class_labels) == (
        False,
        "s3://bucket/img0.jpg",
        True,
        ("cat",),
    )
    validator = ManifestValidator()
    assert validator.add(first) == first.output
    duplicate = validator.add(second._replace(number=2))
    assert duplicate is not None
    assert places(orjson.loads(duplicate), codes.DUPLICATE_SOURCE_REF) == {"errors"}


def test_issues_carry_scope_severity_and_field() -> None:
    obj = class_map_without("dog")
    issue = parse_line(obj).issues[0]
    assert (issue.code, issue.scope, issue.severity, issue.attribute, issue.field) == (
        codes.ERROR_MISSING_CLASS_MAP_ID,
        Scope.METADATA,
        Severity.ERROR,
        "bb",
        "bb-metadata.class-map",
    )


# ------------------------------------------------------------------------------- duplicate source-refs


def test_a_later_duplicate_is_dropped_and_the_first_line_kept() -> None:
    lines = [cls_line(0, "cat"), cls_line(1, "dog"), cls_line(0, "owl"), cls_line(0, "eel")]
    outputs, result = validate(lines)
    assert outputs[0] == cls_line(0, "cat")
    assert [places(o, codes.DUPLICATE_SOURCE_REF) for o in outputs] == [set(), set(), {"errors"}, {"errors"}]
    assert outputs[2]["label-metadata"]["class-name"] == "owl"  # the line is kept whole, with the error
    assert (result.total, result.valid, result.invalid, result.terminal) == (4, 2, 2, 2)
    assert result.error_lines == [3, 4]
    assert dict(result.classification_labels) == {"cat": 1, "dog": 1}


def test_a_line_repeating_an_invalid_line_is_not_a_duplicate() -> None:
    lines = [line(REF, cls_attr("label", "cat", human="maybe")), line(REF, cls_attr("label", "cat"))]
    outputs, result = validate(lines)
    assert places(outputs[1], codes.DUPLICATE_SOURCE_REF) == set()
    assert (result.valid, result.invalid) == (1, 1)


def test_an_unlabeled_line_still_claims_its_source_ref() -> None:
    outputs, result = validate([{"source-ref": REF}, line(REF, cls_attr("label", "cat"))])
    assert places(outputs[1], codes.DUPLICATE_SOURCE_REF) == {"errors"}
    assert (result.valid, result.ignored, result.invalid) == (0, 1, 1)


# ------------------------------------------------------------------------------- the 20% invalid rule


@pytest.mark.parametrize(
    ("bad", "good", "fails"),
    [(0, 5, False), (1, 4, False), (2, 8, False), (2, 7, True), (2, 3, True), (3, 0, True)],
)
def test_more_than_twenty_percent_invalid_lines_fail_the_dataset(bad: int, good: int, fails: bool) -> None:
    lines = [*[cls_line(i, "ab"[i % 2]) for i in range(good)], *["{broken"] * bad]
    _, result = validate(lines)
    assert (codes.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST in {e.code for e in result.errors}) is fails


def test_invalid_lines_of_every_cause_add_up_and_warnings_do_not_count() -> None:
    lines = [
        *cls_lines("a", "b", "a", "b", "a", "b"),
        *[{"source-ref": f"s3://bucket/unlabeled{i}.jpg"} for i in range(4)],  # 4 warnings: ignored
        "{",  # broken JSON
        line("s3://bucket/x.jpg", det_attr("bb", [("cat", 600, 10, 50, 50)])),  # no valid box
    ]
    _, result = validate(lines)
    assert (result.total, result.valid, result.ignored, result.invalid) == (12, 6, 4, 2)
    assert codes.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST not in {e.code for e in result.errors}  # 2/12
    _, result = validate([*lines, "", line("s3://bucket/y.jpg", cls_attr("l", "c", human="?"))])
    assert (result.total, result.invalid) == (14, 4)  # the blank line counts
    assert codes.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST in {e.code for e in result.errors}  # 4/14
    assert result.error_lines == [11, 12, 13, 14]


def test_terminal_errors_are_counted_apart_from_other_invalid_lines() -> None:
    label_errors = [line(f"s3://bucket/x{i}.jpg", cls_attr("l", "c", human="?")) for i in range(3)]
    _, result = validate([*cls_lines("a", "b", "a", "b", "a", "b", "a"), *label_errors])
    found = {e.code for e in result.errors}
    assert codes.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST in found  # 3/10
    assert codes.ERROR_TOO_MANY_RECORDS_IN_ERROR not in found
    assert result.terminal == 0


# ------------------------------------------------------------------------ file-level limits in the core


def test_only_lines_up_to_the_row_limit_are_validated() -> None:
    limits = replace(LIMITS, max_rows=3)
    outputs, result = validate(cls_lines("a", "b", "a", "b"), limits=limits)
    assert len(outputs) == 3 and result.total == 3
    assert [e.code for e in result.errors] == [codes.ERROR_MANIFEST_ROWS_EXCEEDS_MAXIMUM]
    _, at_limit = validate(cls_lines("a", "b", "a"), limits=limits)
    assert at_limit.errors == []


def test_manifest_size_limit_counts_bytes_with_line_breaks() -> None:
    lines = cls_lines("a", "b")
    size = sum(len(encode(x)) + 1 for x in lines)
    _, at_limit = validate(lines, limits=replace(LIMITS, max_manifest_bytes=size))
    assert at_limit.errors == []
    _, over = validate(lines, limits=replace(LIMITS, max_manifest_bytes=size - 1))
    assert [e.code for e in over.errors] == [codes.ERROR_MANIFEST_SIZE_TOO_LARGE]


# ------------------------------------------------------------------------------------- one bucket


def test_all_images_must_be_in_one_bucket() -> None:
    same = [cls_line(i, "ab"[i % 2]) for i in range(4)]
    assert validate(same)[1].errors == []
    # A bucket whose name starts like another is still another bucket.
    lookalike = [*same, cls_line(9, "a", bucket="bucket2"), cls_line(10, "b")]
    _, result = validate(lookalike)
    assert [e.code for e in result.errors] == [codes.ERROR_IMAGES_IN_MULTIPLE_S3_BUCKETS]
    assert result.buckets == {"bucket", "bucket2"}


def test_bucket_rule_applies_per_set() -> None:
    train = cls_lines("a", "b", "a", "b")
    test = [cls_line(20, "a", bucket="testbucket"), cls_line(21, "b", bucket="testbucket")]
    assert dataset_codes(summary_of(train, test).document) == {
        "training": set(),
        "testing": set(),
        "top": set(),
    }


# --------------------------------------------------------------------------------------- label counts


def test_detection_needs_one_label_and_classification_two() -> None:
    detection = summary_of([det_line(0, "cat"), det_line(1, "cat")], [det_line(10, "cat")])
    assert detection.usable, detection.document
    assert detection.document["statistics"]["training"]["use_case"] == codes.USE_CASE_DETECTION
    classification = summary_of(cls_lines("cat", "cat"), cls_lines("cat", start=10))
    assert not classification.usable
    assert dataset_codes(classification.document) == {
        "training": {codes.ERROR_MANIFEST_TOO_FEW_LABELS},
        "testing": {codes.ERROR_MANIFEST_TOO_FEW_LABELS},
        "top": set(),
    }


def test_at_most_250_labels_per_set() -> None:
    names = [f"label{i}" for i in range(250)]
    at_limit = summary_of(cls_lines(*names), cls_lines(*names, start=1000))
    assert at_limit.usable, at_limit.document
    over = summary_of(cls_lines(*names, "one-more"), cls_lines(*names, "one-more", start=1000))
    assert dataset_codes(over.document)["training"] == {codes.ERROR_MANIFEST_TOO_MANY_LABELS}
    assert dataset_codes(over.document)["testing"] == {codes.ERROR_MANIFEST_TOO_MANY_LABELS}


def test_label_limits_come_from_the_limits_given() -> None:
    limits = replace(LIMITS, max_labels=2)
    doc = summary_of(cls_lines("a", "b", "c"), cls_lines("a", "b", start=10), limits=limits).document
    assert dataset_codes(doc)["training"] == {codes.ERROR_MANIFEST_TOO_MANY_LABELS}
    assert dataset_codes(doc)["testing"] == set()


def test_invalid_lines_labels_do_not_count() -> None:
    train = [*cls_lines("a", "a", "a", "a"), line("s3://bucket/x.jpg", cls_attr("label", "b", human="?"))]
    doc = summary_of(train, cls_lines("a", "b", start=10)).document
    assert codes.ERROR_MANIFEST_TOO_FEW_LABELS in dataset_codes(doc)["training"]


def test_use_case_is_the_kind_with_more_valid_lines() -> None:
    _, mostly_boxes = validate([cls_line(0, "a"), det_line(1, "b"), det_line(2, "c")])
    assert use_case_of(mostly_boxes) == codes.USE_CASE_DETECTION
    _, tie = validate([cls_line(0, "a"), det_line(1, "b")])
    assert use_case_of(tie) == codes.USE_CASE_CLASSIFICATION
    _, nothing = validate([{"source-ref": REF}])
    _, test = validate([det_line(5, "x")])
    assert use_case_of(nothing) == codes.USE_CASE_NOT_DETERMINED
    assert use_case_of(nothing, test) == codes.USE_CASE_DETECTION  # an unlabeled train set defers to test


def test_mixed_lines_train_one_use_case_and_count_only_its_labels() -> None:
    # Spec §1.6: valid lines of the other kind are filtered out; their labels are not usable.
    train = [*cls_lines("a", "b", "a", "b"), det_line(4, "cat")]
    test = [*cls_lines("a", "b", start=10), det_line(12, "cat")]
    summary = summary_of(train, test)
    assert summary.usable, summary.document
    assert summary.document["statistics"]["training"]["use_case"] == codes.USE_CASE_CLASSIFICATION


def test_autosplit_counts_labels_after_the_split() -> None:
    summary = summary_of(cls_lines(*"aaaaabbbbb"))
    assert summary.usable, summary.document
    assert summary.autosplit is not None
    testing = summary.document["statistics"]["testing"]
    assert testing["total_json_lines"] == 2 == sum(side == "test" for side in summary.autosplit.values())
    short = summary_of(cls_lines("a", "a", "a", "b", "b", "lonely"))
    assert (
        codes.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_AUTOSPLIT in dataset_codes(short.document)["training"]
    )
    assert not short.usable


# ----------------------------------------------------------------------------- train/test label overlap


@pytest.mark.parametrize(
    ("train_labels", "test_labels", "fails"),
    [
        ("abcd", "ab", False),  # 2/4 is exactly 50%
        ("abcd", "a", True),  # 1/4
        ("abcd", "aexyz", True),  # test's own labels do not help
        ("ab", "abcdefgh", False),  # overlap is measured against the training labels
    ],
)
def test_at_least_half_the_training_labels_must_be_in_test(
    train_labels: str, test_labels: str, fails: bool
) -> None:
    train = cls_lines(*train_labels, *train_labels)
    test = cls_lines(*test_labels, *("z" if len(test_labels) == 1 else ""), start=100)
    found = dataset_codes(summary_of(train, test).document)
    assert (codes.ERROR_INSUFFICIENT_LABEL_OVERLAP in found["top"]) is fails, found
    assert codes.ERROR_INSUFFICIENT_LABEL_OVERLAP not in found["training"] | found["testing"]


def test_usable_overlap_is_checked_only_when_the_plain_overlap_passes() -> None:
    doc = usable_labels_barely_overlapping()
    assert dataset_codes(doc)["top"] == {codes.ERROR_INSUFFICIENT_USABLE_LABEL_OVERLAP}
    assert doc["errors"][0]["message"] == (
        "Less than 50% usable label overlap between the training and testing manifest files."
    )


# ------------------------------------------------------------------------------------------ the summary


def test_summary_has_rekognitions_shape_and_one_based_line_indices() -> None:
    train = [*cls_lines("a", "b", "a", "b", "a", "b", "a", "b", "a"), "{"]
    summary = summary_of(train, [*cls_lines("a", "b", start=20), {"source-ref": "s3://bucket/u.jpg"}])
    assert summary.usable
    assert summary.document == {
        "statistics": {
            "training": {
                "use_case": codes.USE_CASE_CLASSIFICATION,
                "total_json_lines": 10,
                "valid_json_lines": 9,
                "invalid_json_lines": 1,
                "ignored_json_lines": 0,
                "error_json_line_indices": [10],
                "errors": [],
            },
            "testing": {
                "use_case": codes.USE_CASE_CLASSIFICATION,
                "total_json_lines": 3,
                "valid_json_lines": 2,
                "invalid_json_lines": 0,
                "ignored_json_lines": 1,
                "error_json_line_indices": [],
                "errors": [],
            },
        },
        "errors": [],
    }


def orphaned_lines() -> list[dict[str, Any]]:
    """AWS's own example of ERROR_NO_LABEL_ATTRIBUTES and its kin: one half of a pair missing or misspelt."""
    boxes = det_attr("bounding-box", [("Echo", 399, 251, 155, 101)])
    label = cls_attr("label", "cat")
    return [
        {"source-ref": REF, "bounding-box": boxes["bounding-box"]},  # no bounding-box-metadata
        {"source-ref": REF, "bounding-box-metadata": boxes["bounding-box-metadata"]},  # no bounding-box
        {
            "source-ref": REF,
            "bounding-box": boxes["bounding-box"],
            "bounding-box-metdata": {"type": codes.TYPE_DETECTION},
        },
        {"source-ref": REF, "label": 1},  # an image-level attribute without its metadata
        {"source-ref": REF, "label": "0", "label_metadata": label["label-metadata"]},
        {"source-ref": REF, "labels": [0, 1]},  # the multi-label form without its metadata
        line(REF, label, **{"bounding-box": boxes["bounding-box"]}),  # an orphan beside a proper pair
        line(REF, boxes, **{"label-metadata": label["label-metadata"]}),
        {"source-ref": REF, "cl-metadata": label["label-metadata"]},  # not Rekognition's cl-metadata
    ]


def test_an_orphan_attribute_or_metadata_is_no_label_attributes_not_an_unannotated_record() -> None:
    lines = orphaned_lines()
    outputs, result = validate(lines)
    for out in outputs:
        assert out["errors"] == [
            {"code": codes.ERROR_NO_LABEL_ATTRIBUTES, "message": "No label attributes found."}
        ]
        assert "warnings" not in out
    assert (result.total, result.valid, result.invalid, result.ignored) == (len(lines), 0, len(lines), 0)
    assert result.terminal == 0 and result.error_lines == list(range(1, len(lines) + 1))
    parsed = parse_line(lines[0])
    assert parsed.entry is None and parsed.issues[0].field == "bounding-box"


def test_unknown_keys_that_are_no_label_attribute_are_kept() -> None:
    unknown = {"note": "free text", "score": 0.5, "flag": True, "tags": [], "more": {"a": 1}}
    out, result = validate(
        [line(REF, **unknown), line("s3://bucket/b.jpg", cls_attr("label", "cat"), **unknown)]
    )
    assert [w["code"] for w in out[0]["warnings"]] == [codes.WARNING_UNANNOTATED_RECORD]
    assert "errors" not in out[1] and (result.valid, result.ignored, result.invalid) == (1, 1, 0)
    parsed = parse_line(line(REF, cls_attr("label", "cat"), **unknown))
    assert parsed.entry is not None and parsed.entry.extra == unknown
