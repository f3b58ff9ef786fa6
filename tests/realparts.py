"""The real parts for end-to-end tests: Label Studio, Redis, S3 (moto server) and a webhook receiver.

The pytest fixtures in ``tests/conftest.py`` are thin wrappers around these. Rules they follow:
- Label Studio is the real server from its own environment (``plugin.localstack.label_studio``), one per test session.
- Redis is the one on 127.0.0.1:6379 when it answers (else one we start). Tests get a database index
  that was EMPTY, claimed with a claim key; only that database is flushed at the end, and only when our
  claim key is still there. Never FLUSHDB/FLUSHALL in a test: delete your own keys.
- S3 is moto's server mode, a real HTTP endpoint; credentials "testing".
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis

from plugin.localstack.label_studio import LabelStudioProcess, ensure_label_studio_env, start_label_studio
from plugin.localstack.processes import free_port
from plugin.localstack.redis_server import RedisProcess, redis_available, start_redis

ADMIN_EMAIL = "admin@customlabels.test"
S3_REGION = "us-east-1"
S3_KEY = "testing"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CLAIM_KEY = "customlabels:tests:claim"
"""Key that marks a Redis database as taken by one test session (value: a random token)."""


# --- Label Studio ------------------------------------------------------------------------------------


@dataclass
class LabelStudioServer:
    """A running Label Studio with its admin account."""

    url: str
    token: str
    username: str
    password: str
    process: LabelStudioProcess

    def client(self, **kwargs: Any) -> Any:
        """A ``label_studio_sdk.LabelStudio`` client (no retries unless asked: creates are not idempotent)."""
        from label_studio_sdk import LabelStudio  # noqa: PLC0415 - heavy import, e2e only

        kwargs.setdefault("max_retries", 0)
        make: Any = LabelStudio  # its __init__ is untyped
        return make(base_url=self.url, api_key=self.token, **kwargs)


@contextmanager
def label_studio(
    workdir: Path, *, timeout: float = 240.0, workers: int = 0, extra_env: Mapping[str, str] | None = None
) -> Iterator[LabelStudioServer]:
    """Install (once, if needed) and start Label Studio with its data under ``workdir``; stop it after.

    ``workers``: 0 for Label Studio's development server, N for N gunicorn processes (see
    ``start_label_studio``); ``extra_env``: Label Studio's settings beyond ours (its database, say)."""
    env_dir = ensure_label_studio_env()
    password = secrets.token_urlsafe(12)
    token = secrets.token_hex(20)  # 40 characters, the most a legacy token may have
    process = start_label_studio(
        workdir / "data",
        free_port(),
        username=ADMIN_EMAIL,
        password=password,
        token=token,
        log_path=workdir / "label-studio.log",
        env_dir=env_dir,
        timeout=timeout,
        workers=workers,
        extra_env=extra_env,
    )
    try:
        yield LabelStudioServer(process.url, token, ADMIN_EMAIL, password, process)
    finally:
        process.stop()


# --- Redis ---------------------------------------------------------------------------------------------


@dataclass
class RedisDb:
    """One Redis database index claimed for this test session."""

    url: str
    db: int
    claim: str
    server: RedisProcess | None = None


def _with_db(url: str, db: int) -> str:
    base = url.rsplit("/", 1)[0] if url.count("/") >= 3 else url.rstrip("/")
    return f"{base}/{db}"


def claim_redis_db(base_url: str, databases: range = range(1, 16)) -> RedisDb:
    """Claim an EMPTY database of the Redis at ``base_url`` with ``SET claim-key token NX``.

    A database counts as ours only if it was empty and, right after our claim, holds nothing but the
    claim key (else another process raced us: we withdraw the claim and try the next one).
    """
    token = f"{os.getpid()}:{secrets.token_hex(8)}"
    for db in databases:
        url = _with_db(base_url, db)
        client = redis.Redis.from_url(url)
        try:
            if client.dbsize() != 0:
                continue
            if not client.set(CLAIM_KEY, token, nx=True):
                continue
            if client.dbsize() == 1:
                return RedisDb(url=url, db=db, claim=token)
            _withdraw(client, token)
        finally:
            client.close()
    raise RuntimeError(f"no empty Redis database among {databases.start}..{databases.stop - 1} at {base_url}")


_IF_CLAIMED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'flush' then redis.call('FLUSHDB') else redis.call('DEL', KEYS[1]) end
return 1
"""
"""Atomically: only if the claim key still holds our token, flush the database (or drop the claim)."""


def _if_claimed(client: redis.Redis, token: str, what: str) -> bool:
    return bool(client.eval(_IF_CLAIMED, 1, CLAIM_KEY, token, what))


def _withdraw(client: redis.Redis, token: str) -> None:
    _if_claimed(client, token, "withdraw")


@contextmanager
def own_redis_client(base_url: str) -> Iterator[redis.Redis]:
    """A client of an empty database claimed on the Redis at ``base_url`` (:func:`claim_redis_db`),
    flushed afterwards if still ours: for tests that must see only their own writes (other tests'
    workers write into the session's database)."""
    own = claim_redis_db(base_url)
    client = redis.Redis.from_url(own.url)
    try:
        yield client
    finally:
        client.close()
        release_redis_db(own)


def release_redis_db(claimed: RedisDb) -> bool:
    """Flush the claimed database, only if our claim key is still there (checked and flushed in one
    Lua script, so atomically). Returns whether it was flushed.
    """
    client = redis.Redis.from_url(claimed.url)
    try:
        return _if_claimed(client, claimed.claim, "flush")
    finally:
        client.close()


@contextmanager
def redis_db(workdir: Path, base_url: str = DEFAULT_REDIS_URL) -> Iterator[RedisDb]:
    """A claimed database on the Redis at ``base_url``, or on a ``redis-server`` we start if none answers."""
    server = None
    if not redis_available(base_url):
        server = start_redis(free_port(), workdir / "redis")
        base_url = server.url
    try:
        claimed = claim_redis_db(base_url)
        claimed.server = server
        try:
            yield claimed
        finally:
            release_redis_db(claimed)
    finally:
        if server is not None:
            server.stop()


# --- S3 ------------------------------------------------------------------------------------------------


@dataclass
class S3:
    """A moto S3 endpoint and a boto3 client for it."""

    endpoint_url: str
    client: Any
    region: str = S3_REGION
    access_key: str = S3_KEY
    secret_key: str = S3_KEY


def s3_client(endpoint_url: str) -> Any:
    """A boto3 S3 client for the moto endpoint (explicit credentials: our environment is not read)."""
    import boto3  # noqa: PLC0415 - heavy import, e2e only

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=S3_REGION,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_KEY,
    )


def empty_and_delete_bucket(client: Any, bucket: str) -> None:
    """Delete every object of ``bucket``, then the bucket."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    client.delete_bucket(Bucket=bucket)


# --- Webhooks ------------------------------------------------------------------------------------------


@dataclass
class Delivery:
    """One request received by the webhook receiver."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class WebhookReceiver:
    """A tiny HTTP server on 127.0.0.1 that records every POST (JSON body) and answers ``status``;
    ``port`` 0: a free one."""

    status: int = 200
    port: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        """The receiver's base URL."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> WebhookReceiver:
        """Start serving in a thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                with receiver._cond:
                    receiver.deliveries.append(Delivery(self.path, dict(self.headers.items()), body))
                    receiver._cond.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def actions(self) -> list[str]:
        """The ``action`` of every delivery so far, in order."""
        with self._cond:
            return [d.body.get("action", "?") if isinstance(d.body, dict) else "?" for d in self.deliveries]

    def clear(self) -> None:
        """Forget the deliveries so far."""
        with self._cond:
            self.deliveries.clear()

    def wait_for(self, predicate: Callable[[Delivery], bool], timeout: float = 10.0) -> Delivery:
        """The first delivery matching ``predicate``, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for delivery in self.deliveries:
                    if predicate(delivery):
                        return delivery
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching webhook delivery; got {self.actions()}")
                self._cond.wait(left)

    def wait_for_action(self, action: str, timeout: float = 10.0) -> Delivery:
        """The first delivery whose body has ``action``."""
        return self.wait_for(lambda d: isinstance(d.body, dict) and d.body.get("action") == action, timeout)


@contextmanager
def served(app: Any) -> Iterator[str]:
    """A WSGI ``app`` served on a free loopback port in a thread; yields its base URL."""
    from werkzeug.serving import make_server  # noqa: PLC0415

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
