"""Smoke test of the real-parts fixtures: Label Studio, Redis and S3 answer and keep data."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import redis

from plugin.localstack.http_calls import http_get
from sync_service.domain.taskcache import label_config_digest, payload_config_digest, payload_parts
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


def test_an_annotation_payload_carries_the_label_config_the_api_gives(
    label_studio: realparts.LabelStudioServer, webhook_receiver: realparts.WebhookReceiver
) -> None:
    # The publisher trusts the config digest of ANNOTATION_* payloads instead of reading the project:
    # the payload's label_config must be the API's, to the byte.
    api = httpx.Client(
        base_url=label_studio.url, headers={"Authorization": f"Token {label_studio.token}"}, timeout=60
    )
    project = api.post("/api/projects/", json={"title": "payload config", "label_config": CONFIG})
    project.raise_for_status()
    pid = project.json()["id"]
    try:
        api.post(
            "/api/webhooks/",
            json={"project": pid, "url": f"{webhook_receiver.url}/hook", "send_payload": True},
        ).raise_for_status()
        api.post(f"/api/projects/{pid}/import", json=[{"data": {"image": "s3://b/a.jpg"}}]).raise_for_status()
        (task_id,) = [t["id"] for t in api.get("/api/tasks/", params={"project": pid}).json()["tasks"]]
        result = [
            {"from_name": "scene", "to_name": "image", "type": "choices", "value": {"choices": ["indoor"]}}
        ]
        api.post(f"/api/tasks/{task_id}/annotations/", json={"result": result}).raise_for_status()
        delivery = webhook_receiver.wait_for_action("ANNOTATION_CREATED")
        config = api.get(f"/api/projects/{pid}").json()["label_config"]
    finally:
        api.delete(f"/api/projects/{pid}/")
    body = delivery.body
    assert isinstance(body, dict)
    assert body["project"]["label_config"] == config
    parts = payload_parts(body["annotation"], body["task"], body["project"])
    assert parts is not None and payload_config_digest(parts[1]) == label_config_digest(config)
