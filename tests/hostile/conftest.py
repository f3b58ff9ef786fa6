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
    own = realparts.claim_redis_db(redis_db.url)
    client = Redis.from_url(own.url)
    try:
        yield client
    finally:
        client.close()
        realparts.release_redis_db(own)
