"""``line_issues`` (every per-line rule on one line) and ``dataset_entry`` (a line as ListDatasetEntries
returns it)."""

from __future__ import annotations

from converters import codes
from converters.errors import Severity
from converters.validation import dataset_entry, line_issues
from tests.builders import cls_attr, det_attr, line

REF = "s3://bucket/images/a.jpg"


def codes_of(issues: list) -> list[str]:  # type: ignore[type-arg]
    return [i.code for i in issues]


def test_a_valid_line_has_no_issue_and_its_entry() -> None:
    entry, issues = line_issues(line(REF, cls_attr("animal", "cat")))
    assert issues == [] and entry is not None and entry.label_names == ["cat"]


def test_an_unlabeled_line_is_a_warning_not_an_error() -> None:
    entry, issues = line_issues(line(REF))
    assert entry is not None and not entry.is_labeled
    assert codes_of(issues) == [codes.WARNING_UNANNOTATED_RECORD]
    assert issues[0].severity is Severity.WARNING


def test_bad_boxes_are_dropped_from_the_entry_and_reported() -> None:
    obj = line(REF, det_attr("bb", [("cat", 10, 10, 50, 50), ("dog", 3, 3, 1, 1), ("cat", 600, 0, 100, 10)]))
    entry, issues = line_issues(obj)
    assert entry is not None and [b.label for b in entry.boxes] == ["cat"]
    assert codes_of(issues) == [codes.ERROR_BOUNDING_BOX_TOO_SMALL, codes.ERROR_INVALID_BOUNDING_BOX]
    assert [i.annotation for i in issues] == [1, 2]


def test_a_line_left_without_a_valid_box_has_no_entry() -> None:
    entry, issues = line_issues(line(REF, det_attr("bb", [("dog", 3, 3, 1, 1)])))
    assert entry is None
    assert codes_of(issues) == [
        codes.ERROR_BOUNDING_BOX_TOO_SMALL,
        codes.ERROR_NO_VALID_ANNOTATIONS,
        codes.ERROR_NO_VALID_LABEL_ATTRIBUTES,
    ]


def test_structural_errors_stop_the_line() -> None:
    entry, issues = line_issues({"animal": 0})
    assert entry is None and codes_of(issues) == [codes.ERROR_MISSING_SOURCE_REF]
    entry, issues = line_issues({"source-ref": "http://x/a.jpg"})
    assert entry is None and codes_of(issues) == [codes.ERROR_INVALID_SOURCE_REF_FORMAT]


def test_dataset_entry_marks_labeled_and_adds_no_errors_to_a_clean_line() -> None:
    obj = line(REF, cls_attr("animal", "cat"))
    out = dataset_entry(obj, [], labeled=True)
    assert out == {**obj, "cl-metadata": {"is_labeled": True}}
    assert "cl-metadata" not in obj  # the stored line is not changed
    assert dataset_entry(line(REF), line_issues(line(REF))[1], labeled=False) == {
        "source-ref": REF,
        "cl-metadata": {"is_labeled": False},
    }  # warnings are not errors


def test_dataset_entry_places_errors_on_the_line_and_in_the_attribute_metadata() -> None:
    obj = line(REF, det_attr("bb", [("cat", 10, 10, 50, 50), ("dog", 3, 3, 1, 1)]))
    _, issues = line_issues(obj)
    out = dataset_entry(obj, issues, labeled=True)
    error = {
        "code": codes.ERROR_BOUNDING_BOX_TOO_SMALL,
        "message": codes.message(codes.ERROR_BOUNDING_BOX_TOO_SMALL),
    }
    assert out["cl-errors"] == [error]
    assert out["bb-metadata"]["cl-errors"] == [error]
    assert "cl-errors" not in obj["bb-metadata"]  # copied, not changed in place
    assert out["cl-metadata"] == {"is_labeled": True}


def test_dataset_entry_keeps_line_scoped_errors_on_the_line_only() -> None:
    obj = line(REF, det_attr("bb", [("dog", 3, 3, 1, 1)]))
    _, issues = line_issues(obj)
    out = dataset_entry(obj, issues, labeled=True)
    assert [e["code"] for e in out["cl-errors"]] == codes_of(issues)
    assert [e["code"] for e in out["bb-metadata"]["cl-errors"]] == [
        codes.ERROR_BOUNDING_BOX_TOO_SMALL,
        codes.ERROR_NO_VALID_ANNOTATIONS,
    ]
