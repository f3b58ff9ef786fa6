"""The console's cookie and the once-per-project queue, without Label Studio (people signing in against
the real Label Studio: tests/e2e/test_sign_in.py; every route without credentials:
tests/hostile/test_no_credentials.py)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus

from sync_service.config import Settings
from sync_service.web.app import create_app
from sync_service.web.auth import Principal
from sync_service.web.once import enqueue_once
from tests import realparts

SETTINGS = Settings(
    ls_api_key="unused", bucket="bucket", webhook_secret="s" * 32, redis_url="redis://127.0.0.1:1/0"
)


def noop(*args: Any) -> None:
    """A job that does nothing (never run here)."""


@pytest.fixture
def redis(redis_db: realparts.RedisDb) -> Iterator[Redis]:
    with realparts.own_redis_client(redis_db.url) as client:
        yield client


@pytest.mark.parametrize(
    ("service_url", "base_url", "secure"),
    [
        ("http://127.0.0.1:5000", "http://localhost", False),
        ("https://labels.example.com", "http://localhost", True),  # served over https behind a proxy
        ("http://127.0.0.1:5000", "https://localhost", True),  # this request came over https
    ],
)
def test_the_session_cookie_is_httponly_samesite_and_secure_over_https(
    service_url: str, base_url: str, secure: bool
) -> None:
    app = create_app(Settings(**{**_fields(SETTINGS), "service_url": service_url}))
    response = app.test_client().get("/console/sign-in", base_url=base_url)
    assert response.status_code == 200 and 'name="password"' in response.get_data(as_text=True)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("customlabels_session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is secure


def test_a_sign_in_form_without_its_token_is_refused_before_label_studio_is_asked() -> None:
    client = create_app(SETTINGS).test_client()
    answer = client.post("/console/sign-in", data={"email": "a@b.c", "password": "x", "token": "forged"})
    assert answer.status_code == 403  # nothing listens at the Label Studio URL: it was never asked


def _fields(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


def test_an_expensive_action_is_queued_once_while_it_waits(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    queue = Queue(f"once-{uuid.uuid4().hex}", connection=redis)
    alice = Principal(name="user 3 (alice@example.com)", key="a", ls=None)
    bob = Principal(name="user 4 (bob@example.com)", key="b", ls=None)
    with caplog.at_level(logging.INFO, logger="sync_service.web.audit"):
        first = enqueue_once(queue, 7, "resync", noop, 7, who=alice)
        again = enqueue_once(queue, 7, "resync", noop, 7, who=bob)
        other_project = enqueue_once(queue, 8, "resync", noop, 8, who=bob)
        other_action = enqueue_once(queue, 7, "snapshot", noop, 7, who=bob)
    assert first.new and not again.new and again.job_id == first.job_id
    assert other_project.new and other_action.new and queue.count == 3
    text = caplog.text
    assert f"resync queued by user 3 (alice@example.com) (job {first.job_id})" in text
    assert "already queued" in text and "asked again by user 4 (bob@example.com)" in text

    job = Job.fetch(first.job_id, connection=redis)
    job.set_status(JobStatus.STARTED)  # a worker took it: the next request is new work
    later = enqueue_once(queue, 7, "resync", noop, 7, who=alice)
    assert later.new and later.job_id != first.job_id


def test_requests_at_the_same_moment_queue_one_job(redis: Redis) -> None:
    queue = Queue(f"once-{uuid.uuid4().hex}", connection=redis)
    who = Principal(name="the service API key", key="service", ls=None)
    results: list[bool] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        results.append(enqueue_once(queue, 9, "from_s3", noop, 9, who=who).new)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True] and queue.count == 1
