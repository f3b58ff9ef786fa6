"""The publisher's pure parts: converting a task into its cache record, duplicates, dataset assignment."""

from __future__ import annotations

import io
from dataclasses import replace

from converters.labelconfig import build_label_config, parse_label_config
from converters.labelstudio import ReadOptions
from sync_service.publisher import assign, convert_task, dedupe, entries_summary, validation_summary
from sync_service.state import CachedEntry
from tests.builders import choices, rect, task

CONFIG = parse_label_config(build_label_config(choices=["indoor"], boxes=["cat"]))


def test_a_task_becomes_its_manifest_line_labels_and_annotation_ids() -> None:
    t = task("s3://b/a.jpg", choices("indoor"), rect("cat", 10, 10, 20, 20), tid=4, dataset="test")
    entry = convert_task(t, ReadOptions(label_config=CONFIG), None)
    assert (entry.task_id, entry.source_ref, entry.dataset, entry.annotations) == (
        4,
        "s3://b/a.jpg",
        "test",
        (40,),
    )
    assert set(entry.labels) == {"indoor", "cat"}
    assert entry.line is not None and entry.line.startswith(b'{"source-ref":"s3://b/a.jpg"')


def test_a_task_that_cannot_convert_keeps_its_error() -> None:
    t = task("https://example.com/a.jpg", choices("indoor"), tid=5)
    entry = convert_task(t, ReadOptions(label_config=CONFIG), None)
    assert entry.line is None
    assert entry.error is not None and "data.image" in entry.error


def cached(task_id: int, ref: str, dataset: str | None = None, *labels: str) -> CachedEntry:
    return CachedEntry(task_id, ref, dataset, b"{}", labels, ())


def test_the_first_task_of_an_image_wins() -> None:
    usable, errors = dedupe([cached(1, "s3://b/x"), cached(2, "s3://b/x"), cached(3, "s3://b/y")])
    assert [e.task_id for e in usable] == [1, 3]
    assert errors == [{"task": 2, "error": "s3://b/x is on an earlier task"}]


def test_assignment_keeps_task_datasets_and_splits_the_rest() -> None:
    entries = [cached(1, "s3://b/1", "train", "cat"), cached(2, "s3://b/2", "test", "cat")]
    entries += [cached(10 + i, f"s3://b/u{i}", None, "dog") for i in range(10)]
    sides = assign(entries, test_fraction=0.2, seed=0)
    assert sides["s3://b/1"] == "train" and sides["s3://b/2"] == "test"
    dogs = [sides[f"s3://b/u{i}"] for i in range(10)]
    assert dogs.count("test") == 2
    assert assign(entries, test_fraction=0.2, seed=0) == sides


def test_validation_summary_counts_both_sets() -> None:
    train = io.BytesIO(
        b'{"source-ref":"s3://b/1.jpg","c":0,"c-metadata":{"class-name":"cat","type":"groundtruth/image-classification","human-annotated":"yes","creation-date":"2026-01-01T00:00:00","job-name":"j"}}\n'
    )
    summary = validation_summary(train, io.BytesIO(b""))
    assert summary["statistics"]["training"]["total_json_lines"] == 1


def test_the_summary_from_cached_validation_equals_validating_the_manifests() -> None:
    tasks = [
        task("s3://b/1.jpg", choices("indoor"), rect("cat", 10, 10, 20, 20), tid=1, dataset="train"),
        task("s3://b/2.jpg", choices("indoor"), tid=2, dataset="train"),
        task("s3://b/3.jpg", rect("cat", 5, 5, 10, 10), rect("cat", 50, 50, 10, 10), tid=3, dataset="test"),
        task("s3://b/4.jpg", tid=4, dataset="train"),  # no annotation: a source-ref-only line
        task("s3://other/5.jpg", choices("indoor"), tid=5, dataset="test"),  # a second bucket
        task("s3://b/6.jpg", rect("cat", 0, 0, 0.001, 0.001), tid=6, dataset="train"),  # a box too small
    ]
    entries = [convert_task(t, ReadOptions(label_config=CONFIG), None) for t in tasks]
    assert all(e.check is not None for e in entries)
    train = [e for e in entries if e.dataset == "train"]
    test = [e for e in entries if e.dataset == "test"]

    def stream(chosen: list[CachedEntry]) -> io.BytesIO:
        return io.BytesIO(b"".join((e.line or b"") + b"\n" for e in chosen))

    expected = validation_summary(stream(train), stream(test))
    assert expected["statistics"]["training"]["total_json_lines"] == 4
    assert entries_summary(train, test) == expected
    stale = [replace(e, check=None) for e in train]  # entries cached by an older version
    assert entries_summary(stale, test) == expected
    assert entries_summary(train, None) == validation_summary(stream(train), None)
