"""CSV ``image,label,...`` -> image-level entries (spec §5.2, AWS's csv-to-manifest example)."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest

from converters import codes
from converters.csvfile import CsvRow, format_rows, read_rows, row_to_entry, split_duplicates
from converters.errors import InputFormatError
from converters.jsonio import iter_lines
from converters.manifest import entry_to_line, parse_line
from converters.validation import ManifestValidator

NOW = "2026-11-24T00:00:00.000000"
PREFIX = "s3://docexamplebucket1/circuitboard/train/"

# AWS's own fixture (aws-doc-sdk-examples, python/example_code/rekognition/test/test_csvs/test_no_s3.csv):
# 15 images and 33 labels, with an empty cell on the first row.
AWS_NO_S3 = """\
camellia1.jpg,,camellia,with_leaves
camellia2.jpg,camellia,with_leaves
camellia3.jpg,camellia,without_leaves
helleborus1.jpg,helleborus,without_leaves,not_fully_grown
helleborus2.jpg,helleborus,with_leaves,fully_grown
helleborus3.jpg,helleborus,with_leaves,fully_grown
jonquil1.jpg,jonquil,with_leaves
jonquil2.jpg,jonquil,with_leaves
jonquil3.jpg,jonquil,with_leaves
jonquil4.jpg,jonquil,without_leaves
mauve_honey_myrtle1.jpg,mauve_honey_myrtle,without_leaves
mauve_honey_myrtle2.jpg,mauve_honey_myrtle,with_leaves
mauve_honey_myrtle3.jpg,mauve_honey_myrtle,with_leaves
mediterranean_spurge1.jpg,mediterranean_spurge,with_leaves
mediterranean_spurge2.jpg,mediterranean_spurge,without_leaves"""


def rows_of(text: str) -> list[CsvRow]:
    return list(read_rows(io.StringIO(text, newline=""), source="labels.csv"))


def lines_of(text: str, prefix: str | None = PREFIX) -> list[dict[str, Any]]:
    entries = [row_to_entry(r, s3_prefix=prefix, now=NOW, source="labels.csv") for r in rows_of(text)]
    return [orjson.loads(orjson.dumps(entry_to_line(e))) for e in entries]


# ------------------------------------------------------------------------------------------ field map


def test_awss_fixture_gives_15_images_and_33_labels() -> None:
    lines = lines_of(AWS_NO_S3)
    assert len(lines) == 15
    assert sum(1 for x in lines for key in x if key.endswith("-metadata")) == 33
    assert lines[0]["source-ref"] == PREFIX + "camellia1.jpg"
    assert [k for k in lines[0] if not k.endswith("-metadata")] == ["source-ref", "camellia", "with_leaves"]


def test_each_label_is_an_attribute_named_after_it() -> None:
    first = lines_of("camellia1.jpg,camellia\n")[0]
    # The line AWS's script writes for this row (spec §1.3), with our conversion time.
    assert first == {
        "source-ref": PREFIX + "camellia1.jpg",
        "camellia": 1,
        "camellia-metadata": {
            "confidence": 1,
            "job-name": "labeling-job/camellia",
            "class-name": "camellia",
            "human-annotated": "yes",
            "creation-date": NOW,
            "type": "groundtruth/image-classification",
        },
    }
    assert list(first["camellia-metadata"]) == [
        "confidence",
        "job-name",
        "class-name",
        "human-annotated",
        "creation-date",
        "type",
    ]


def test_a_full_s3_path_needs_no_prefix() -> None:
    lines = lines_of("s3://bucket/a/b.jpg,cat,indoor\n", prefix=None)
    assert lines[0]["source-ref"] == "s3://bucket/a/b.jpg"
    assert [lines[0][f"{n}-metadata"]["class-name"] for n in ("cat", "indoor")] == ["cat", "indoor"]


@pytest.mark.parametrize(
    ("prefix", "cell", "expected"),
    [
        ("s3://b/p/", "x.jpg", "s3://b/p/x.jpg"),
        ("s3://b/p", "x.jpg", "s3://b/p/x.jpg"),
        ("s3://b/p/", "/sub/x.jpg", "s3://b/p/sub/x.jpg"),
    ],
)
def test_prefix_is_joined_with_one_slash(prefix: str, cell: str, expected: str) -> None:
    assert lines_of(f"{cell},cat\n", prefix=prefix)[0]["source-ref"] == expected


def test_empty_cells_and_blank_rows_are_skipped_and_repeated_labels_merged() -> None:
    text = "a.jpg,,cat,,indoor,\n\n  ,  ,\nb.jpg,cat,cat\nc.jpg\n"
    rows = rows_of(text)
    assert [(r.line, r.image, r.labels) for r in rows] == [
        (1, "a.jpg", ("cat", "indoor")),
        (4, "b.jpg", ("cat", "cat")),
        (5, "c.jpg", ()),
    ]
    lines = lines_of(text)
    assert [k for k in lines[1] if k != "source-ref"] == ["cat", "cat-metadata"]
    assert lines[2] == {"source-ref": PREFIX + "c.jpg"}  # an image without labels: unannotated


def test_bar_is_the_quote_character_and_cells_are_trimmed() -> None:
    rows = rows_of('|a,b.jpg|, cat ,|with, comma|,"dq"\n')
    assert rows[0].image == "a,b.jpg"
    assert rows[0].labels == ("cat", "with, comma", '"dq"')


def test_a_multi_label_row_reads_back_as_the_same_labels_and_validates() -> None:
    lines = lines_of(AWS_NO_S3)
    for obj, row in zip(lines, rows_of(AWS_NO_S3), strict=True):
        parsed = parse_line(obj)
        assert parsed.entry is not None and parsed.issues == []
        assert [label.name for label in parsed.entry.labels] == list(row.labels)
        assert entry_to_line(parsed.entry) == obj
    validator = ManifestValidator()
    for raw in iter_lines(io.BytesIO(b"".join(orjson.dumps(x) + b"\n" for x in lines))):
        validator.feed(raw)
    result = validator.finish()
    assert (result.valid, result.invalid, result.errors) == (15, 0, [])
    assert result.classification_labels["with_leaves"] == 10


# ---------------------------------------------------------------------------------------- duplicates


def test_duplicates_are_keyed_by_the_image_cell_and_the_first_is_kept() -> None:
    text = "a.jpg,cat\nb.jpg,dog\n\na.jpg,owl\n a.jpg ,eel\nc.jpg,cat\nb.jpg\n"
    firsts, repeats = split_duplicates(rows_of(text))
    assert [(r.image, r.labels) for r in firsts] == [
        ("a.jpg", ("cat",)),
        ("b.jpg", ("dog",)),
        ("c.jpg", ("cat",)),
    ]
    assert [(r.line, r.image) for r in repeats] == [(4, "a.jpg"), (5, "a.jpg"), (7, "b.jpg")]


def test_awss_duplicates_fixture_is_caught() -> None:
    # aws-doc-sdk-examples test_csvs/test_dups_errors.csv starts with the same image twice.
    path = "s3://docexamplebucket1/circuitboard/train/anomaly/"
    text = f"{path}camellia1.jpg,camellia,with_leaves\n{path}camellia1.jpg,camellia,with_leaves\n"
    text += "\n".join(f"{path}{row}" for row in AWS_NO_S3.splitlines()[1:]) + "\n"
    firsts, repeats = split_duplicates(rows_of(text))
    assert (len(firsts), [r.line for r in repeats]) == (15, [2])


def test_written_rows_read_back_the_same() -> None:
    # The -deduplicated.csv file must be usable as the next input (AWS: "re-run with it").
    text = "|a,b.jpg|,cat,|with, comma|,|bar || inside|, spaced \nplain.jpg,,dog\n"
    rows = rows_of(text)
    again = rows_of(format_rows(rows))
    assert [(r.image, r.labels) for r in again] == [(r.image, r.labels) for r in rows]
    assert [r.cells for r in again] == [r.cells for r in rows]


# ------------------------------------------------------------------------------------------ bad input


def test_an_image_that_is_no_s3_path_names_file_line_and_field() -> None:
    rows = rows_of("s3://b/ok.jpg,cat\n\nlocal/a.jpg,dog\n")
    assert row_to_entry(rows[0], s3_prefix=None, now=NOW).source_ref == "s3://b/ok.jpg"
    with pytest.raises(InputFormatError, match="--s3-prefix") as err:
        row_to_entry(rows[1], s3_prefix=None, now=NOW, source="labels.csv")
    assert (err.value.source, err.value.line, err.value.field) == ("labels.csv", 3, "image")
    assert str(err.value).startswith("labels.csv:line 3, field 'image': 'local/a.jpg'")


def test_a_prefix_that_is_not_s3_is_refused() -> None:
    row = rows_of("a.jpg,cat\n")[0]
    with pytest.raises(InputFormatError, match="s3://bucket/key") as err:
        row_to_entry(row, s3_prefix="https://bucket.s3.amazonaws.com/", now=NOW)
    assert err.value.field == "image"


def test_an_empty_image_cell_names_the_line() -> None:
    with pytest.raises(InputFormatError, match="image cell is empty") as err:
        rows_of("a.jpg,cat\n,dog\n")
    assert (err.value.source, err.value.line, err.value.field) == ("labels.csv", 2, "image")


def test_a_cell_over_the_csv_field_limit_names_the_line() -> None:
    with pytest.raises(InputFormatError, match="broken CSV") as err:
        rows_of("a.jpg,cat\nb.jpg," + "x" * 200_000 + "\n")
    assert (err.value.source, err.value.line) == ("labels.csv", 2)


def test_a_label_name_over_256_characters_is_rekognitions_error() -> None:
    obj = lines_of("a.jpg," + "x" * 257 + "\n")[0]
    parsed = parse_line(obj)
    assert parsed.entry is None
    assert [i.code for i in parsed.issues] == [codes.ERROR_INVALID_LABEL_NAME_LENGTH]
