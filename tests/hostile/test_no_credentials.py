"""Every route of the app (read from Flask's URL map, not a list kept by hand), asked without any
credential: the REST API answers 401 with ``WWW-Authenticate``, the console redirects to its sign-in
page, the webhook and the Rekognition-compatible endpoint refuse (shared secret, SigV4); only the health
checks, the OpenAPI document and the sign-in page answer. Redis, S3 and Label Studio are unchanged."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask
from redis import Redis

from sync_service.config import Settings
from sync_service.domain.projects import ProjectInfo, Projects
from sync_service.edges.s3 import Storage, client_for
from sync_service.web.app import create_app
from tests import realparts
from tests.signin import SERVICE_KEY

PUBLIC = {"/healthz", "/readyz", "/api/v1/openapi.json", "/console/sign-in"}
SECRET = "no-credentials-webhook-secret-0123456789"


@pytest.fixture(scope="module")
def parts(
    redis_db: realparts.RedisDb, s3: realparts.S3, label_studio: realparts.LabelStudioServer
) -> Iterator[tuple[Flask, Redis, str, int]]:
    own = realparts.claim_redis_db(redis_db.url)
    redis = Redis.from_url(own.url)
    bucket = f"nocreds-{uuid.uuid4().hex[:12]}"
    s3.client.create_bucket(Bucket=bucket)
    project = label_studio.client().projects.create(title=f"No credentials {uuid.uuid4().hex[:6]}")
    settings = Settings(
        ls_url=label_studio.url, ls_api_key=label_studio.token, redis_url=own.url, s3_endpoint=s3.endpoint_url,
        s3_region=s3.region, bucket=bucket, webhook_secret=SECRET, queue=f"nocreds-{uuid.uuid4().hex}",
        api_access_key_id="AKIDNOCREDS", api_secret_access_key="no-credentials-secret-0123456789",
        service_api_key=SERVICE_KEY,
    )  # fmt: skip
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
            env.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
            storage = Storage(client_for(settings), bucket)
            Projects(redis, storage, settings.prefix).save(
                ProjectInfo(label_studio_project_id=project.id, title=project.title, slug="nocreds")
            )
            yield create_app(settings, redis=redis), redis, bucket, int(project.id)
    finally:
        label_studio.client().projects.delete(id=project.id)
        realparts.empty_and_delete_bucket(s3.client, bucket)
        redis.close()
        realparts.release_redis_db(own)


def _state(redis: Redis, s3: realparts.S3, bucket: str, label_studio: realparts.LabelStudioServer) -> Any:
    keys = sorted(redis.scan_iter(count=1000))
    values = {key: hashlib.sha256(redis.dump(key) or b"").hexdigest() for key in keys}
    objects = {o["Key"]: o["ETag"] for o in s3.client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    headers = {"Authorization": f"Token {label_studio.token}"}
    projects = httpx.get(f"{label_studio.url}/api/projects/", headers=headers, timeout=30).json()
    users = httpx.get(f"{label_studio.url}/api/users/", headers=headers, timeout=30).json()
    seen = sorted((p["id"], p["title"], p.get("task_number")) for p in projects.get("results", projects))
    return values, objects, seen, sorted(u["id"] for u in users)


def _urls(app: Flask, project_id: int) -> Iterator[tuple[str, str, str]]:
    """Each route and method, with its variables filled in (a project of ours where one is asked for)."""
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            values = {
                name: project_id if isinstance(conv, type(app.url_map.converters["int"])) or name == "project_id"
                else ("resync" if name == "action" else "x")
                for name, conv in rule._converters.items()
            }  # fmt: skip
            path = rule.rule
            for name, value in values.items():
                path = path.replace(f"<int:{name}>", str(value)).replace(f"<path:{name}>", str(value))
                path = path.replace(f"<{name}>", str(value))
            yield rule.rule, method, path


def test_every_route_without_credentials(
    parts: tuple[Flask, Redis, str, int], s3: realparts.S3, label_studio: realparts.LabelStudioServer
) -> None:
    app, redis, bucket, project_id = parts
    client = app.test_client()
    before = _state(redis, s3, bucket, label_studio)
    routes = list(_urls(app, project_id))
    assert {r for r, _, _ in routes} >= {"/api/v1/projects/<int:project_id>/resync", "/console/", "/"}
    for rule, method, path in routes:
        response = client.open(path, method=method)
        what = f"{method} {path}: {response.status_code} {response.get_data(as_text=True)[:200]}"
        if rule in PUBLIC and method == "GET":
            assert response.status_code in (200, 503), what
        elif rule.startswith("/api/v1/"):
            assert response.status_code == 401, what
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), what
        elif rule.startswith("/console/"):
            assert response.status_code in (302, 403), what  # 403: the sign-in form's own token
            if response.status_code == 302:
                assert "/console/sign-in" in response.headers["Location"], what
        elif rule == "/webhooks/label-studio":
            assert response.status_code == 401, what
        elif rule == "/":
            assert response.status_code == 400, what
            assert response.get_json(force=True)["__type"] == "AccessDeniedException", what
        elif rule.startswith("/static/"):
            assert response.status_code == 404, what
        else:
            raise AssertionError(f"a route this test does not know: {what}")
    assert _state(redis, s3, bucket, label_studio) == before
