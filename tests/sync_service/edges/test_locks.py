"""The renewing lock on a real Redis: renewed while held, known lost when another took it or Redis stayed
away longer than it lives, and never freeing what is no longer its own."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from sync_service.edges.locks import LockLost, RenewingLock


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def name(redis: Redis) -> Iterator[str]:
    key = f"cl:test-lock:{uuid.uuid4().hex}"
    yield key
    redis.delete(key)


def _wait_for(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_held_past_its_ttl_because_it_is_renewed(redis: Redis, name: str) -> None:
    with RenewingLock(redis, name, ttl=0.3, wait=1) as lock:
        time.sleep(1.0)
        assert lock.held() and not lock.lost
        lock.check()
        value = redis.get(name)
        assert value is not None and value.decode() == lock.token
    assert not redis.exists(name)


def test_taken_over_is_known_lost_and_check_stops_the_work(redis: Redis, name: str) -> None:
    with RenewingLock(redis, name, ttl=0.3, wait=1) as lock:
        redis.set(name, "another-host:2:0")  # ours expired during a stall; another holder took it
        assert not lock.held()
        with pytest.raises(LockLost):
            lock.check()
        assert _wait_for(lambda: lock.lost, 1.0)  # the renewal reports it by itself too
    assert redis.get(name) == b"another-host:2:0"  # the other holder's lock is left alone


def test_a_redis_away_for_longer_than_the_lock_lives_is_a_lost_lock(redis: Redis, name: str) -> None:
    with RenewingLock(redis, name, ttl=0.3, wait=1) as lock:
        real = lock._lock.reacquire

        def unreachable() -> bool:
            raise RedisConnectionError("Redis away")

        lock._lock.reacquire = unreachable  # type: ignore[method-assign]
        assert _wait_for(lambda: lock.lost, 2.0)
        with pytest.raises(LockLost):
            lock.check()
        lock._lock.reacquire = real  # type: ignore[method-assign]


def test_a_redis_away_for_a_moment_is_not_a_lost_lock(redis: Redis, name: str) -> None:
    with RenewingLock(redis, name, ttl=0.6, wait=1) as lock:
        real, failures = lock._lock.reacquire, [0]

        def flaky() -> bool:
            if failures[0] == 0:
                failures[0] += 1
                raise RedisConnectionError("Redis away for a moment")
            return real()

        lock._lock.reacquire = flaky  # type: ignore[method-assign]
        time.sleep(1.0)
        assert failures[0] == 1 and not lock.lost and lock.held()


def test_a_lock_held_by_another_is_waited_for_then_refused(redis: Redis, name: str) -> None:
    waited: list[bool] = []
    with RenewingLock(redis, name, ttl=5, wait=1):
        started = time.monotonic()
        with (
            pytest.raises(LockLost),
            RenewingLock(redis, name, ttl=5, wait=0.2, on_wait=lambda: waited.append(True)),
        ):
            pass
        assert 0.15 < time.monotonic() - started < 2
    assert waited == [True]
