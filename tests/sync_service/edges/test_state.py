"""The Redis side of a project: events taken and given back, the entry cache, the lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import orjson
import pytest
from redis import Redis
from redis.exceptions import ResponseError

from sync_service.edges.state import (
    REBUILD_CHUNK,
    REBUILD_KEYS_TTL,
    SCHEDULED_TTL,
    Bulk,
    CachedEntry,
    LockLost,
    ProjectState,
)


@pytest.fixture
def state(redis_url: str) -> Iterator[ProjectState]:
    s = ProjectState(Redis.from_url(redis_url), 99)
    s.forget()
    yield s
    s.forget()


def entry(task_id: int, *annotations: int) -> CachedEntry:
    return CachedEntry(task_id, f"s3://b/{task_id}.jpg", None, b'{"source-ref":"x"}', ("cat",), annotations)


def test_a_failed_publish_gives_its_events_back(state: ProjectState) -> None:
    state.note(dirty=[1, 2], gone=[3], full=True)
    batch = state.take()
    assert state.take().empty
    state.give_back(batch)
    again = state.take()
    assert (again.dirty, again.gone, again.full) == ({1, 2}, {3}, True)


def test_cache_rebuild_and_update(state: ProjectState) -> None:
    assert not state.has_entries()
    state.replace_all([entry(2, 20), entry(1, 10, 11)])
    assert [e.task_id for e in state.entries()] == [1, 2]
    assert state.tasks_of_annotations([11, 20]) == ({1, 2}, False)
    assert state.tasks_of_annotations([12]) == (set(), True)
    state.update([entry(3, 30)], removed=[1])
    assert [e.task_id for e in state.entries()] == [2, 3]
    assert state.tasks_of_annotations([10]) == (set(), True)  # the removed task's annotations went too


def test_a_rebuild_returns_what_the_cache_reads_back_over_several_chunks(state: ProjectState) -> None:
    n = 2 * REBUILD_CHUNK + 7
    given = [entry(i, i * 10, i * 10 + 1) for i in range(n, 0, -1)]  # out of order
    given.append(replace(entry(5, 99), labels=("dog",)))  # a task given twice: the last one counts
    returned = state.replace_all(given)
    assert returned == state.entries()
    assert len(returned) == n and returned[4].labels == ("dog",)
    assert [e.task_id for e in returned] == list(range(1, n + 1))
    assert state.tasks_of_annotations([10, 11, n * 10 + 1, 99]) == ({1, n, 5}, False)


def test_entries_keep_their_line_bytes_and_validation_and_read_the_older_json_form(
    state: ProjectState,
) -> None:
    line = b'{"source-ref":"s3://b/1.jpg","a":0,"note":"a \\"quoted\\" word\\nand a break"}'
    full = CachedEntry(
        1, "s3://b/1.jpg", "test", line, ("cat",), (10,), check=(True, False, True, True, ("cat",), ())
    )
    failed = CachedEntry(2, "s3://b/2.jpg", None, None, (), (20,), error="no image")
    state.replace_all([full, failed])
    assert state.entries() == [full, failed]
    assert CachedEntry.unpack(1, full.pack()) == full
    older = (
        b'{"r":"s3://b/1.jpg","d":"test","l":'
        + orjson.dumps(line.decode())
        + b',"n":["cat"],"a":[10],"e":null}'
    )
    assert CachedEntry.unpack(1, older) == replace(full, check=None)


def test_a_rebuild_that_dies_leaves_keys_that_expire(state: ProjectState) -> None:
    def entries() -> Iterator[CachedEntry]:
        for i in range(1, 1500):
            yield entry(i, i * 10)
        raise RuntimeError("the worker died")

    with pytest.raises(RuntimeError):
        state.replace_all(entries())
    left = [k for k in state.redis.scan_iter(match=f"{state.k_entries}:new:*")]
    left += [k for k in state.redis.scan_iter(match=f"{state.k_ann}:new:*")]
    assert len(left) == 2
    assert all(0 < state.redis.ttl(k) <= REBUILD_KEYS_TTL for k in left)
    state.replace_all(entry(i, i * 10) for i in range(1, 1500))
    assert state.redis.ttl(state.k_entries) == -1 and state.redis.ttl(state.k_ann) == -1  # kept for good
    state.redis.delete(*left)


def test_an_empty_project_counts_as_built(state: ProjectState) -> None:
    state.replace_all([])
    assert state.has_entries()
    assert state.entries() == []


def test_the_lock_is_single_flight(state: ProjectState) -> None:
    order: list[str] = []

    def second() -> None:
        with state.lock(wait=5):
            order.append("second")

    with state.lock():
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.2)
        order.append("first")
    t.join()
    assert order == ["first", "second"]
    with state.lock(), pytest.raises(LockLost), state.lock(wait=0.1):
        pass


def test_a_lost_publish_job_holds_events_back_for_a_minute_at_most(state: ProjectState) -> None:
    assert state.note(dirty=[1]) is True  # queue a publish
    assert state.note(dirty=[2], gone=[3], gone_annotations=[4]) is False  # one is queued already
    assert 0 < state.redis.ttl(state.k_scheduled) <= SCHEDULED_TTL
    state.redis.pexpire(state.k_scheduled, 1)  # as if SCHEDULED_TTL passed with the job lost
    time.sleep(0.01)
    assert state.note(dirty=[5]) is True
    batch = state.take()
    assert (batch.dirty, batch.gone, batch.gone_annotations) == ({1, 2, 5}, {3}, {4})


def test_bulk_sends_its_commands_in_one_round_trip_and_an_error_reply_leaves_the_pool_clean(
    redis_url: str,
) -> None:
    client = Redis.from_url(redis_url)
    key, other = f"test:bulk:{time.time_ns()}", f"test:bulk-other:{time.time_ns()}"
    try:
        bulk = Bulk(client)
        bulk.pairs("HSET", key, [("a", b"1"), ("b", 2)])
        bulk.pairs("HSET", key, [])  # nothing queued for no pairs
        bulk.pairs("ZADD", other, [(1, "x"), (2.5, "y")])
        bulk.command("EXPIRE", key, 60)
        assert bulk.send() == [2, 2, 1]
        assert client.hgetall(key) == {b"a": b"1", b"b": b"2"}
        assert client.zrange(other, 0, -1, withscores=True) == [(b"x", 1.0), (b"y", 2.5)]
        assert bulk.send() == []  # sent commands are not sent again
        bulk.command("HSET", other, "f", "v")  # a sorted set: WRONGTYPE
        bulk.command("HSET", key, "c", "3")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            bulk.send()
        # The reply left unread went with its connection: the next command reads its own reply.
        assert client.hget(key, "c") == b"3"
        assert client.ping() is True
    finally:
        client.delete(key, other)
