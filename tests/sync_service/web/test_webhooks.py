"""POST /webhooks/label-studio against a real Redis: secret, schema, size, coalescing."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue

from sync_service.config import SECRET_HEADER, Settings
from sync_service.edges.state import ProjectState
from sync_service.web.app import create_app
from tests.builders import service_settings

SECRET = "a-webhook-secret-of-32-characters"
PROJECT = {"id": 7, "title": "Cats", "token": "project-token", "label_config": "<View/>"}


@pytest.fixture
def settings() -> Settings:
    return service_settings(webhook_secret=SECRET, max_webhook_bytes=64 * 1024)


@pytest.fixture
def redis(redis_url: str) -> Redis:
    return Redis.from_url(redis_url)


@pytest.fixture
def client(settings: Settings, redis: Redis) -> Iterator[FlaskClient]:
    app = create_app(settings, redis=redis)
    yield app.test_client()
    ProjectState(redis, PROJECT["id"]).forget()
    Queue(settings.queue, connection=redis).delete(delete_jobs=True)


def post(client: FlaskClient, body: object, *, secret: str | None = SECRET, raw: bytes | None = None):  # type: ignore[no-untyped-def]
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    return client.post(
        "/webhooks/label-studio", data=raw if raw is not None else orjson.dumps(body), headers=headers
    )


def queued(settings: Settings, redis: Redis) -> int:
    return Queue(settings.queue, connection=redis).count


def event(task_id: int, action: str = "ANNOTATION_CREATED") -> dict[str, object]:
    return {"action": action, "project": PROJECT, "task": {"id": task_id}, "annotation": {"id": task_id * 10}}


@pytest.mark.parametrize("secret", [None, "", "wrong-secret-of-the-same-length!!", SECRET[:-1]])
def test_without_the_secret_401_and_nothing_changes(
    client: FlaskClient, settings: Settings, redis: Redis, secret: str | None
) -> None:
    response = post(client, event(1), secret=secret)
    assert response.status_code == 401
    assert queued(settings, redis) == 0
    assert not redis.exists(ProjectState(redis, 7).k_dirty, ProjectState(redis, 7).k_pending)


def test_invalid_json_is_400_with_a_message(client: FlaskClient, settings: Settings, redis: Redis) -> None:
    response = post(client, None, raw=b'{"action": "TASKS_CREATED", ')
    assert response.status_code == 400
    assert "not valid JSON" in response.get_json()["error"]
    assert queued(settings, redis) == 0


def test_a_payload_failing_the_schema_is_400_naming_the_field(
    client: FlaskClient, settings: Settings, redis: Redis
) -> None:
    response = post(client, {"action": "TASKS_CREATED", "project": PROJECT, "tasks": [{"id": "x"}]})
    assert response.status_code == 400
    assert "tasks" in response.get_json()["fields"]
    assert queued(settings, redis) == 0
    assert not redis.exists(ProjectState(redis, 7).k_pending)


def test_a_body_over_the_limit_is_413(client: FlaskClient, settings: Settings, redis: Redis) -> None:
    big = {"action": "TASKS_CREATED", "project": PROJECT, "tasks": [{"id": i + 1} for i in range(20_000)]}
    response = post(client, big)
    assert response.status_code == 413
    assert queued(settings, redis) == 0


def test_events_coalesce_into_one_publish_job(client: FlaskClient, settings: Settings, redis: Redis) -> None:
    for task_id in (1, 2, 3, 2):
        assert post(client, event(task_id)).status_code == 202
    assert queued(settings, redis) == 1
    state = ProjectState(redis, 7)
    batch = state.take()
    assert batch.dirty == {1, 2, 3}
    assert batch.pending == 4


def test_deletions_and_config_changes_are_recorded(client: FlaskClient, redis: Redis) -> None:
    post(client, {"action": "TASKS_DELETED", "project": PROJECT, "tasks": [{"id": 5}]})
    post(client, {"action": "ANNOTATIONS_DELETED", "project": PROJECT, "annotations": [{"id": 50}]})
    post(client, {"action": "PROJECT_UPDATED", "project": PROJECT})
    batch = ProjectState(redis, 7).take()
    assert (batch.gone, batch.gone_annotations, batch.full) == ({5}, {50}, True)


def test_other_actions_are_acknowledged_and_ignored(
    client: FlaskClient, settings: Settings, redis: Redis
) -> None:
    response = post(client, {"action": "REVIEW_CREATED", "project": PROJECT})
    assert response.status_code == 202
    assert response.get_json()["status"] == "ignored"
    assert queued(settings, redis) == 0


def test_a_publish_that_started_lets_the_next_event_queue_again(
    client: FlaskClient, settings: Settings, redis: Redis
) -> None:
    post(client, event(1))
    ProjectState(redis, 7).unschedule()  # what a publish does first
    post(client, event(2))
    assert queued(settings, redis) == 2


def test_healthz(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_the_openapi_document_describes_the_webhook(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert "/webhooks/label-studio" in doc["paths"]
    payload = doc["components"]["schemas"]["WebhookPayload"]
    assert set(payload["required"]) == {"action", "project"}


def test_a_body_that_is_not_an_object_is_400_with_a_message(client: FlaskClient) -> None:
    """Found by schemathesis: ``fields`` was a list here, where the document promises an object."""
    response = post(client, [event(1)])
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "the payload does not match the webhook schema: the body must be a JSON object"
    }


@pytest.mark.parametrize("where", ["project", "tasks"])
def test_an_id_past_64_bits_signed_is_400(
    client: FlaskClient, settings: Settings, redis: Redis, where: str
) -> None:
    """Label Studio's ids are 64-bit signed: a larger one (orjson reads up to 2**64 - 1) is no id of its."""
    body: dict[str, object] = {"action": "TASKS_CREATED", "project": PROJECT, "tasks": [{"id": 1}]}
    body[where] = {"id": 2**63} if where == "project" else [{"id": 2**63}]
    response = post(client, body)
    assert response.status_code == 400
    assert where in response.get_json()["fields"]
    assert queued(settings, redis) == 0


def test_a_wrong_method_is_405_in_json_with_allow(client: FlaskClient) -> None:
    response = client.get("/webhooks/label-studio")
    assert response.status_code == 405
    assert response.is_json
    assert "POST" in response.headers["Allow"]


def test_the_openapi_document_describes_every_route_but_the_console(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    served = {
        (rule.rule.replace("<int:project_id>", "{project_id}"), method)
        for rule in client.application.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        if not rule.rule.startswith(("/console", "/static"))
    }
    assert documented == served
