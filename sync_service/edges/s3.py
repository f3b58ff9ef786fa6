"""The S3 edge: the one module that talks to S3 (AWS, MinIO or moto's server) through boto3.

Objects are replaced whole: a manifest is written to a local spool file first and then uploaded in one
``PutObject`` (or one multipart upload, completed last), so readers see the old object or the new one,
never a part.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sync_service.config import Settings
from sync_service.errors import StorageError

SPOOL_BYTES = 8 * 1024 * 1024


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

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

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
        stream.seek(0)
        try:
            self.client.upload_fileobj(
                _KeptOpen(stream), self.bucket, key, ExtraArgs={"ContentType": content_type}
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("upload to", key, exc) from exc

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Write ``data`` to ``key`` in one request."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("write to", key, exc) from exc

    def delete_keys(self, keys: list[str]) -> None:
        """Delete these objects (a missing one is no error), 1,000 per request."""
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
