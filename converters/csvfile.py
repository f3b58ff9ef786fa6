"""CSV ``image,label,label,...`` -> image-level entries (AWS's csv-to-manifest example, spec §5.2).

Reader: ``delimiter=','``, ``quotechar='|'``, UTF-8. Column 1 is the image (a file name or a full
``s3://`` path; an optional S3 prefix is prepended); the other columns are labels, empty cells skipped;
blank rows skipped. Each label ``L`` becomes attribute ``L`` with value 1 and metadata
``confidence 1, job-name "labeling-job/L", class-name L, human-annotated yes``.

Duplicates are found first: when column 1 repeats, no manifest is made; the caller writes
``<name>-deduplicated.csv`` (first occurrence kept) and ``<name>-duplicates.csv`` instead.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from converters.errors import InputFormatError
from converters.manifest import valid_source_ref
from converters.model import Entry, ImageLabel, Provenance


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One non-blank CSV row: its 1-based line number, image cell and label cells (non-empty)."""

    line: int
    image: str
    labels: tuple[str, ...]
    cells: tuple[str, ...]


def read_rows(lines: Iterable[str], *, source: str = "<csv>") -> Iterator[CsvRow]:
    """The non-blank rows of a CSV text stream."""
    reader = csv.reader(lines, delimiter=",", quotechar="|")
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            image = cells[0].strip()
            if not image:
                raise InputFormatError(
                    "the image cell is empty", source=source, line=reader.line_num, field="image"
                )
            labels = tuple(cell.strip() for cell in cells[1:] if cell.strip())
            yield CsvRow(reader.line_num, image, labels, tuple(cells))
    except csv.Error as exc:
        raise InputFormatError(f"broken CSV: {exc}", source=source, line=reader.line_num) from exc


def format_rows(rows: Iterable[CsvRow]) -> str:
    """CSV text of ``rows`` (their cells as read) in the reader's dialect, so that it reads back the same."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=",", quotechar="|", lineterminator="\n")
    for row in rows:
        writer.writerow(row.cells)
    return out.getvalue()


def split_duplicates(rows: Iterable[CsvRow]) -> tuple[list[CsvRow], list[CsvRow]]:
    """``(first occurrences, later repeats)`` by the image cell."""
    seen: set[str] = set()
    firsts: list[CsvRow] = []
    repeats: list[CsvRow] = []
    for row in rows:
        (repeats if row.image in seen else firsts).append(row)
        seen.add(row.image)
    return firsts, repeats


def row_to_entry(row: CsvRow, *, s3_prefix: str | None, now: str, source: str = "<csv>") -> Entry:
    """The entry of one CSV row; raise :class:`InputFormatError` when its image is no S3 reference."""
    ref = row.image if s3_prefix is None else s3_prefix.rstrip("/") + "/" + row.image.lstrip("/")
    if not valid_source_ref(ref):
        hint = "" if s3_prefix else "; pass --s3-prefix s3://bucket/prefix/ for bare file names"
        raise InputFormatError(
            f"{row.image!r} is not an s3://bucket/key path{hint}", source=source, line=row.line, field="image"
        )
    entry = Entry(source_ref=ref)
    for name in dict.fromkeys(row.labels):
        entry.labels.append(
            ImageLabel(
                name=name,
                confidence=1,
                attribute=name,
                value=1,
                provenance=Provenance(
                    human_annotated=True, creation_date=now, job_name=f"labeling-job/{name}"
                ),
            )
        )
    return entry
