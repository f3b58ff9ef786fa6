"""Writing an object from pieces of its previous version (Storage.write_pieces): the part plan, and the
writes against moto's S3 server.

moto 5.2.6's server enforces ``If-Match`` on GetObject and PutObject but ignores ``CopySourceIfMatch``
on UploadPartCopy and ``If-Match`` on CompleteMultipartUpload (real S3 enforces both). The tests check
that the writer sends those conditions, and that a concurrent writer is caught through what moto does
enforce: the conditional reads of the previous version and the conditional PutObject.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import moto.s3.models
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from sync_service.edges.s3 import Copy, ManifestChanged, Piece, Storage, plan_parts
from tests.realparts import S3

MIN = 64


def edited(old: bytes, rnd: random.Random, changes: int) -> tuple[list[Piece], bytes]:
    """Pieces that replace, insert or delete a few runs of ``old``, and the bytes they make."""
    cuts = sorted(rnd.sample(range(len(old) + 1), min(changes * 2, len(old) + 1)))
    pieces: list[Piece] = []
    new = b""
    at = 0
    for a, b in zip(cuts[::2], cuts[1::2], strict=False):
        if a > at:
            pieces.append(Copy(at, a))
            new += old[at:a]
        data = bytes(rnd.randrange(97, 123) for _ in range(rnd.randrange(0, 20)))
        pieces.append(data)
        new += data
        at = b
    if at < len(old):
        pieces.append(Copy(at, len(old)))
        new += old[at:]
    return pieces, new


@given(st.integers(0, 2000), st.integers(0, 6), st.integers(0, 2**32))
def test_parts_cover_the_object_each_but_the_last_at_least_the_minimum(
    size: int, changes: int, seed: int
) -> None:
    rnd = random.Random(seed)
    old = bytes(rnd.randrange(65, 91) for _ in range(size))
    pieces, new = edited(old, rnd, changes)
    parts = plan_parts(pieces, part_min=MIN, data_max=4 * MIN)
    if not new:
        assert parts == []
        return
    assert parts[0].start == 0 and parts[-1].end == len(new)
    assert all(a.end == b.start for a, b in itertools.pairwise(parts))
    if len(new) >= MIN:
        assert all(p.end - p.start >= MIN for p in parts[:-1])
    made = b""
    for part in parts:
        if part.source is None:
            made += new[part.start : part.end]
        else:
            made += old[part.source : part.source + part.end - part.start]
    assert made == new
    # Every new byte is in an uploaded part, never in a copied one.
    at = 0
    copied = [p for p in parts if p.source is not None]
    for piece in pieces:
        size = len(piece) if isinstance(piece, bytes) else piece.end - piece.start
        if isinstance(piece, bytes):
            assert not any(p.start < at + size and at < p.end for p in copied if size)
        at += size


class Recording:
    """A boto3 client that records the arguments of its calls (and can refuse some)."""

    def __init__(self, client: Any, refuse: tuple[str, ...] = ()) -> None:
        self.client = client
        self.refuse = refuse
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            if name in self.refuse:
                raise ClientError({"Error": {"Code": "NotImplemented", "Message": "no"}}, name)
            return method(**kwargs)

        return call


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", MIN)
    yield


def put_old(storage: Storage, key: str, data: bytes) -> str:
    return str(storage.client.put_object(Bucket=storage.bucket, Key=key, Body=data)["ETag"])


def test_a_change_uploads_the_parts_around_it_and_copies_the_rest(
    s3: S3, bucket: str, small_parts: None
) -> None:
    rnd = random.Random(1)
    old = b"".join(b"line %05d %s\n" % (i, b"x" * rnd.randrange(10, 40)) for i in range(400))
    client = Recording(s3.client)
    storage = Storage(client, bucket, recent_bytes=4 * 1000)  # too large to keep: read range by range
    etag = put_old(storage, "m", old)
    pieces, new = edited(old, rnd, 2)
    result = storage.write_pieces("m", pieces, previous_etag=etag, part_min=MIN)
    assert storage.get_bytes("m") == new
    assert result.multipart and result.uploaded < len(new) // 4
    copies = [kw for name, kw in client.calls if name == "upload_part_copy"]
    assert copies and all(kw["CopySourceIfMatch"] == etag for kw in copies)
    complete = [kw for name, kw in client.calls if name == "complete_multipart_upload"]
    assert complete[0]["IfMatch"] == etag
    reads = [kw for name, kw in client.calls if name == "get_object" and "Range" in kw]
    assert reads
    assert all(kw["IfMatch"] == etag for kw in reads)


def middle_change(old: bytes, at: int, text: bytes) -> tuple[list[Piece], bytes]:
    """Pieces that replace the line starting at byte ``at`` of ``old`` by ``text``."""
    end = old.index(b"\n", at) + 1
    return [Copy(0, at), text, Copy(end, len(old))], old[:at] + text + old[end:]


def test_a_version_not_held_is_read_whole_and_kept_when_that_costs_at_most_twice_the_ranges(
    s3: S3, bucket: str, small_parts: None
) -> None:
    """The first change reads the version it does not hold whole (its uploaded part needs most of it);
    the versions it writes are kept, so the changes after it read nothing back and make the right bytes.
    After another writer's version, a change whose uploaded part needs little of it reads ranges."""
    old = b"".join(b"line %05d %s\n" % (i, b"x" * (i % 30)) for i in range(400))
    part_min = len(old) * 3 // 5  # an uploaded part carries more than half of the object
    client = Recording(s3.client)
    storage = Storage(client, bucket)
    etag = put_old(storage, "m", old)
    line = old.index(b"line 00133")
    pieces, new = middle_change(old, line, b"changed 133\n")
    first = storage.write_pieces("m", pieces, previous_etag=etag, part_min=part_min)
    reads = [kw for name, kw in client.calls if name == "get_object"]
    assert first.multipart and len(reads) == 1 and "Range" not in reads[0] and reads[0]["IfMatch"] == etag
    for number in (150, 170, 120):
        client.calls.clear()
        pieces, newer = middle_change(new, new.index(b"line %05d" % number), b"changed %d\n" % number)
        written = storage.write_pieces("m", pieces, previous_etag=first.etag, part_min=part_min)
        assert written.multipart
        assert [name for name, _ in client.calls if name == "get_object"] == []
        assert storage.get_bytes("m") == newer
        new, first = newer, written
    # Another worker writes the next version; this one's change needs a small part of it.
    other = Storage(s3.client, bucket)
    pieces, newer = middle_change(new, new.index(b"line 00200"), b"other\n")
    theirs = other.write_pieces("m", pieces, previous_etag=first.etag, part_min=part_min)
    client.calls.clear()
    pieces, last = middle_change(newer, newer.index(b"line 00300"), b"mine\n")
    storage.write_pieces("m", pieces, previous_etag=theirs.etag, part_min=MIN)
    reads = [kw for name, kw in client.calls if name == "get_object"]
    assert reads and all("Range" in kw for kw in reads)
    assert storage.get_bytes("m") == last


def test_a_version_written_here_but_not_held_is_read_whole_once_then_kept(
    s3: S3, bucket: str, small_parts: None
) -> None:
    """A version this process wrote by parts without holding it (it read ranges of the one before) is
    read whole by the next write, though its uploaded part needs little of it: the writes after that
    read nothing. This process is the object's writer then (a rebuild in a work-horse wrote the version
    before), and ranges read at every write would cost more."""
    old = b"".join(b"line %05d %s\n" % (i, b"x" * (i % 30)) for i in range(400))
    client = Recording(s3.client)
    storage = Storage(client, bucket)
    etag = put_old(storage, "m", old)  # as another process wrote it
    reads: list[list[dict[str, Any]]] = []
    new = old
    for number in (133, 150, 170, 120):
        client.calls.clear()
        pieces, newer = middle_change(new, new.index(b"line %05d" % number), b"changed %d\n" % number)
        written = storage.write_pieces("m", pieces, previous_etag=etag, part_min=MIN)
        assert written.multipart
        assert storage.get_bytes("m") == newer
        reads.append([kw for name, kw in client.calls if name == "get_object" and kw.get("IfMatch")])
        new, etag = newer, written.etag
    assert reads[0] and all("Range" in kw for kw in reads[0])  # another's version: ranges
    assert len(reads[1]) == 1 and "Range" not in reads[1][0]  # its own, not held: read whole once
    assert reads[2] == [] and reads[3] == []


def test_a_version_written_here_is_not_read_whole_when_keeping_it_would_push_out_another(
    s3: S3, bucket: str, small_parts: None
) -> None:
    """With as many manifests kept as the memory takes, a version this process wrote without holding it
    is read by ranges, as another's is: reading it whole would push out a kept one, read whole in turn
    at its next write, round and round. The kept ones stay kept."""
    old = b"".join(b"line %05d %s\n" % (i, b"x" * (i % 30)) for i in range(400))
    client = Recording(s3.client)
    storage = Storage(client, bucket, recent_bytes=4 * len(old) + 100)  # four objects of this size
    etag = put_old(storage, "m", old)
    pieces, new = middle_change(old, old.index(b"line 00133"), b"changed 133\n")
    etag = storage.write_pieces("m", pieces, previous_etag=etag, part_min=MIN).etag  # ranges, not kept
    kept: dict[str, tuple[str, bytes]] = {}
    for name in ("o1", "o2", "o3", "o4"):  # written whole, and kept: the memory is full
        other = put_old(storage, name, old)
        pieces, version = middle_change(old, old.index(b"line 00200"), b"line 00200 x\n")
        kept[name] = (
            storage.write_pieces(name, pieces, previous_etag=other, part_min=len(old) + 1).etag,
            version,
        )
    client.calls.clear()
    pieces, newer = middle_change(new, new.index(b"line 00150"), b"changed 150\n")
    storage.write_pieces("m", pieces, previous_etag=etag, part_min=MIN)
    assert storage.get_bytes("m") == newer
    reads = [kw for name, kw in client.calls if name == "get_object" and kw.get("IfMatch")]
    assert reads and all("Range" in kw for kw in reads)
    for name, (version_etag, version) in kept.items():  # each still held: its next write reads nothing
        client.calls.clear()
        pieces, _ = middle_change(version, version.index(b"line 00300"), b"line 00300 y\n")
        storage.write_pieces(name, pieces, previous_etag=version_etag, part_min=MIN)
        assert [kw for call, kw in client.calls if call == "get_object"] == [], name


def test_a_small_object_is_one_conditional_put(s3: S3, bucket: str, small_parts: None) -> None:
    client = Recording(s3.client)
    storage = Storage(client, bucket)
    etag = put_old(storage, "m", b"a\nb\nc\n")
    result = storage.write_pieces("m", [Copy(0, 2), b"B\n", Copy(4, 6)], previous_etag=etag, part_min=MIN)
    assert storage.get_bytes("m") == b"a\nB\nc\n"
    assert not result.multipart and result.uploaded == 6
    assert [name for name, _ in client.calls if "multipart" in name] == []
    assert result.etag == storage.object_etag("m")


@pytest.mark.parametrize("refused", ["create_multipart_upload", "upload_part_copy"])
def test_a_store_without_part_copies_gets_the_whole_object(
    s3: S3, bucket: str, small_parts: None, refused: str
) -> None:
    old = b"".join(b"line %05d\n" % i for i in range(200))
    storage = Storage(Recording(s3.client, refuse=(refused,)), bucket)
    etag = put_old(storage, "m", old)
    pieces, new = edited(old, random.Random(2), 1)
    result = storage.write_pieces("m", pieces, previous_etag=etag, part_min=MIN)
    assert storage.get_bytes("m") == new
    assert not result.multipart and result.uploaded == len(new)
    uploads = s3.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == []  # the refused upload was aborted


@pytest.mark.parametrize("size", [6, 4000])
def test_a_write_against_a_replaced_object_fails_and_writes_nothing(
    s3: S3, bucket: str, small_parts: None, size: int
) -> None:
    storage = Storage(s3.client, bucket)
    old = b"".join(b"%05d\n" % i for i in range(size // 6 or 1))[:size]
    etag = put_old(storage, "m", old)
    put_old(storage, "m", b"another writer's\n")
    pieces, _ = edited(old, random.Random(3), 1)
    with pytest.raises(ManifestChanged):
        storage.write_pieces("m", pieces, previous_etag=etag, part_min=MIN)
    assert storage.get_bytes("m") == b"another writer's\n"
    assert s3.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_multipart_etag_is_a_version_tag_not_an_md5(s3: S3, bucket: str, small_parts: None) -> None:
    old = b"".join(b"line %05d\n" % i for i in range(300))
    storage = Storage(s3.client, bucket)
    etag = put_old(storage, "m", old)
    pieces, new = edited(old, random.Random(4), 1)
    first = storage.write_pieces("m", pieces, previous_etag=etag, part_min=MIN)
    assert first.multipart and "-" in first.etag  # "<md5 of the parts' md5s>-<parts>": no body digest
    # The next write is made against that tag, as the publisher keeps it.
    second = storage.write_pieces("m", [Copy(0, len(new)), b"tail\n"], previous_etag=first.etag, part_min=MIN)
    assert storage.get_bytes("m") == new + b"tail\n" and second.etag == storage.object_etag("m")


def test_a_write_against_a_deleted_object_is_a_changed_manifest(
    s3: S3, bucket: str, small_parts: None
) -> None:
    storage = Storage(s3.client, bucket)
    etag = put_old(storage, "m", b"".join(b"%05d\n" % i for i in range(100)))
    storage.delete_keys(["m"])
    with pytest.raises(ManifestChanged):
        storage.write_pieces("m", [Copy(0, 60), b"x\n", Copy(60, 600)], previous_etag=etag, part_min=MIN)
    assert storage.get_bytes("m") is None


def test_a_small_object_written_here_is_spliced_without_reading_it_back(
    s3: S3, bucket: str, small_parts: None
) -> None:
    client = Recording(s3.client)
    storage = Storage(client, bucket)
    etag = put_old(storage, "m", b"a\nb\nc\n")
    first = storage.write_pieces("m", [Copy(0, 2), b"B\n", Copy(4, 6)], previous_etag=etag, part_min=MIN)
    whole_reads = [kw for name, kw in client.calls if name == "get_object"]
    assert len(whole_reads) == 1 and "Range" not in whole_reads[0]  # one read of the unknown version
    client.calls.clear()
    second = storage.write_pieces("m", [Copy(0, 4), b"C\n"], previous_etag=first.etag, part_min=MIN)
    assert [name for name, _ in client.calls] == ["put_object"]
    assert client.calls[0][1]["IfMatch"] == first.etag
    assert storage.get_bytes("m") == b"a\nB\nC\n" and second.etag == storage.object_etag("m")


def test_a_kept_version_replaced_by_another_writer_fails_the_write(
    s3: S3, bucket: str, small_parts: None
) -> None:
    storage = Storage(s3.client, bucket)
    etag = put_old(storage, "m", b"a\nb\nc\n")
    first = storage.write_pieces("m", [Copy(0, 2), b"B\n", Copy(4, 6)], previous_etag=etag, part_min=MIN)
    put_old(storage, "m", b"another writer's\n")
    with pytest.raises(ManifestChanged):
        storage.write_pieces("m", [Copy(0, 4), b"C\n"], previous_etag=first.etag, part_min=MIN)
    assert storage.get_bytes("m") == b"another writer's\n"


def test_the_kept_versions_stay_within_their_bytes(s3: S3, bucket: str) -> None:
    storage = Storage(s3.client, bucket, recent_bytes=400)
    for i in range(8):
        etag = put_old(storage, f"m{i}", b"x\n" * 40)
        storage.write_pieces(f"m{i}", [Copy(0, 78), b"y\n"], previous_etag=etag)
    kept = storage._recent
    assert sum(len(body) for _, body in kept.values()) <= 400
    assert list(kept) == ["m3", "m4", "m5", "m6", "m7"]  # the most recently written
    storage.put_bytes("m7", b"z\n")
    assert "m7" not in kept
