"""Redis away (a loopback port nothing listens on): every request that needs it answers 503 with a JSON
error and ``Retry-After``, never 500, and logs one line without the Redis password or a traceback.
Requests refused before Redis is needed (no secret, a bad body) are refused as usual. The
Rekognition-compatible endpoint answers the same in AWS JSON 1.1 (``ServiceUnavailableException``), for
Redis and for S3 (also a closed port here), and boto3 retries it after the hint."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from flask import Flask
from flask.testing import FlaskClient

from plugin.localstack.processes import free_port, port_in_use
from sync_service.config import DEFAULT_ACCOUNT_ID, SECRET_HEADER, Settings
from sync_service.web import awsjson
from sync_service.web.app import create_app
from sync_service.web.auth import SESSION_KEY
from sync_service.web.unavailable import RETRY_AFTER_SECONDS
from tests.realparts import served
from tests.signin import SERVICE_KEY, bearer

SECRET = "redis-away-webhook-secret-0123456789"
KEY_ID = "AKIDREDISAWAY"
KEY_SECRET = "redis-away-secret-access-key-0123456789"
PASSWORD = f"rpw-{secrets.token_hex(8)}"
TASKS_CREATED = {"action": "TASKS_CREATED", "project": {"id": 7, "token": "t"}, "tasks": [{"id": 1}]}
REGION = "us-east-1"
DATASET_ARN = f"arn:aws:rekognition:{REGION}:{DEFAULT_ACCOUNT_ID}:project/parts/dataset/train/1700000000000"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDS3AWAY")  # S3 is refused, not short of credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-away-secret-access-key")
    closed = free_port()  # bound by the OS a moment, then released: nothing listens there
    assert not port_in_use(closed)
    return create_app(
        Settings(
            ls_url=f"http://127.0.0.1:{free_port()}",
            ls_api_key="unused",
            redis_url=f"redis://:{PASSWORD}@127.0.0.1:{closed}/0",
            s3_endpoint=f"http://127.0.0.1:{free_port()}",
            s3_region="us-east-1",
            bucket="bucket",
            prefix="customlabels",
            webhook_secret=SECRET,
            api_access_key_id=KEY_ID,
            api_secret_access_key=KEY_SECRET,
            service_api_key=SERVICE_KEY,
        )
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _webhook(client: FlaskClient) -> object:
    return client.post("/webhooks/label-studio", json=TASKS_CREATED, headers={SECRET_HEADER: SECRET})


def _console(client: FlaskClient) -> object:
    with client.session_transaction() as session:  # a signed-in browser's cookie: its record is in Redis
        session[SESSION_KEY] = "a-session-id"
    return client.get("/console/projects/7")


@pytest.mark.parametrize(
    "send",
    [
        _webhook,
        lambda c: c.get("/api/v1/projects/7/status", headers=bearer()),
        lambda c: c.post("/api/v1/projects/7/resync", headers=bearer()),
        _console,
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


def _signed(target: str, params: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """A body and the headers boto3 would send for ``RekognitionService.<target>``."""
    body = json.dumps(params).encode()
    request = AWSRequest(
        method="POST",
        url="http://localhost/",
        data=body,
        headers={"X-Amz-Target": f"RekognitionService.{target}", "Content-Type": awsjson.CONTENT_TYPE},
    )
    botocore.auth.SigV4Auth(Credentials(KEY_ID, KEY_SECRET), "rekognition", REGION).add_auth(request)
    return body, dict(request.headers.items())


@pytest.mark.parametrize(
    ("target", "params", "part"),
    [
        ("DescribeDataset", {"DatasetArn": DATASET_ARN}, "Redis"),  # the project cache comes first
        ("DescribeProjects", {}, "S3"),  # every project.json under the prefix
    ],
    ids=["redis", "s3"],
)
def test_the_rekognition_endpoint_is_503_too(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, target: str, params: dict[str, str], part: str
) -> None:
    body, headers = _signed(target, params)
    with caplog.at_level(logging.WARNING):
        response = client.post("/", data=body, headers=headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response.headers["x-amz-retry-after"] == str(RETRY_AFTER_SECONDS * 1000)
    assert response.content_type == awsjson.CONTENT_TYPE
    assert response.headers["x-amzn-ErrorType"] == awsjson.SERVICE_UNAVAILABLE
    error = response.get_json(force=True)
    assert error["__type"] == awsjson.SERVICE_UNAVAILABLE
    assert error["Message"].startswith(f"{part} is unavailable; try again later (request ")
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]
    record = caplog.records[0]
    assert f"{target}: {part} is unavailable" in record.getMessage()
    assert record.exc_info is None  # no traceback: nothing is broken but the connection
    assert PASSWORD not in caplog.text
    assert PASSWORD not in response.get_data(as_text=True)


@pytest.fixture
def endpoint(app: Flask) -> Iterator[str]:
    with served(app) as url:
        yield url


def test_boto3_retries_the_503_after_the_hint(endpoint: str) -> None:
    """botocore's default (standard) retry mode retries a 503 and waits ``x-amz-retry-after``; once out
    of attempts it raises a ClientError naming ServiceUnavailableException."""
    rekognition = boto3.client(
        "rekognition",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=KEY_SECRET,
        config=Config(retries={"mode": "standard", "total_max_attempts": 2}),
    )
    began = time.monotonic()
    with pytest.raises(ClientError) as raised:
        rekognition.describe_dataset(DatasetArn=DATASET_ARN)
    waited = time.monotonic() - began
    answer = raised.value.response
    assert answer["Error"]["Code"] == awsjson.SERVICE_UNAVAILABLE
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert waited >= RETRY_AFTER_SECONDS
