"""The Redis side of the kept manifest state (ManifestKeep), against a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis

from sync_service.edges.state import ManifestKeep, ProjectState

PID = 7_099_001


@pytest.fixture
def keep(redis_url: str) -> Iterator[ManifestKeep]:
    kept = ManifestKeep(Redis.from_url(redis_url), PID)
    kept.forget()
    yield kept
    kept.forget()


def filled(keep: ManifestKeep) -> None:
    keep.replace(
        b"head",
        records={1: b"r1", 2: b"r2"},
        refs={"s3://b/1.jpg": b"[1,2]"},
        errors=[2],
        orders={"train": (b"\x01" + b"\x00" * 7, b"\x09" + b"\x00" * 7), "test": (b"", b"")},
        strata={keep.stratum_key("abc"): ["aa:1", "bb:3", "cc:2"]},
    )


def test_a_replaced_state_reads_back(keep: ManifestKeep) -> None:
    filled(keep)
    assert keep.head() == b"head"
    assert keep.records([1, 2, 3]) == {1: b"r1", 2: b"r2"}
    assert keep.ref_tasks(["s3://b/1.jpg", "s3://b/2.jpg"]) == {"s3://b/1.jpg": b"[1,2]"}
    assert keep.first_errors(50) == ([2], 1)
    assert keep.order("train") == (b"\x01" + b"\x00" * 7, b"\x09" + b"\x00" * 7)
    key = keep.stratum_key("abc")
    assert keep.stratum_card(key) == 3
    assert [keep.stratum_at(key, i) for i in range(4)] == ["aa:1", "bb:3", "cc:2", None]
    assert keep.stratum_between(key, "bb", None) == ["bb:3", "cc:2"]
    assert keep.stratum_between(key, None, "bb:3") == ["aa:1"]


def test_a_state_left_busy_is_not_trusted(keep: ManifestKeep) -> None:
    filled(keep)
    keep.mark_busy()
    assert keep.head() is None  # a change that never finished: the next publish writes whole
    keep.commit(
        b"head2", records={3: b"r3"}, gone=[1], refs={"s3://b/1.jpg": None}, errors={2: False}, orders={}
    )
    assert keep.head() == b"head2"
    assert keep.records([1, 3]) == {3: b"r3"}
    assert keep.ref_tasks(["s3://b/1.jpg"]) == {}
    assert keep.first_errors(50) == ([], 0)


def test_forgetting_a_project_drops_its_kept_state(keep: ManifestKeep) -> None:
    filled(keep)
    ProjectState(keep.redis, PID).forget()
    assert keep.redis.keys(f"cl:p:{PID}:m:*") == []
