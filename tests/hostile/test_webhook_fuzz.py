"""Hostile webhook bodies against the Flask app and a real Redis: never a 500, and a refused request
(401, 400, 413) never changes what the service keeps in Redis (every key under ``cl:``) nor its queue."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from redis import Redis
from rq import Queue

from sync_service.config import SECRET_HEADER, Settings
from sync_service.domain.events import HANDLED
from sync_service.web.app import create_app
from tests.builders import service_settings

SECRET = "hostile-webhook-secret-0123456789abcdef"
MAX_BODY = 64 * 1024
REFUSED = (400, 401, 413)
PROJECTS = range(990_001, 990_006)  # ids the fuzzed bodies mostly name; their keys are dropped after


@pytest.fixture(scope="module")
def redis(own_redis: Redis) -> Redis:
    return own_redis


@pytest.fixture(scope="module")
def app_settings() -> Settings:
    return service_settings(webhook_secret=SECRET, max_webhook_bytes=MAX_BODY)


@pytest.fixture(scope="module")
def client(app_settings: Settings, redis: Redis) -> Iterator[FlaskClient]:
    app = create_app(app_settings, redis=redis)
    yield app.test_client()
    Queue(app_settings.queue, connection=redis).delete(delete_jobs=True)


def snapshot(redis: Redis, queue: str) -> dict[bytes, str]:
    """Every key under ``cl:`` and the service's queue, each with a digest of its value (of its size
    only for the big caches other tests left: reading those whole each time would be slow)."""
    out: dict[bytes, str] = {}
    keys = [*redis.scan_iter("cl:*"), *redis.scan_iter(f"rq:queue:{queue}*")]
    for key in keys:
        kind = redis.type(key)
        counts: dict[bytes, Callable[[bytes], int]] = {
            b"hash": redis.hlen,
            b"set": redis.scard,
            b"list": redis.llen,
            b"zset": redis.zcard,
        }
        size = counts[kind](key) if kind in counts else 0
        if size > 200:
            value: Any = (kind, size)
        elif kind == b"string":
            value = redis.get(key)
        elif kind == b"hash":
            value = sorted(redis.hgetall(key).items())
        elif kind == b"set":
            value = sorted(redis.smembers(key))
        elif kind == b"list":
            value = redis.lrange(key, 0, -1)
        elif kind == b"zset":
            value = redis.zrange(key, 0, -1, withscores=True)
        else:
            value = kind
        out[key] = hashlib.sha256(repr(value).encode()).hexdigest()
    return out


# ------------------------------------------------------------------------------------------- strategies

ids = st.one_of(
    st.sampled_from(list(PROJECTS)),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
refs = st.one_of(
    st.fixed_dictionaries({"id": ids}), ids, st.dictionaries(st.text(max_size=5), ids, max_size=3)
)
actions = st.one_of(st.sampled_from(sorted(HANDLED)), st.text(max_size=80), st.integers(), st.none())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
payloads = st.fixed_dictionaries(
    {"action": actions, "project": refs},
    optional={
        "tasks": st.one_of(st.lists(refs, max_size=5), json_values),
        "task": st.one_of(refs, st.lists(refs, max_size=3), json_values),
        "annotation": st.one_of(refs, st.lists(refs, max_size=3)),
        "annotations": st.one_of(st.lists(refs, max_size=5), json_values),
        "extra": json_values,
    },
)

good_ids = st.integers(min_value=1, max_value=2**40)
good_refs = st.fixed_dictionaries({"id": good_ids}, optional={"data": json_values})
nearly_valid = st.fixed_dictionaries(  # what Label Studio sends, give or take a field
    {
        "action": st.sampled_from(sorted(HANDLED)),
        "project": st.fixed_dictionaries(
            {"id": st.sampled_from(list(PROJECTS))}, optional={"token": st.text()}
        ),
    },
    optional={
        "tasks": st.lists(good_refs, max_size=5),
        "task": good_refs | st.lists(good_refs, max_size=3),
        "annotation": good_refs | st.lists(good_refs, max_size=3),
        "annotations": st.lists(good_refs, max_size=5),
    },
)


def dump(value: Any) -> bytes:
    """JSON as any sender might write it (integers past 64 bits, ``Infinity`` included)."""
    return json.dumps(value).encode()


ODD_BODIES = [
    b'{"action": "TASKS_CREATED", "project": {"id": 990001}, "tasks": [{"id": 1}]}\xff',  # bad UTF-8
    b'{"action": "TASKS_CREATED", "project": {"id": 990001}, "project": {"id": 990002}, "tasks": []}',
    b"[" * 5000 + b"]" * 5000,  # deeper than the JSON parser goes
    b'{"action": "TASKS_CREATED", "project": {"id": 990001}, "tasks": [{"id": 1e400}]}',
    b"\x00" * 64,
    b"",
]
bodies = st.one_of(
    nearly_valid.map(dump),
    nearly_valid.map(dump),
    payloads.map(dump),
    json_values.map(dump),
    st.binary(max_size=300),
    payloads.map(lambda p: dump(p)[: max(1, len(dump(p)) // 2)]),  # cut short
    st.sampled_from(ODD_BODIES),
)
secrets = st.integers(0, 9).flatmap(
    lambda n: (
        st.just(SECRET)
        if n < 6
        else st.one_of(
            st.none(),
            st.just(SECRET[:-1]),
            st.just(SECRET + " "),
            st.text(st.characters(exclude_categories=["Cc"]), max_size=50),
        )
    )
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, secret=secrets)
def test_fuzzed_webhooks_never_500_and_refusals_change_nothing(
    client: FlaskClient, redis: Redis, app_settings: Settings, body: bytes, secret: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret.encode("utf-8", "replace").decode("latin-1")
    before = snapshot(redis, app_settings.queue)
    response = client.post("/webhooks/label-studio", data=body, headers=headers)
    assert response.status_code in (202, *REFUSED), (response.status_code, body[:200])
    assert response.is_json
    event(f"HTTP {response.status_code}")
    if response.status_code in REFUSED:
        assert snapshot(redis, app_settings.queue) == before
    if secret != SECRET:
        assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        b" " * (MAX_BODY + 1),
        orjson.dumps(
            {"action": "TASKS_CREATED", "project": {"id": 990_001}, "tasks": [{"id": 1}] * (MAX_BODY // 8)}
        ),
    ],
)
def test_a_body_over_the_limit_is_413_and_changes_nothing(
    client: FlaskClient, redis: Redis, app_settings: Settings, body: bytes
) -> None:
    before = snapshot(redis, app_settings.queue)
    response = client.post(
        "/webhooks/label-studio",
        data=body,
        headers={SECRET_HEADER: SECRET, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert snapshot(redis, app_settings.queue) == before


def test_a_valid_body_is_recorded(client: FlaskClient, redis: Redis) -> None:
    """The control: the same route does change Redis when the request is good."""
    body = {"action": "TASKS_DELETED", "project": {"id": 990_005}, "tasks": [{"id": 3}]}
    response = client.post(
        "/webhooks/label-studio",
        data=orjson.dumps(body),
        headers={SECRET_HEADER: SECRET, "Content-Type": "application/json"},
    )
    assert response.status_code == 202
    assert redis.sismember("cl:p:990005:gone", "3")
