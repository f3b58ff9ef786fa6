"""Smoke test of the real-parts fixtures: Label Studio, Redis and S3 answer and keep data."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from plugin.localstack.http_calls import http_get
from tests import realparts

pytestmark = pytest.mark.e2e

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Choices name="scene" toName="image" choice="multiple">
    <Choice value="indoor"/><Choice value="outdoor"/>
  </Choices>
</View>"""


def test_label_studio_round_trip(label_studio: realparts.LabelStudioServer, ls_client: Any) -> None:
    status, body = http_get(f"{label_studio.url}/health")
    assert (status, json.loads(body)) == (200, {"status": "UP"})

    project = ls_client.projects.create(title="smoke round trip", label_config=CONFIG)
    try:
        tasks = [
            {
                "data": {"image": "s3://bucket/a.jpg", "dataset": "train"},
                "annotations": [
                    {
                        "result": [
                            {
                                "from_name": "scene",
                                "to_name": "image",
                                "type": "choices",
                                "value": {"choices": ["indoor"]},
                            }
                        ]
                    }
                ],
            },
            {"data": {"image": "s3://bucket/b.jpg", "dataset": "test"}},
        ]
        imported = ls_client.projects.import_tasks(id=project.id, request=tasks, return_task_ids=True)
        assert imported.task_count == 2
        assert imported.annotation_count == 1

        status, body = http_get(
            f"{label_studio.url}/api/projects/{project.id}/export"
            f"?exportType=JSON&download_all_tasks=true&ids[]={imported.task_ids[0]}",
            token=label_studio.token,
        )
        assert status == 200
        (task,) = json.loads(body)
        assert task["data"] == {"image": "s3://bucket/a.jpg", "dataset": "train"}
        (annotation,) = task["annotations"]
        assert annotation["result"][0]["value"] == {"choices": ["indoor"]}

        everything = b"".join(
            ls_client.projects.exports.download_sync(
                id=project.id, export_type="JSON", download_all_tasks=True
            )
        )
        assert sorted(t["data"]["dataset"] for t in json.loads(everything)) == ["test", "train"]
    finally:
        ls_client.projects.delete(id=project.id)


def test_redis_db_is_ours(redis_db: realparts.RedisDb, redis_url: str) -> None:
    assert 1 <= redis_db.db <= 15
    assert redis_url.endswith(f"/{redis_db.db}")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.get(realparts.CLAIM_KEY) == redis_db.claim.encode()
        client.set("smoke:key", "value")
        assert client.get("smoke:key") == b"value"
        client.delete("smoke:key")
    finally:
        client.close()


def test_s3_put_get(s3: realparts.S3, bucket: str) -> None:
    s3.client.put_object(Bucket=bucket, Key="dir/hello.txt", Body=b"hello")
    assert s3.client.get_object(Bucket=bucket, Key="dir/hello.txt")["Body"].read() == b"hello"
    listed = s3.client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [item["Key"] for item in listed] == ["dir/hello.txt"]
