"""A publisher killed mid-publish (kill -9) loses neither the lock for long nor the events it had taken."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from redis import Redis

from sync_service.edges.state import LockLost, ProjectState


@pytest.fixture
def state(redis_url: str) -> Iterator[ProjectState]:
    s = ProjectState(Redis.from_url(redis_url), 98)
    s.forget()
    s.redis.delete(s.k_lock)
    yield s
    s.forget()
    s.redis.delete(s.k_lock)


def test_the_events_a_dead_publisher_took_come_back_to_the_next(state: ProjectState) -> None:
    state.note(dirty=[1, 2], gone=[3], gone_annotations=[30], full=True)
    state.redis.set(state.k_lock, "dead-host:1:0", px=300)  # its holder was killed: nobody renews it
    taken = state.take()  # what the dead publisher had taken before it died
    assert taken.dirty == {1, 2} and state.take().empty
    state.note(dirty=[4])
    started = time.monotonic()
    with state.lock(wait=5):  # waits for the dead holder's lock to expire
        assert time.monotonic() - started < 2
        assert state.recover() == 1
        batch = state.take()
        state.settle()
    assert (batch.dirty, batch.gone, batch.gone_annotations, batch.full) == ({1, 2, 4}, {3}, {30}, True)
    assert not state.redis.exists(*state.k_taken)
    with state.lock():
        assert state.recover() == 0  # settled: nothing comes back twice
        assert state.take().empty


def test_the_lock_is_renewed_while_held_and_names_its_holder(state: ProjectState) -> None:
    with state.lock(ttl=0.4):
        time.sleep(1.2)
        assert state.holds_lock()
        value = state.redis.get(state.k_lock)
        assert isinstance(value, bytes)
        host, pid, _ = value.decode().split(":")
        assert host and int(pid) > 0
    assert not state.redis.exists(state.k_lock)


def test_a_lock_that_expired_is_known_lost_and_settles_nothing_of_the_next_holder(
    state: ProjectState,
) -> None:
    with state.lock():
        state.note(dirty=[5])
        state.take()
        state.redis.set(state.k_lock, "another-host:2:0")  # ours expired meanwhile; another took it
        assert not state.holds_lock()
        state.settle()
        assert state.redis.smembers(state.k_taken[0]) == {b"5"}  # the other holder's to settle
        state.redis.delete(state.k_lock)


def test_give_back_returns_the_events_and_drops_the_copy(state: ProjectState) -> None:
    state.note(dirty=[7])
    with state.lock():
        batch = state.take()
        state.give_back(batch)
        assert not state.redis.exists(*state.k_taken)
        assert state.take().dirty == {7}
        state.settle()


def test_give_back_after_the_lock_was_lost_keeps_the_next_holders_taken_events(state: ProjectState) -> None:
    with state.lock():
        state.note(dirty=[8])
        batch = state.take()
        state.redis.set(state.k_lock, "another-host:2:0")  # ours expired; the next holder took its own
        state.redis.sadd(state.k_taken[0], 9)  # events the next holder took meanwhile
        state.give_back(batch)
        assert state.redis.smembers(state.k_taken[0]) == {b"8", b"9"}  # not ours to drop
        assert state.redis.smembers(state.k_dirty) == {b"8"}  # ours are pending again all the same
        state.redis.delete(state.k_lock)


def test_what_was_published_is_recorded_only_while_the_lock_is_ours(state: ProjectState) -> None:
    with state.lock():
        state.set_published(digests={"train": "a"})
        assert state.status()["digests"] == {"train": "a"}
        state.redis.set(state.k_lock, "another-host:2:0")
        with pytest.raises(LockLost):
            state.check_lock()
        with pytest.raises(LockLost):
            state.set_published(digests={"train": "stale"})
        assert state.status()["digests"] == {"train": "a"}
        state.redis.delete(state.k_lock)
    state.redis.delete(state.k_status)
