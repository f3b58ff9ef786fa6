"""A Redis database serves one home at a time (its ``cl:`` caches are not per stack)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from plugin.localstack.errors import StackError
from plugin.localstack.layout import Layout
from plugin.localstack.plan import Plan
from plugin.localstack.processes import Proc
from plugin.localstack.record import StackRecord, write_record
from plugin.localstack.redis_db import REDIS_OWNER_KEY, claim_redis, redis_owner
from tests import realparts


@pytest.fixture
def own_redis_db(redis_db: realparts.RedisDb) -> Iterator[str]:
    """An empty database of its own (claim_redis drops every ``cl:`` key of the database it takes)."""
    claimed = realparts.claim_redis_db(redis_db.url)
    yield claimed.url
    realparts.release_redis_db(claimed)


def test_a_redis_database_serves_one_home_at_a_time(
    own_redis_db: str, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    redis_url = own_redis_db
    client = redis.Redis.from_url(redis_url)
    a = Plan(layout=Layout(tmp_path / "a"), redis_url=redis_url)
    b = Plan(layout=Layout(tmp_path / "b"), redis_url=redis_url)
    try:
        client.set("cl:projects", "of a service that up did not start")
        client.set("cl:p:1:x", "1")
        client.set("elsewhere", "kept")
        with pytest.raises(StackError, match="did not start") as refused:
            claim_redis(a)  # another deployment's caches and pending events: never deleted
        assert redis_url.rsplit("/", 1)[0] in str(refused.value)
        assert (
            client.get("cl:projects") == b"of a service that up did not start"
            and client.get("cl:p:1:x") == b"1"
        )
        assert redis_owner(redis_url) is None
        client.delete("cl:projects", "cl:p:1:x")  # the user gave that deployment its own database
        assert claim_redis(a) == 0
        assert redis_owner(redis_url) is not None and redis_owner(redis_url)["home"] == str(a.layout.home)
        assert client.get("elsewhere") == b"kept"
        client.set("cl:projects", "a's cache")
        assert claim_redis(a) == 0 and client.get("cl:projects") == b"a's cache"
        assert claim_redis(b) == 1  # a is not running: its caches go
        # b is running now: a may not take the database
        write_record(b.layout, StackRecord(home=str(b.layout.home),
                                        processes={"worker": Proc.of("worker", sleeper, tmp_path / "w", [])}))  # fmt: skip
        with pytest.raises(StackError, match="in use by the customlabels stack"):
            claim_redis(a)
    finally:
        client.delete("cl:projects", "cl:p:1:x", "elsewhere", REDIS_OWNER_KEY)
        client.close()
