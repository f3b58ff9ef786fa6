"""Publishing by changes (sync_service.domain.manifests) against a real Redis and moto's S3 server: after
any sequence of edits, the manifests and summary written from the kept state are byte-identical to a full
rebuild of the same tasks."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import moto.s3.models
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis

from converters.labelconfig import build_label_config
from sync_service.domain import manifests
from sync_service.domain import publisher as publisher_module
from sync_service.domain.projects import ProjectInfo, Projects
from sync_service.domain.publisher import Publisher
from sync_service.edges.s3 import Storage
from sync_service.edges.state import LockLost, ManifestKeep, ProjectState
from tests.builders import MemoryLabelStudio, choices, task
from tests.realparts import S3

LABELS = ["cat", "dog", "bird", "fish"]
NAMES = ("train.manifest", "test.manifest", "validation/manifest_summary.json")
# Publishes of the property test on projects with a test dataset made from the kept state, or in full.
BY_CHANGES = {True: 0, False: 0}
PART_MIN = 256  # bytes: small manifests are written in parts here (moto is told the same minimum)
_pids = itertools.count(7_100_000)


def make_task(tid: int, image: int, labels: Sequence[str], dataset: str | None) -> dict[str, Any]:
    """A task on image ``image`` (a few share one: duplicates), with ``labels`` (none: unlabeled; a
    negative image number: an image the converter refuses)."""
    ref = f"s3://bucket-a/img/{image}.jpg" if image >= 0 else f"https://example.com/{-image}.jpg"
    data = {"dataset": dataset} if dataset else {}
    return task(ref, *([choices(*labels)] if labels else []), tid=tid, **data)


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's S3 (in this process) takes parts as small as the publisher is told to write."""
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", PART_MIN)


class World:
    """One project: its tasks in a stand-in Label Studio, its publisher on real Redis and moto S3."""

    def __init__(
        self, redis: Redis, storage: Storage, *, test_fraction: float = 0.3, has_test: bool = True
    ) -> None:
        self.redis = redis
        self.storage = storage
        self.pid = next(_pids)
        self.projects = Projects(redis, storage, "unit")
        datasets = None if has_test else {"train": {}}  # no test dataset: the split keeps all in train
        self.info = ProjectInfo(
            self.pid, "Changes", f"changes-{self.pid}", test_fraction=test_fraction, datasets=datasets
        )
        self.projects.save(self.info)
        self.ls = MemoryLabelStudio(build_label_config(choices=LABELS, multiple=True), [])
        self.state = ProjectState(redis, self.pid)
        self.state.forget()
        self.pub = Publisher(redis, storage, self.ls, self.projects)  # type: ignore[arg-type]
        self.pub.part_min = PART_MIN

    def objects(self) -> dict[str, bytes]:
        return {name: self.storage.get_bytes(self.projects.key(self.info, name)) or b"" for name in NAMES}

    def close(self) -> None:
        self.state.forget()
        self.projects.forget(self.pid)


@pytest.fixture
def world(redis_url: str, s3: S3, bucket: str, small_parts: None) -> Iterator[World]:
    w = World(Redis.from_url(redis_url), Storage(s3.client, bucket))
    yield w
    w.close()


edits = st.lists(
    st.tuples(
        st.sampled_from(["add", "change", "delete", "move", "rename"]),
        st.integers(0, 10_000),
        st.integers(-2, 30),
        st.lists(st.sampled_from(LABELS), max_size=2, unique=True),
        st.sampled_from([None, None, "train", "test"]),
    ),
    min_size=1,
    max_size=12,
)


def apply(
    world: World, edit: tuple[str, int, int, list[str], str | None], next_id: Iterator[int]
) -> set[int]:
    """Apply one edit to the tasks; return the task ids its webhook names."""
    kind, pick, image, labels, dataset = edit
    tasks = world.ls.tasks
    ids = sorted(tasks)
    if kind == "add" or not ids:
        tid = next(next_id)
        tasks[tid] = make_task(tid, image, labels, dataset)
        return {tid}
    tid = ids[pick % len(ids)]
    old = tasks[tid]
    ref = old["data"]["image"]
    number = int(ref.rsplit("/", 1)[1].split(".")[0]) * (1 if ref.startswith("s3://") else -1)
    old_labels = [c for a in old["annotations"] for r in a["result"] for c in r["value"]["choices"]]
    if kind == "delete":
        del tasks[tid]
    elif kind == "change":
        tasks[tid] = make_task(tid, image, labels, old["data"].get("dataset"))
    elif kind == "move":
        tasks[tid] = make_task(tid, number, old_labels, dataset)
    else:  # a label renamed in every task that has it (a label edit in each: many webhooks)
        if not old_labels:
            return set()
        was, now = old_labels[0], labels[0] if labels else "fish"
        touched = set()
        for other, t in list(tasks.items()):
            names = [c for a in t["annotations"] for r in a["result"] for c in r["value"]["choices"]]
            if was in names:
                renamed = list(dict.fromkeys(now if n == was else n for n in names))
                ref = t["data"]["image"]
                n = int(ref.rsplit("/", 1)[1].split(".")[0]) * (1 if ref.startswith("s3://") else -1)
                tasks[other] = make_task(other, n, renamed, t["data"].get("dataset"))
                touched.add(other)
        return touched
    return {tid}


@pytest.mark.parametrize("has_test", [True, False])
@settings(
    max_examples=25,
    # The same examples at every run: the share published by changes (the next test) is theirs, and
    # over 25 random examples it ranged from 36% to 70%.
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    start=st.lists(
        st.tuples(
            st.integers(-1, 30),
            st.lists(st.sampled_from(LABELS), max_size=2, unique=True),
            st.sampled_from([None, None, None, "train", "test"]),
        ),
        min_size=8,  # small enough to keep examples fast, large enough for most labels in both sets
        max_size=60,
    ),
    steps=edits,
)
def test_changes_publish_what_a_full_rebuild_publishes(
    redis_url: str,
    s3: S3,
    bucket: str,
    small_parts: None,
    has_test: bool,
    start: list[Any],
    steps: list[Any],
) -> None:
    world = World(Redis.from_url(redis_url), Storage(s3.client, bucket), has_test=has_test)
    original = publisher_module.publish_changes

    def counted(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if has_test:  # without a test dataset, publishes with no test entry are made in full
            BY_CHANGES[result is not None] += 1
        return result

    publisher_module.publish_changes = counted  # type: ignore[assignment]
    try:
        next_id = itertools.count(1)
        for image, labels, dataset in start:
            tid = next(next_id)
            world.ls.tasks[tid] = make_task(tid, image, labels, dataset)
        world.pub.publish(world.pid, force=True)
        for edit in steps:
            touched = apply(world, edit, next_id)
            gone = {t for t in touched if t not in world.ls.tasks}
            world.state.note(dirty=touched - gone, gone=gone)
            world.pub.publish(world.pid)
            incremental = world.objects()
            world.pub.publish(world.pid, force=True)
            assert world.objects() == incremental
    finally:
        publisher_module.publish_changes = original  # type: ignore[assignment]
        world.close()


def test_most_edits_were_published_by_changes() -> None:
    """The property above ran largely through the kept state, not only through its full publishes."""
    if not BY_CHANGES[True] + BY_CHANGES[False]:
        pytest.skip("the property test did not run")
    # The rest are the documented full publishes (a label in one set only, no test entry, ...).
    assert BY_CHANGES[True] >= 0.4 * (BY_CHANGES[True] + BY_CHANGES[False]), BY_CHANGES


def test_a_one_entry_change_is_written_from_the_kept_state(world: World) -> None:
    for tid in range(1, 201):
        world.ls.tasks[tid] = make_task(tid, tid, [LABELS[tid % 4]], None)
    world.pub.publish(world.pid, force=True)
    assert ManifestKeep(world.redis, world.pid).head() is not None
    world.ls.tasks[57] = make_task(57, 57, ["bird"], None)
    world.state.note(dirty=[57])
    calls: list[int] = []
    original = world.storage.write_pieces

    def counted(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        calls.append(result.uploaded)
        return result

    world.storage.write_pieces = counted  # type: ignore[method-assign]
    result = world.pub.publish(world.pid)
    assert result is not None and result.published and not result.rebuilt
    assert calls and all(0 < n < 4 * PART_MIN for n in calls)  # a part around the change, not the object
    incremental = world.objects()
    world.pub.publish(world.pid, force=True)
    assert world.objects() == incremental


def test_too_many_changes_publish_in_full(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    for tid in range(1, 11):
        world.ls.tasks[tid] = make_task(tid, tid, ["cat"], None)
    world.pub.publish(world.pid, force=True)
    monkeypatch.setattr(manifests, "MAX_CHANGED", 2)
    for tid in (1, 2, 3):
        world.ls.tasks[tid] = make_task(tid, tid, ["dog"], None)
    world.state.note(dirty=[1, 2, 3])
    loads: list[int] = []
    original = world.state.entries
    monkeypatch.setattr(ProjectState, "entries", lambda self: loads.append(1) or original())
    world.pub.publish(world.pid)
    assert loads  # the whole cache was read: a full write
    assert b'"dog"' in world.objects()["train.manifest"] + world.objects()["test.manifest"]


def test_a_lock_lost_between_two_writes_of_changes_stops_before_the_next(world: World) -> None:
    for tid in range(1, 41):
        world.ls.tasks[tid] = make_task(tid, tid, [LABELS[tid % 4]], "train" if tid % 2 else "test")
    world.pub.publish(world.pid, force=True)
    before = world.objects()
    write_pieces = world.storage.write_pieces

    def write_then_stall(*args: Any, **kwargs: Any) -> Any:
        done = write_pieces(*args, **kwargs)
        world.redis.set(world.state.k_lock, "another-host:2:0")  # stalled past the lock's life
        return done

    world.storage.write_pieces = write_then_stall  # type: ignore[method-assign]
    world.ls.tasks[3] = make_task(3, 3, ["dog"], "train")
    world.state.note(dirty=[3])
    with pytest.raises(LockLost):
        world.pub.publish(world.pid)
    after = world.objects()
    assert after["validation/manifest_summary.json"] == before["validation/manifest_summary.json"]
    assert world.redis.smembers(world.state.k_dirty) == {b"3"}  # the event waits for the next publish
    assert ManifestKeep(world.redis, world.pid).head() is None  # the kept state is not trusted any more
    world.redis.delete(world.state.k_lock)
    world.storage.write_pieces = write_pieces  # type: ignore[method-assign]
    result = world.pub.publish(world.pid)  # the next publish writes whole and keeps the state afresh
    assert result is not None and result.published
    assert ManifestKeep(world.redis, world.pid).head() is not None
    incremental = world.objects()
    world.pub.publish(world.pid, force=True)
    assert world.objects() == incremental


def test_a_manifest_replaced_by_another_writer_is_written_whole(world: World) -> None:
    for tid in range(1, 41):
        world.ls.tasks[tid] = make_task(tid, tid, [LABELS[tid % 4]], "train" if tid % 2 else "test")
    world.pub.publish(world.pid, force=True)
    key = world.projects.key(world.info, "train.manifest")
    world.storage.put_bytes(key, b'{"source-ref":"s3://elsewhere/x.jpg"}\n')  # not the kept version
    world.ls.tasks[5] = make_task(5, 5, ["fish"], "train")
    world.state.note(dirty=[5])
    result = world.pub.publish(world.pid)
    assert result is not None and result.published
    incremental = world.objects()
    assert b"elsewhere" not in incremental["train.manifest"]
    world.pub.publish(world.pid, force=True)
    assert world.objects() == incremental


def test_the_split_boundary_moves_entries_as_the_full_split_does(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for tid in range(1, 101):
        world.ls.tasks[tid] = make_task(tid, tid, ["cat"] if tid % 3 else ["dog"], None)
    world.pub.publish(world.pid, force=True)
    made = {True: 0, False: 0}
    original = publisher_module.publish_changes

    def counted(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        made[result is not None] += 1
        return result

    monkeypatch.setattr(publisher_module, "publish_changes", counted)
    sides_seen = []
    for step, tid in enumerate([101, 102, 103, 7, 104, 105, 50], start=1):
        if tid in world.ls.tasks:
            del world.ls.tasks[tid]
            world.state.note(gone=[tid])
        else:
            world.ls.tasks[tid] = make_task(tid, tid, ["cat"], None)
            world.state.note(dirty=[tid])
        result = world.pub.publish(world.pid)
        assert result is not None and result.published
        sides_seen.append(result.entries)
        incremental = world.objects()
        world.pub.publish(world.pid, force=True)
        assert world.objects() == incremental, f"step {step}"
    assert made == {True: 7, False: 0}
    assert len({tuple(sorted(e.items())) for e in sides_seen}) > 1  # the test share followed the counts


def test_an_event_that_changes_no_line_writes_nothing(world: World) -> None:
    for tid in range(1, 41):
        world.ls.tasks[tid] = make_task(tid, tid, [LABELS[tid % 4]], None)
    world.pub.publish(world.pid, force=True)
    before = world.objects()
    writes: list[str] = []
    world.storage.write_pieces = lambda key, *a, **k: writes.append(key)  # type: ignore[method-assign,assignment]
    world.storage.put_bytes = lambda key, *a, **k: writes.append(key)  # type: ignore[method-assign]
    world.state.note(dirty=[5, 6])  # an annotation saved again as it was
    result = world.pub.publish(world.pid)
    assert result is not None and result.published and not result.rebuilt
    assert writes == []
    assert world.objects() == before
