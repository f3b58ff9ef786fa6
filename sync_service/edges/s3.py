"""The S3 edge: the one module that talks to S3 (AWS, MinIO or moto's server) through boto3.

Objects are replaced whole: a manifest is written to a local spool file first and then uploaded in one
``PutObject`` (or one multipart upload, completed last), so readers see the old object or the new one,
never a part. A manifest that changed in a few places is written by :meth:`Storage.write_pieces`: the
unchanged byte ranges of the previous object are copied by S3 itself (``UploadPartCopy``), only the
parts around the changes are uploaded, every read and copy of the previous object and the completion
conditional on its ETag (a concurrent writer makes the write fail with :class:`ManifestChanged`, never
interleave). An object under S3's smallest part is rewritten whole by one conditional ``PutObject``. A
:class:`Storage` keeps the objects it last wrote or read whole (by ETag; each at most a quarter of
:data:`RECENT_BYTES`, that in all), so the next write of the same version splices its changes in, and
fills its uploaded parts, without reading the object back. An ETag is an opaque
version tag here: a multipart object's is no MD5 of its bytes.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sync_service.config import Settings
from sync_service.errors import StorageError

SPOOL_BYTES = 8 * 1024 * 1024

PART_MIN = 5 * 1024 * 1024
"""S3's smallest part of a multipart upload (bytes), the last part excepted; an object smaller than this
is written by one ``PutObject``."""
DATA_PART_MAX = 32 * 1024 * 1024
"""Bytes at most in one uploaded part (held in memory while it is sent); longer runs of changed bytes are
cut into several parts, each at least :data:`PART_MIN`."""
COPY_PART_MAX = 5 * 1024 * 1024 * 1024
"""S3's largest part (bytes): a longer unchanged range is copied in several parts."""
RECENT_BYTES = 128 * 1024 * 1024
"""Bytes at most of the objects a :class:`Storage` keeps as it last wrote them (see
:meth:`Storage.write_pieces`; each at most a quarter of this), the least recently written dropped first."""
WRITTEN_KEYS = 4096
"""Keys at most whose last version written here a :class:`Storage` remembers (the ETag alone)."""
_PRECONDITION_CODES = ("PreconditionFailed", "412", "NoSuchKey", "404")  # changed, or deleted meanwhile
_NOT_IMPLEMENTED_CODES = ("NotImplemented", "501")


class ManifestChanged(StorageError):
    """The object is no longer the version a conditional write was made against (another writer)."""


@dataclass(frozen=True, slots=True)
class Copy:
    """Bytes ``[start, end)`` of the previous version of the object being written."""

    start: int
    end: int


Piece = bytes | Copy
"""A run of the new object: new bytes, or a range of the previous version."""


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a planned write: bytes ``[start, end)`` of the new object; ``source`` is the offset in
    the previous version where a copied part starts (None: the part is uploaded)."""

    start: int
    end: int
    source: int | None


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What :meth:`Storage.write_pieces` did: the new ETag, the bytes sent and whether parts were copied."""

    etag: str
    uploaded: int
    multipart: bool


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _layout(pieces: Sequence[Piece]) -> list[tuple[int, int, Piece]]:
    """Each piece with its ``[start, end)`` in the new object."""
    out = []
    at = 0
    for piece in pieces:
        size = len(piece) if isinstance(piece, bytes) else piece.end - piece.start
        out.append((at, at + size, piece))
        at += size
    return out


def plan_parts(
    pieces: Sequence[Piece], *, part_min: int = PART_MIN, data_max: int = DATA_PART_MAX
) -> list[Part]:
    """The parts of a multipart write of ``pieces``: copied ranges of the previous version where nothing
    changed, uploaded parts around each change (a changed run widened to ``part_min`` bytes, an
    unchanged run shorter than that between two changes uploaded with them), every part but the last at
    least ``part_min`` bytes. A piece of new bytes, even an empty one (a deletion), marks a change."""
    laid = _layout(pieces)
    total = laid[-1][1] if laid else 0
    merged = _widened([[a, b] for a, b, piece in laid if not isinstance(piece, Copy)], total, part_min)
    parts: list[Part] = []
    at = 0
    for start, end in [*merged, [total, total]]:
        if start > at:
            parts.extend(_copied(laid, at, start))
        if end > start:
            count = -(-(end - start) // data_max)
            edges = [start + (end - start) * i // count for i in range(count + 1)]
            parts.extend(Part(a, b, None) for a, b in itertools.pairwise(edges))
        at = max(at, end)
    return parts


def _widened(spans: list[list[int]], total: int, part_min: int) -> list[list[int]]:
    """The uploaded runs around the changed ``spans`` (sorted): an unchanged run shorter than
    ``part_min`` before or between changes is uploaded with them (it cannot be a copied part), then each
    run but one ending the object is widened forward to ``part_min``; repeated until stable."""
    while True:
        out: list[list[int]] = []
        for start, end in spans:
            if out and start - out[-1][1] < part_min:
                out[-1][1] = max(out[-1][1], end)
            elif not out and start < part_min:
                out.append([0, end])
            else:
                out.append([start, end])
        widened = False
        for span in out:
            # The run that ends the object is its last part, which may be short.
            if span[1] - span[0] < part_min and span[1] < total:
                span[1] = min(total, span[0] + part_min)
                widened = True
        spans = out
        if not widened:
            return out


def _copied(laid: list[tuple[int, int, Piece]], start: int, end: int) -> list[Part]:
    """Copy parts for the unchanged run ``[start, end)`` of the new object (one previous-version range:
    an unchanged run holds no change, so its pieces are contiguous in the previous version)."""
    source = None
    for a, b, piece in laid:
        if isinstance(piece, Copy) and a <= start < b:
            source = piece.start + start - a
            break
    if source is None:
        raise StorageError(f"no previous bytes at offset {start} of the planned object")
    count = -(-(end - start) // COPY_PART_MAX)
    edges = [start + (end - start) * i // count for i in range(count + 1)]
    return [Part(a, b, source + a - start) for a, b in itertools.pairwise(edges)]


def _copied_into_uploads(laid: list[tuple[int, int, Piece]], parts: list[Part]) -> int:
    """Bytes of the previous version the uploaded ``parts`` carry (read back unless held)."""
    return sum(
        max(0, min(b, part.end) - max(a, part.start))
        for part in parts
        if part.source is None
        for a, b, piece in laid
        if isinstance(piece, Copy)
    )


_clients: dict[tuple[str | None, str], Any] = {}
_clients_pid = os.getpid()
_clients_lock = threading.Lock()


def client_for(settings: Settings) -> Any:
    """This process's boto3 S3 client for the configured endpoint, with short timeouts (jobs retry on
    failure): made once per process and endpoint (boto3 clients are thread-safe; a forked worker makes
    its own). Credentials come from boto3's default lookup, which resolves them once per process."""
    global _clients_pid  # noqa: PLW0603 - the cache belongs to the process that made it
    key = (settings.s3_endpoint, settings.s3_region)
    with _clients_lock:
        if _clients_pid != os.getpid():
            _clients.clear()
            _clients_pid = os.getpid()
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = make_client(settings.s3_endpoint, settings.s3_region)
        return client


def make_client(
    endpoint_url: str | None,
    region: str,
    *,
    credentials: tuple[str, str] | None = None,
    connect_timeout: float = 5,
    read_timeout: float = 30,
) -> Any:
    """A boto3 S3 client: path-style addressing (S3-compatible stores), two attempts, short timeouts
    in seconds; ``credentials`` (key id, secret) given explicitly, else boto3's own lookup."""
    keys: dict[str, str] = {}
    if credentials is not None:
        keys = {"aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]}
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path"},
        ),
        **keys,
    )


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; raise :class:`StorageError` for anything else."""
    if not url.startswith("s3://"):
        raise StorageError(f"not an s3:// URL: {url!r}")
    bucket, _, key = url[5:].partition("/")
    if not bucket or not key:
        raise StorageError(f"an s3:// URL needs a bucket and a key: {url!r}")
    return bucket, key


class _PartCopyRefused(Exception):
    """The store answered NotImplemented to a multipart call (s3rver has no UploadPartCopy)."""


class _KeptOpen(io.RawIOBase):
    """A readable, seekable view of a stream whose ``close`` leaves the stream open."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._stream.read(-1 if size is None else size)

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


class Storage:
    """The project files in one bucket."""

    def __init__(self, client: Any, bucket: str, *, recent_bytes: int = RECENT_BYTES) -> None:
        self.client = client
        self.bucket = bucket
        self.recent_bytes = recent_bytes
        # key -> (ETag, bytes) of small objects as this process last wrote or read them whole: the next
        # write of the same version splices them instead of reading them back.
        self._recent: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._recent_lock = threading.Lock()
        # key -> ETag of the version this process last wrote by parts without keeping it (see _write_parts).
        self._written: OrderedDict[str, str] = OrderedDict()

    def _remember(self, key: str, etag: str, body: bytes) -> None:
        with self._recent_lock:
            self._recent.pop(key, None)
            if len(body) > self.recent_bytes // 4:
                return
            self._recent[key] = (etag, body)
            held = sum(len(b) for _, b in self._recent.values())
            while held > self.recent_bytes:
                _, (_, dropped) = self._recent.popitem(last=False)
                held -= len(dropped)

    def _forget(self, key: str) -> None:
        with self._recent_lock:
            self._recent.pop(key, None)

    def _recalled(self, key: str, etag: str) -> bytes | None:
        """The bytes of version ``etag`` of ``key`` when this process holds them."""
        with self._recent_lock:
            hit = self._recent.get(key)
            if hit is None or hit[0] != etag:
                return None
            self._recent.move_to_end(key)
            return hit[1]

    def _fail(self, what: str, key: str, exc: Exception) -> StorageError:
        return StorageError(f"S3 {what} s3://{self.bucket}/{key} failed: {exc}")

    def spool(self) -> IO[bytes]:
        """A temporary file to write an object into before :meth:`put_file` uploads it whole."""
        return tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)

    def put_file(
        self, key: str, stream: IO[bytes], *, content_type: str = "application/octet-stream"
    ) -> None:
        """Upload ``stream`` (from its start) to ``key``, replacing the object whole. The stream stays
        open (boto3 closes a small one it uploads in one request; the caller may read it again)."""
        self._forget(key)
        stream.seek(0)
        try:
            self.client.upload_fileobj(
                _KeptOpen(stream), self.bucket, key, ExtraArgs={"ContentType": content_type}
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("upload to", key, exc) from exc

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Write ``data`` to ``key`` in one request."""
        self._forget(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("write to", key, exc) from exc

    def object_etag(self, key: str) -> str | None:
        """The ETag of ``key`` in the bucket (an opaque version tag), or None when there is no object."""
        try:
            return str(self.client.head_object(Bucket=self.bucket, Key=key)["ETag"])
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail("head of", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("head of", key, exc) from exc

    def write_pieces(
        self,
        key: str,
        pieces: Sequence[Piece],
        *,
        previous_etag: str,
        content_type: str = "application/octet-stream",
        part_min: int = PART_MIN,
    ) -> WriteResult:
        """Replace ``key``, whose version ``previous_etag`` the :class:`Copy` pieces refer to, by the
        concatenation of ``pieces``: a multipart upload whose unchanged parts S3 copies from the previous
        version, or one conditional ``PutObject`` when the object is under ``part_min`` bytes or the
        store does not implement part copies (s3rver). Raises :class:`ManifestChanged` when the object
        is no longer ``previous_etag`` (nothing is written then)."""
        laid = _layout(pieces)
        total = laid[-1][1] if laid else 0
        if total >= part_min:
            parts = plan_parts(pieces, part_min=part_min)
            try:
                return self._write_parts(key, laid, parts, previous_etag, content_type)
            except _PartCopyRefused:
                pass  # the store has no part copies: the whole object in one request
        body = self._assemble(key, laid, 0, total, previous_etag)
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, IfMatch=previous_etag
            )
        except ClientError as exc:
            self._forget(key)
            raise self._conditional_fail("write to", key, exc) from exc
        except BotoCoreError as exc:
            self._forget(key)
            raise self._fail("write to", key, exc) from exc
        etag = str(response["ETag"])
        self._remember(key, etag, body)
        return WriteResult(etag, len(body), False)

    def _conditional_fail(self, what: str, key: str, exc: ClientError) -> StorageError:
        if _error_code(exc) in _PRECONDITION_CODES:
            return ManifestChanged(f"s3://{self.bucket}/{key} changed under a conditional {what}: {exc}")
        return self._fail(what, key, exc)

    def _write_parts(
        self,
        key: str,
        laid: list[tuple[int, int, Piece]],
        parts: list[Part],
        previous_etag: str,
        content_type: str,
    ) -> WriteResult:
        total = laid[-1][1]
        # A version this process does not hold (another worker wrote it, or a full publish did) is read
        # whole, and kept, when that costs at most twice the ranges the uploaded parts need, or when this
        # process wrote it (this process is then the one writing the object) and it fits beside what is
        # kept: the writes that follow here read nothing, where ranges would be read at every one. A
        # write after another worker's reads at most twice what it would have. Where keeping it would
        # push out another manifest, that one would be read whole in turn at its next write, and so on
        # round the projects, each reading whole what ranges would have served.
        if (
            total <= self.recent_bytes // 4
            and self._recalled(key, previous_etag) is None
            and (
                total <= 2 * _copied_into_uploads(laid, parts)
                or (self._wrote(key, previous_etag) and self._room_for(key, total))
            )
        ):
            self._read_whole(key, previous_etag)
        try:
            upload = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )
        except ClientError as exc:
            if _error_code(exc) in _NOT_IMPLEMENTED_CODES:
                raise _PartCopyRefused from exc
            raise self._fail("multipart upload to", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("multipart upload to", key, exc) from exc
        upload_id = upload["UploadId"]
        done: list[dict[str, Any]] = []
        uploaded = 0
        try:
            for number, part in enumerate(parts, start=1):
                if part.source is not None:
                    response = self.client.upload_part_copy(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": self.bucket, "Key": key},
                        CopySourceRange=f"bytes={part.source}-{part.source + part.end - part.start - 1}",
                        CopySourceIfMatch=previous_etag,
                    )
                    etag = response["CopyPartResult"]["ETag"]
                else:
                    body = self._assemble(key, laid, part.start, part.end, previous_etag)
                    uploaded += len(body)
                    response = self.client.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                    )
                    etag = response["ETag"]
                done.append({"PartNumber": number, "ETag": etag})
            response = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": done},
                IfMatch=previous_etag,
            )
        except (ClientError, BotoCoreError, StorageError) as exc:
            self._abort(key, upload_id)
            if isinstance(exc, ClientError) and _error_code(exc) in _NOT_IMPLEMENTED_CODES:
                raise _PartCopyRefused from exc
            self._forget(key)
            if isinstance(exc, ClientError):
                raise self._conditional_fail("multipart write to", key, exc) from exc
            if isinstance(exc, StorageError):
                raise
            raise self._fail("multipart write to", key, exc) from exc
        etag = str(response["ETag"])
        if total <= self.recent_bytes // 4 and self._recalled(key, previous_etag) is not None:
            # The new version is the kept one with the changes spliced in: kept in turn, so that the next
            # write reads nothing back either.
            self._remember(key, etag, self._assemble(key, laid, 0, total, previous_etag))
        else:
            self._forget(key)
            self._note_written(key, etag)
        return WriteResult(etag, uploaded, True)

    def _note_written(self, key: str, etag: str) -> None:
        with self._recent_lock:
            self._written.pop(key, None)
            self._written[key] = etag
            while len(self._written) > WRITTEN_KEYS:
                self._written.popitem(last=False)

    def _wrote(self, key: str, etag: str) -> bool:
        """Whether version ``etag`` of ``key`` is the last this process wrote by parts (not kept)."""
        with self._recent_lock:
            return self._written.get(key) == etag

    def _room_for(self, key: str, size: int) -> bool:
        """Whether ``size`` bytes of ``key`` can be kept without dropping another object kept."""
        with self._recent_lock:
            held = sum(len(body) for other, (_, body) in self._recent.items() if other != key)
        return held + size <= self.recent_bytes

    def _abort(self, key: str, upload_id: str) -> None:
        # An upload left open costs storage until the bucket's lifecycle rule; the write failed anyway.
        with contextlib.suppress(ClientError, BotoCoreError):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def _assemble(
        self, key: str, laid: list[tuple[int, int, Piece]], start: int, end: int, previous_etag: str
    ) -> bytes:
        """Bytes ``[start, end)`` of the new object: new bytes as given, copied ranges from the previous
        version as this process last wrote or read it, else read from S3 (each read conditional on its
        ETag): a small object whole in one read, a large one range by range."""
        previous = self._recalled(key, previous_etag)
        whole = bool(laid) and start == 0 and end == laid[-1][1] <= self.recent_bytes // 4
        if previous is None and whole and any(isinstance(piece, Copy) for _, _, piece in laid):
            previous = self._read_whole(key, previous_etag)
        # Views joined once: the new bytes are copied once, where slicing, appending to a growing buffer
        # and freezing it copied every byte three times or more (a manifest of megabytes each publish).
        held = memoryview(previous) if previous is not None else None
        out: list[bytes | memoryview] = []
        for a, b, piece in laid:
            lo, hi = max(a, start), min(b, end)
            if lo >= hi:
                continue
            if isinstance(piece, bytes):
                out.append(memoryview(piece)[lo - a : hi - a])
            elif held is not None:
                if piece.start + hi - a > len(held):
                    raise ManifestChanged(f"s3://{self.bucket}/{key} is shorter than its recorded version")
                out.append(held[piece.start + lo - a : piece.start + hi - a])
            else:
                out.append(self._read_range(key, piece.start + lo - a, piece.start + hi - a, previous_etag))
        return b"".join(out)

    def _read_whole(self, key: str, etag: str) -> bytes:
        """Version ``etag`` of ``key`` (a read conditional on it), kept for the writes that follow."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=etag)
            data = bytes(response["Body"].read())
        except ClientError as exc:
            raise self._conditional_fail("read of", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("read of", key, exc) from exc
        self._remember(key, etag, data)
        return data

    def _read_range(self, key: str, start: int, end: int, etag: str) -> bytes:
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}", IfMatch=etag
            )
            data = bytes(response["Body"].read())
        except ClientError as exc:
            raise self._conditional_fail("read of", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("read of", key, exc) from exc
        if len(data) != end - start:
            raise ManifestChanged(f"s3://{self.bucket}/{key} is shorter than its recorded version")
        return data

    def delete_keys(self, keys: list[str]) -> None:
        """Delete these objects (a missing one is no error), 1,000 per request."""
        for key in keys:
            self._forget(key)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except (BotoCoreError, ClientError) as exc:
                raise self._fail("delete in", keys[start], exc) from exc

    def get_bytes(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return bytes(response["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._fail("read of", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("read of", key, exc) from exc

    def list_keys(self, prefix: str, *, delimiter: str | None = None) -> list[str]:
        """Keys (or, with a delimiter, common prefixes) under ``prefix``."""
        paginator = self.client.get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        out: list[str] = []
        try:
            for page in paginator.paginate(**kwargs):
                if delimiter:
                    out.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
                else:
                    out.extend(o["Key"] for o in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("listing of", prefix, exc) from exc
        return out

    def list_objects(self, bucket: str, prefix: str) -> list[str]:
        """Every key under ``prefix`` in any ``bucket``."""
        paginator = self.client.get_paginator("list_objects_v2")
        out: list[str] = []
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                out.extend(o["Key"] for o in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 listing of s3://{bucket}/{prefix} failed: {exc}") from exc
        return out

    def exists(self, key: str) -> bool:
        """Whether ``key`` is an object in the bucket."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._fail("head of", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("head of", key, exc) from exc
        return True

    def read_head(self, source_ref: str, nbytes: int) -> bytes | None:
        """The first ``nbytes`` of the object ``source_ref`` (any bucket), or None when it is missing."""
        tagged = self.read_tagged(source_ref, nbytes)
        return tagged[0] if tagged is not None else None

    def read_tagged(self, source_ref: str, nbytes: int) -> tuple[bytes, str] | None:
        """The first ``nbytes`` of the object ``source_ref`` (any bucket) and its ETag, or None when it is
        missing."""
        bucket, key = split_s3_url(source_ref)
        try:
            response = self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{nbytes - 1}")
            return bytes(response["Body"].read()), str(response.get("ETag", ""))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "InvalidRange"):
                return None
            raise StorageError(f"S3 read of {source_ref} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 read of {source_ref} failed: {exc}") from exc

    def etag(self, source_ref: str) -> str | None:
        """The ETag of the object ``source_ref`` (any bucket), or None when it is missing."""
        bucket, key = split_s3_url(source_ref)
        try:
            return str(self.client.head_object(Bucket=bucket, Key=key).get("ETag", ""))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError(f"S3 head of {source_ref} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 head of {source_ref} failed: {exc}") from exc

    def reachable(self) -> bool:
        """Whether the bucket answers."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError):
            return False
        return True
