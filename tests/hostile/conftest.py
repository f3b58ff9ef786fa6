"""Fixtures of the hostile tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis

from tests import realparts


@pytest.fixture(scope="module")
def own_redis(redis_db: realparts.RedisDb) -> Iterator[Redis]:
    """A database of its own, claimed empty on the session's Redis (flushed after, as ours only): the
    workers of other tests write into the session's database, and a rejected request must change none."""
    with realparts.own_redis_client(redis_db.url) as client:
        yield client
