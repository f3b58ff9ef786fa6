"""``Storage.put_file`` uploads a stream whole and leaves it open (boto3 closes a small one)."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from sync_service.edges.s3 import Storage


@pytest.mark.parametrize("size", [20, 9 * 1024 * 1024])  # one PutObject, and a spooled file on disk
def test_put_file_uploads_whole_and_the_stream_stays_open(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bkt")
        storage = Storage(client, "bkt")
        spool = storage.spool()
        spool.write(b"x" * size)
        storage.put_file("k", spool, content_type="application/x-ndjson")
        assert not spool.closed
        spool.seek(0)
        assert spool.read() == b"x" * size
        stored = client.get_object(Bucket="bkt", Key="k")
        assert stored["Body"].read() == b"x" * size and stored["ContentType"] == "application/x-ndjson"
