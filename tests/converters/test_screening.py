"""Manifest-line screening and the 20% rule (converters/screening.py), on raw lines."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from converters import codes
from converters.jsonio import iter_lines
from converters.screening import screen_lines
from tests.builders import cls_attr, det_attr, jsonl, line


def screen(text: str, max_chars: int = 100_000):  # type: ignore[no-untyped-def]
    return screen_lines(iter_lines(io.BytesIO(text.encode()), max_chars=max_chars), max_line_chars=max_chars)


def good(n: int) -> dict[str, object]:
    return line(f"s3://b/{n}.jpg", cls_attr("a", "cat"))


def test_each_kind_of_bad_line_is_rejected_with_its_code_and_the_rest_taken() -> None:
    text = jsonl(good(1), "{not json", good(1), {"source-ref": 5}, good(2)) + "\n"
    out = screen(text)
    assert [e.source_ref for e in out.entries] == ["s3://b/1.jpg", "s3://b/2.jpg"]
    by_line = {r.number: r for r in out.rejected}
    assert by_line[2].codes == (codes.ERROR_INVALID_JSON_LINE,)
    assert by_line[3].codes == (codes.DUPLICATE_SOURCE_REF,) and by_line[3].detail == "s3://b/1.jpg"
    assert 4 in by_line and by_line[4].codes[0] != codes.DUPLICATE_SOURCE_REF
    assert by_line[6].detail == "an empty line"
    assert out.total == 6 and out.invalid == 4
    assert by_line[2].as_json()["message"] == codes.message(codes.ERROR_INVALID_JSON_LINE)


def test_a_line_over_the_limit_names_the_limit() -> None:
    out = screen(jsonl(good(1), line("s3://b/" + "x" * 200 + ".jpg")), max_chars=120)
    assert out.rejected[0].detail == "longer than 120 characters"


def test_an_entry_with_a_content_error_is_taken_and_counts_as_invalid() -> None:
    off_frame = line("s3://b/box.jpg", det_attr("d", [("cat", 600, 10, 100, 50)], size=(640, 480)))
    out = screen(jsonl(off_frame, good(1)))
    assert len(out.entries) == 2 and out.rejected == [] and out.invalid_kept == 1


def test_empty_manifest_is_refused() -> None:
    assert screen("").refusal() == codes.ERROR_EMPTY_MANIFEST


@given(total=st.integers(1, 60), bad=st.integers(0, 60))
def test_refused_exactly_when_more_than_a_fifth_is_invalid(total: int, bad: int) -> None:
    bad = min(bad, total)
    lines = ["{broken"] * bad + [good(n) for n in range(total - bad)]
    refusal = screen(jsonl(*lines)).refusal()
    expected = codes.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST if bad * 5 > total else None
    assert refusal == expected


def test_an_orphan_attribute_is_rejected_as_the_validator_reports_it() -> None:
    boxes = det_attr("bounding-box", [("cat", 10, 10, 100, 50)])
    no_meta = {"source-ref": "s3://b/o.jpg", "bounding-box": boxes["bounding-box"]}
    beside_a_pair = line(
        "s3://b/p.jpg", cls_attr("a", "cat"), **{"bounding-box-metadata": boxes["bounding-box-metadata"]}
    )
    out = screen(jsonl(no_meta, beside_a_pair, good(1), {"source-ref": "s3://b/plain.jpg", "note": "x"}))
    assert [r.codes for r in out.rejected] == [(codes.ERROR_NO_LABEL_ATTRIBUTES,)] * 2
    assert [r.number for r in out.rejected] == [1, 2]
    assert [e.source_ref for e in out.entries] == ["s3://b/1.jpg", "s3://b/plain.jpg"]
