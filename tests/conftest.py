"""Session fixtures for end-to-end tests against the real parts (see ``tests/realparts.py``).

- ``label_studio``: one real Label Studio server per session (first start migrates: ~20-35 s).
- ``ls_client``: a ``label_studio_sdk.LabelStudio`` client for it (``max_retries=0``).
- ``redis_url``: a claimed, empty database on the local Redis (flushed at the end, if still ours).
- ``s3``: a moto S3 server with a boto3 client; ``bucket``: a fresh bucket per test.
- ``webhook_receiver``: a loopback HTTP server recording what Label Studio posts.

Tests under ``tests/e2e/`` are marked ``e2e`` automatically.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plugin.localstack.moto_s3 import start_s3_server
from tests import realparts

E2E_DIR = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e/ with ``e2e``."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[realparts.LabelStudioServer]:
    """A real Label Studio server for the whole session (admin user and legacy token)."""
    with realparts.label_studio(tmp_path_factory.mktemp("label-studio")) as server:
        yield server


@pytest.fixture(scope="session")
def ls_client(label_studio: realparts.LabelStudioServer) -> Any:
    """A label-studio-sdk client of the session's server (no retries: creates are not idempotent)."""
    return label_studio.client()


@pytest.fixture(scope="session")
def redis_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[realparts.RedisDb]:
    """A Redis database index (1..15) that was empty, claimed for this session; flushed at the end."""
    with realparts.redis_db(tmp_path_factory.mktemp("redis")) as claimed:
        yield claimed


@pytest.fixture(scope="session")
def redis_url(redis_db: realparts.RedisDb) -> str:
    """URL of the session's Redis database, e.g. ``redis://127.0.0.1:6379/3``."""
    return redis_db.url


@pytest.fixture(scope="session")
def s3() -> Iterator[realparts.S3]:
    """A moto S3 server (a real HTTP endpoint on loopback) and a boto3 client for it."""
    with start_s3_server() as server:
        yield realparts.S3(endpoint_url=server.endpoint_url, client=realparts.s3_client(server.endpoint_url))


@pytest.fixture
def bucket(s3: realparts.S3) -> Iterator[str]:
    """A fresh, empty bucket for one test (emptied and deleted after it)."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.client.create_bucket(Bucket=name)
    yield name
    realparts.empty_and_delete_bucket(s3.client, name)


@pytest.fixture
def webhook_receiver() -> Iterator[realparts.WebhookReceiver]:
    """A loopback HTTP server recording the webhooks it receives (answers 200)."""
    receiver = realparts.WebhookReceiver().start()
    yield receiver
    receiver.stop()
