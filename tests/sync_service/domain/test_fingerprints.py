"""Fingerprints from one bounded read, cached per object and ETag; recall and precision on injected copies."""

from __future__ import annotations

import io

from PIL import Image
from redis import Redis

from bench.bench_dedup import make_fixture, score
from converters.imagemeta import ImageMeta
from sync_service.domain.fingerprints import (
    DUPLICATE_DISTANCE,
    FingerprintCache,
    fingerprint_of,
    groups_of,
    known_groups,
    record_groups,
)


class FakeStorage:
    """S3 objects in a dict, with ETags, counting reads."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.tags = dict.fromkeys(files, '"1"')
        self.reads: list[str] = []

    def read_tagged(self, source_ref: str, nbytes: int) -> tuple[bytes, str] | None:
        self.reads.append(source_ref)
        data = self.files.get(source_ref)
        return (data[:nbytes], self.tags[source_ref]) if data is not None else None

    def etag(self, source_ref: str) -> str | None:
        return self.tags.get(source_ref)


def test_groups_from_cached_fingerprints_find_the_injected_copies(redis_url: str) -> None:
    files, origin = make_fixture(24, copies_every=2, seed=5)
    storage = FakeStorage(files)
    redis = Redis.from_url(redis_url)  # a database of our own (tests/conftest.py)
    metas: dict[str, ImageMeta] = {}
    cache = FingerprintCache(redis, storage, on_meta=metas.__setitem__)  # type: ignore[arg-type]
    prints = cache.get_many([*files, "s3://bench/missing.jpg"])
    assert set(prints) == set(files)
    assert metas[next(iter(files))].width == 640  # the EXIF facts came from the same read
    figures = score(groups_of(prints.values()), origin)
    assert figures["recall"] >= 0.95 and figures["precision"] >= 0.95, figures

    storage.reads.clear()
    again = cache.get_many(files)
    assert again == prints and storage.reads == []  # same ETags: no read
    changed = next(iter(files))
    storage.tags[changed] = '"2"'
    cache.get_many(files)
    assert storage.reads == [changed]  # a new ETag: read again
    groups = groups_of(prints.values())
    record_groups(redis, sorted(files), groups, distance=DUPLICATE_DISTANCE)
    grouped = known_groups(redis, sorted(files))
    assert sorted(grouped) == sorted(g.members for g in groups)  # no grouping again, the same groups
    assert known_groups(redis, sorted(files), distance=DUPLICATE_DISTANCE + 1) == []  # found at another
    record_groups(redis, sorted(files), [], distance=DUPLICATE_DISTANCE)  # a later check found none
    assert known_groups(redis, sorted(files)) == []


def test_flat_images_group_by_digest_only() -> None:
    def solid(colour: tuple[int, int, int]) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (160, 120), colour).save(out, "JPEG")
        return out.getvalue()

    red, blue = solid((200, 10, 10)), solid((10, 10, 200))
    prints = [
        fingerprint_of(ref, data)
        for ref, data in [("s3://b/r.jpg", red), ("s3://b/b.jpg", blue), ("s3://b/r2.jpg", red)]
    ]
    assert all(p is not None and p.phash is None for p in prints)
    assert [g.members for g in groups_of(p for p in prints if p is not None)] == [
        ("s3://b/r.jpg", "s3://b/r2.jpg")
    ]
    assert fingerprint_of("s3://b/x.txt", b"not an image") is None
