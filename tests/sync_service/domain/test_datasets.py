"""The dataset operations' own rules, without Label Studio: which manifest lines are rejected or fail the
import, and the pagination tokens."""

from __future__ import annotations

from typing import Any

import pytest

from converters import codes
from converters.jsonio import RawLine
from converters.model import Entry
from sync_service.domain.datasets import (
    DatasetError,
    Datasets,
    ImportResult,
    _make_token,
    _read_token,
)
from sync_service.domain.projects import ProjectInfo
from tests.builders import cls_attr, det_attr, jsonl, line

INFO = ProjectInfo(label_studio_project_id=1, title="Pets", slug="pets")


class Recorder(Datasets):
    """Datasets whose import only records what it was given."""

    def __init__(self, **options: Any) -> None:
        super().__init__(None, **options)  # type: ignore[arg-type]
        self.imported: list[Entry] = []

    def import_entries(
        self, info: ProjectInfo, dataset: str, entries: Any, *, replace_existing: bool
    ) -> ImportResult:
        self.imported = list(entries)
        return ImportResult(added=len(self.imported))


def raw(text: str) -> list[RawLine]:
    return [RawLine(n, data.encode(), False, len(data)) for n, data in enumerate(text.splitlines(), start=1)]


def ref(i: int) -> str:
    return f"s3://b/{i}.jpg"


def test_bad_lines_are_rejected_with_their_codes_and_the_rest_imported() -> None:
    good = [line(ref(i), cls_attr("a", "cat")) for i in range(16)]
    text = jsonl(*good, "{broken", {"a": 0}, line(ref(0), cls_attr("a", "dog")), {"source-ref": "ftp://x"})
    ops = Recorder()
    result = ops.from_manifest_lines(INFO, "train", raw(text), source="m")
    assert [e.source_ref for e in ops.imported] == [ref(i) for i in range(16)]
    assert ops.imported[0].label_names == ["cat"]  # the first line of an image wins
    assert [(r["line"], r["code"]) for r in result.rejected] == [
        (17, codes.ERROR_INVALID_JSON_LINE),
        (18, codes.ERROR_MISSING_SOURCE_REF),
        (19, codes.DUPLICATE_SOURCE_REF),
        (20, codes.ERROR_INVALID_SOURCE_REF_FORMAT),
    ]
    assert result.rejected[2]["detail"] == ref(0)
    assert result.as_json()["rejected"] == 4


def test_lines_with_content_errors_are_imported_as_they_are() -> None:
    tiny = line(ref(1), det_attr("bb", [("cat", 10, 10, 50, 50), ("cat", 3, 3, 1, 1)]))
    ops = Recorder()
    result = ops.from_manifest_lines(INFO, "train", raw(jsonl(tiny, line(ref(2)))), source="m")
    assert result.rejected == []
    assert len(ops.imported[0].boxes) == 2  # the too-small box stays: its error shows in the entries


def test_more_than_a_fifth_bad_fails_the_whole_import() -> None:
    ops = Recorder()
    good = [line(ref(i), cls_attr("a", "cat")) for i in range(4)]
    exactly_a_fifth = jsonl(*good, "nope")
    assert ops.from_manifest_lines(INFO, "train", raw(exactly_a_fifth), source="m").added == 4
    # A line whose boxes are all invalid is imported, but counts as an invalid row.
    no_valid_box = line(ref(9), det_attr("bb", [("cat", 3, 3, 1, 1)]))
    ops.imported = []
    with pytest.raises(DatasetError) as caught:
        ops.from_manifest_lines(INFO, "train", raw(jsonl(*good, "nope", no_valid_box)), source="m")
    assert caught.value.code == codes.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST
    assert caught.value.exception == "InvalidParameterException"
    assert ops.imported == []  # nothing at all


def test_an_empty_manifest_is_refused() -> None:
    with pytest.raises(DatasetError) as caught:
        Recorder().from_manifest_lines(INFO, "train", [], source="m")
    assert caught.value.code == codes.ERROR_EMPTY_MANIFEST


def test_a_blank_or_too_long_line_is_an_invalid_json_line() -> None:
    lines = [
        *raw(jsonl(*(line(ref(i)) for i in range(8)))),
        RawLine(9, b"", True, 200_000),
        RawLine(10, b"  ", False, 2),
    ]
    result = Recorder().from_manifest_lines(INFO, "train", lines, source="m")
    assert [(r["line"], r["code"]) for r in result.rejected] == [
        (9, codes.ERROR_INVALID_JSON_LINE),
        (10, codes.ERROR_INVALID_JSON_LINE),
    ]


def test_update_entries_checks_the_payload_size() -> None:
    with pytest.raises(DatasetError, match="GroundTruth"):
        Recorder().update_entries(INFO, "train", b"")


def test_pagination_tokens_belong_to_their_filters() -> None:
    filters = b'[null,true,null,null,"train"]'
    token = _make_token(40, filters)
    assert _read_token(token, filters) == 40
    assert _read_token(None, filters) == 0 and _read_token("", filters) == 0
    for bad, other in ((token, b"[]"), ("garbage!", filters), (_make_token(-1, filters), filters)):
        with pytest.raises(DatasetError) as caught:
            _read_token(bad, other)
        assert caught.value.exception == "InvalidPaginationTokenException"
