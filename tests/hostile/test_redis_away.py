"""Redis away (a loopback port nothing listens on): every request that needs it answers 503 with a JSON
error and ``Retry-After``, never 500, and logs one line without the Redis password or a traceback.
Requests refused before Redis is needed (no secret, a bad body) are refused as usual."""

from __future__ import annotations

import json
import logging
import secrets

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from flask import Flask
from flask.testing import FlaskClient

from plugin import services
from sync_service import awsjson
from sync_service.app import RETRY_AFTER_SECONDS, create_app
from sync_service.config import SECRET_HEADER, Settings

SECRET = "redis-away-webhook-secret-0123456789"
KEY_ID = "AKIDREDISAWAY"
KEY_SECRET = "redis-away-secret-access-key-0123456789"
PASSWORD = f"rpw-{secrets.token_hex(8)}"
TASKS_CREATED = {"action": "TASKS_CREATED", "project": {"id": 7, "token": "t"}, "tasks": [{"id": 1}]}


@pytest.fixture
def app() -> Flask:
    closed = services.free_port()  # bound by the OS a moment, then released: nothing listens there
    assert not services.port_in_use(closed)
    return create_app(
        Settings(
            ls_url=f"http://127.0.0.1:{services.free_port()}",
            ls_api_key="unused",
            redis_url=f"redis://:{PASSWORD}@127.0.0.1:{closed}/0",
            s3_endpoint=f"http://127.0.0.1:{services.free_port()}",
            s3_region="us-east-1",
            bucket="bucket",
            prefix="customlabels",
            webhook_secret=SECRET,
            api_access_key_id=KEY_ID,
            api_secret_access_key=KEY_SECRET,
        )
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _webhook(client: FlaskClient) -> object:
    return client.post("/webhooks/label-studio", json=TASKS_CREATED, headers={SECRET_HEADER: SECRET})


@pytest.mark.parametrize(
    "send",
    [
        _webhook,
        lambda c: c.get("/api/v1/projects/7/status"),
        lambda c: c.post("/api/v1/projects/7/resync"),
        lambda c: c.get("/console/projects/7"),
    ],
    ids=["webhook", "status", "resync", "console"],
)
def test_a_request_that_needs_redis_is_503_with_retry_after(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, send: object
) -> None:
    with caplog.at_level(logging.WARNING):
        response = send(client)  # type: ignore[operator]
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response.get_json() == {
        "error": "Service Unavailable",
        "message": "Redis is unavailable; try again later",
    }
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]
    record = caplog.records[0]
    assert "Redis is unavailable" in record.getMessage()
    assert record.exc_info is None  # no traceback: nothing is broken but the connection
    assert PASSWORD not in caplog.text
    assert PASSWORD not in response.get_data(as_text=True)


def test_refusals_come_before_redis(client: FlaskClient) -> None:
    """No secret or a bad body: refused as when Redis is up (these never needed it)."""
    assert client.post("/webhooks/label-studio", json=TASKS_CREATED).status_code == 401
    bad = client.post("/webhooks/label-studio", data=b"{", headers={SECRET_HEADER: SECRET})
    assert bad.status_code == 400
    ignored = client.post(
        "/webhooks/label-studio",
        json={"action": "REVIEW_CREATED", "project": {"id": 7}},
        headers={SECRET_HEADER: SECRET},
    )
    assert ignored.status_code == 202


def test_readyz_names_redis(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["redis"] is False


@pytest.mark.xfail(
    strict=True,
    reason="sync_service/rekognition.py answers Redis away with 500 InternalServerError and a traceback",
)
def test_the_rekognition_endpoint_is_503_too(client: FlaskClient) -> None:
    body = json.dumps({}).encode()
    request = AWSRequest(
        method="POST",
        url="http://localhost/",
        data=body,
        headers={"X-Amz-Target": "RekognitionService.DescribeProjects", "Content-Type": awsjson.CONTENT_TYPE},
    )
    botocore.auth.SigV4Auth(Credentials(KEY_ID, KEY_SECRET), "rekognition", "us-east-1").add_auth(request)
    response = client.post("/", data=body, headers=dict(request.headers.items()))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
