"""The publisher's pure parts: converting a task into its cache record, duplicates, dataset assignment."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from typing import IO, Any

import pytest
from redis import Redis

from converters.imagemeta import ImageMeta
from converters.jsonio import RawLine
from converters.labelconfig import build_label_config, parse_label_config
from converters.labelstudio import ReadOptions
from converters.validation import ManifestValidator, summarize
from sync_service.domain.publisher import (
    ImageMetaCache,
    _pack_meta,
    assign,
    convert_task,
    convert_tasks,
    dedupe,
    entries_summary,
)
from sync_service.edges.state import IMAGE_META_KEY, CachedEntry
from tests.builders import choices, rect, task


def validation_summary(train: IO[bytes], test: IO[bytes] | None) -> dict[str, Any]:
    """The oracle: ``manifest_summary.json`` of the two manifests, validated line by line from bytes."""
    results = []
    for stream in (train, test):
        if stream is None:
            continue
        validator = ManifestValidator(collect_items=test is None)
        stream.seek(0)
        for number, data in enumerate(stream, start=1):
            validator.feed(RawLine(number, data.rstrip(b"\n"), False, len(data)))
        results.append(validator.finish())
    return summarize(results[0], results[1] if len(results) > 1 else None).document


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


class HeadReads:
    """A stand-in for the S3 storage: counts header reads; every object is a 640 x 480 JPEG's facts."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    def read_head(self, ref: str, size: int) -> bytes | None:
        self.reads.append(ref)
        return None  # as if the object were missing


@pytest.fixture
def meta_redis(redis_url: str) -> Iterator[Redis]:
    redis = Redis.from_url(redis_url)
    refs = [f"s3://b/pre{i}.jpg" for i in range(3)]
    yield redis
    redis.hdel(IMAGE_META_KEY, *refs)
    redis.close()


def test_image_facts_of_a_chunk_are_read_from_redis_in_one_round_trip(meta_redis: Redis) -> None:
    known = ImageMeta(4032, 3024, 6, "JPEG")
    meta_redis.hset(IMAGE_META_KEY, "s3://b/pre0.jpg", _pack_meta(known))
    meta_redis.hset(IMAGE_META_KEY, "s3://b/pre1.jpg", _pack_meta(known))
    storage: Any = HeadReads()
    images = ImageMetaCache(meta_redis, storage)
    images.prefetch(["s3://b/pre0.jpg", "s3://b/pre1.jpg", "s3://b/pre2.jpg", "s3://b/pre0.jpg"])
    meta_redis.hdel(IMAGE_META_KEY, "s3://b/pre0.jpg", "s3://b/pre1.jpg")  # from now on only the local copy
    assert images.get("s3://b/pre0.jpg") == known and images.get("s3://b/pre1.jpg") == known
    assert storage.reads == []
    assert images.get("s3://b/pre2.jpg") is None  # not in Redis: its header is read (missing here)
    assert storage.reads == ["s3://b/pre2.jpg"]


def test_converting_a_stream_in_chunks_equals_converting_each_task(meta_redis: Redis) -> None:
    tasks = [
        task(
            f"s3://b/pre{i % 3}.jpg",
            choices("indoor"),
            *([rect("cat", 10, 10, 20, 20)] if i % 2 else []),
            tid=i,
        )
        for i in range(1, 12)
    ]
    meta_redis.hset(IMAGE_META_KEY, "s3://b/pre1.jpg", _pack_meta(ImageMeta(480, 640, 6, "JPEG")))
    options = ReadOptions(label_config=CONFIG)
    storage: Any = HeadReads()
    one_by_one = [convert_task(t, options, ImageMetaCache(meta_redis, storage)) for t in tasks]
    chunked = list(convert_tasks(tasks, options, ImageMetaCache(meta_redis, storage), chunk=4))
    assert chunked == one_by_one
    # Task 1 has boxes on pre1.jpg, whose facts (EXIF orientation 6) came from Redis and moved its box.
    assert chunked[0].line != convert_task(tasks[0], options, None).line


def test_a_converted_entry_holds_its_line_at_its_size() -> None:
    # A rebuild keeps every entry in memory until the manifests are written: 100,000 of them.
    options = ReadOptions(label_config=CONFIG)
    made = (task(f"s3://b/i{i:06d}.jpg", choices("indoor"), tid=i) for i in range(1, 2001))
    tracemalloc.start()
    try:
        entries = [convert_task(t, options, None) for t in made]
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert all(e.line is not None for e in entries)
    assert held / len(entries) < 1500  # bytes an entry; orjson's own bytes would add 4 KB each
