"""Task records built from annotation payloads: ordering, duplicates, tombstones, and a choice of
annotation equal to the converter's on the whole task (a hypothesis property)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import Redis

from converters.labelconfig import build_label_config, parse_label_config
from converters.labelstudio import ReadOptions
from sync_service.domain.publisher import convert_task
from sync_service.domain.taskcache import (
    KEPT_RESULTS,
    TaskRecord,
    TaskRecords,
    apply_payload,
    delete_annotation,
    packed_record,
    payload_parts,
    read_payload,
    record_from_task,
    task_for_converter,
)
from sync_service.edges.state import ProjectState
from tests.builders import choices

LABELS = ["indoor", "outdoor", "night"]
OPTIONS = ReadOptions(
    label_config=parse_label_config(build_label_config(choices=LABELS)), now="2026-01-01T00:00:00"
)
CREATED = "2026-01-01T00:00:00.000000Z"


def stamp(t: int) -> str:
    return f"2026-01-01T00:00:{t // 1000:02d}.{t % 1000:06d}Z"


class World:
    """Label Studio's side of one task: its annotations as they are, and the payloads it sent."""

    def __init__(self) -> None:
        self.clock = 1
        self.next_id = 100
        self.annotations: dict[int, dict[str, Any]] = {}
        self.updated_at = stamp(0)
        self.events: list[tuple[str, Any]] = []

    def task(self) -> dict[str, Any]:
        return {
            "id": 7,
            "data": {"image": "s3://b/7.jpg"},
            "created_at": CREATED,
            "updated_at": self.updated_at,
            "annotations": copy.deepcopy(list(self.annotations.values())),
            "predictions": [],
        }

    def _tick(self) -> str:
        self.clock += 1
        self.updated_at = stamp(self.clock)
        return self.updated_at

    def _payload(self, ann_id: int) -> None:
        task = self.task()
        task["total_annotations"] = sum(1 for a in self.annotations.values() if not a["was_cancelled"])
        task["total_predictions"] = 0
        del task["annotations"]
        parts = payload_parts(copy.deepcopy(self.annotations[ann_id]), task)
        assert parts is not None
        self.events.append(("payload", parts[1]))

    def create(self, label: str, gt: bool, cancelled: bool) -> None:
        now = self._tick()
        self.next_id += 1
        self.annotations[self.next_id] = {
            "id": self.next_id, "result": [choices(label)], "was_cancelled": cancelled, "ground_truth": gt,
            "created_at": now, "updated_at": now, "lead_time": 1.5, "completed_by": 1,
        }  # fmt: skip
        self._payload(self.next_id)

    def update(self, pick: int, label: str, gt: bool, cancelled: bool) -> None:
        if not self.annotations:
            return
        ann_id = sorted(self.annotations)[pick % len(self.annotations)]
        ann = self.annotations[ann_id]
        ann.update(result=[choices(label)], ground_truth=gt, was_cancelled=cancelled, updated_at=self._tick())
        self._payload(ann_id)

    def delete(self, pick: int) -> None:
        if not self.annotations:
            return
        ann_id = sorted(self.annotations)[pick % len(self.annotations)]
        del self.annotations[ann_id]
        self._tick()
        self.events.append(("delete", ann_id))


OPS = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(LABELS), st.booleans(), st.booleans()),
    st.tuples(st.just("update"), st.integers(0, 9), st.sampled_from(LABELS), st.booleans(), st.booleans()),
    st.tuples(st.just("delete"), st.integers(0, 9)),
)


def run(world: World, ops: list[tuple[Any, ...]]) -> None:
    for op in ops:
        getattr(world, op[0])(*op[1:])


def line(task: dict[str, Any]) -> bytes | None:
    return convert_task(task, OPTIONS, None).line


def deliver(record: TaskRecord, events: list[tuple[str, Any]], read: Any) -> tuple[TaskRecord, int]:
    """Apply events as the publisher does; a record that cannot take one is read again (``read``)."""
    reads = 0
    for kind, value in events:
        if kind == "payload":
            task, annotation = read_payload(value)
            if not apply_payload(record, task, annotation):
                record, reads = record_from_task(read(), record), reads + 1
        else:
            delete_annotation(record, value)
        if task_for_converter(record) is None:
            record, reads = record_from_task(read(), record), reads + 1
    return record, reads


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=14))
def test_in_order_payloads_choose_as_the_converter_does_on_the_whole_task(ops: list[tuple[Any, ...]]) -> None:
    world = World()
    record = record_from_task(world.task())
    for op in ops:
        before = len(world.events)
        run(world, [op])
        record, _ = deliver(record, world.events[before:], world.task)
        made = task_for_converter(record)
        assert made is not None
        assert line(made) == line(world.task())


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=14), st.randoms(use_true_random=False), st.floats(0, 0.5))
def test_reordered_duplicated_and_stale_payloads_never_bring_back_what_is_gone(
    ops: list[tuple[Any, ...]], rnd: Any, dup: float
) -> None:
    world = World()
    record = record_from_task(world.task())
    run(world, ops)
    events = list(world.events)
    events += [e for e in world.events if rnd.random() < dup]
    rnd.shuffle(events)
    record, _ = deliver(record, events, world.task)
    made = task_for_converter(record)
    assert made is not None and line(made) == line(world.task())
    # Every payload again, oldest first (stale by now): nothing changes.
    record, _ = deliver(record, [e for e in world.events if e[0] == "payload"], world.task)
    made = task_for_converter(record)
    assert made is not None and line(made) == line(world.task())


@settings(max_examples=300, deadline=None)
@given(
    st.lists(OPS, max_size=8),
    st.lists(OPS, max_size=8),
    st.sampled_from(["none", "same", "deleted", "other task"]),
)
def test_a_packed_record_is_the_record_built_and_packed(
    before: list[tuple[Any, ...]], after: list[tuple[Any, ...]], previous: str
) -> None:
    """The rebuild's written-out packing equals building the record from the task and the record it
    replaces, whatever that one remembers (tombstones, annotations deleted since, another task's)."""
    world = World()
    run(world, before)
    old = record_from_task(world.task())
    if previous == "deleted" and old.annotations:
        delete_annotation(old, sorted(old.annotations)[0])
    if previous == "other task":
        old.created_at = "2025-01-01T00:00:00.000000Z"
    run(world, after)
    task = world.task()
    earlier = None if previous == "none" else old
    expected = record_from_task(copy.deepcopy(task), earlier).pack()
    assert packed_record(task, None if earlier is None else earlier.pack()) == expected


def test_in_order_creates_and_updates_need_no_read() -> None:
    world = World()
    record = record_from_task(world.task())
    run(world, [("create", "indoor", False, False), ("create", "night", False, False)])
    run(world, [("update", 0, "outdoor", False, False), ("create", "indoor", True, False)])
    run(world, [("delete", 2)])  # the ground truth goes: the next one's result was kept
    record, reads = deliver(record, world.events, world.task)
    assert reads == 0
    made = task_for_converter(record)
    assert made is not None and line(made) == line(world.task())


def test_only_the_best_results_are_kept_and_a_deleted_winner_without_one_needs_a_read() -> None:
    world = World()
    record = record_from_task(world.task())
    run(world, [("create", label, False, False) for label in LABELS])
    record, _ = deliver(record, world.events, world.task)
    assert sum(a.result is not None for a in record.annotations.values()) == KEPT_RESULTS
    first, second = sorted(record.annotations, reverse=True)[:2]
    delete_annotation(record, first)
    assert task_for_converter(record) is not None
    delete_annotation(record, second)
    assert task_for_converter(record) is None  # the third one's result was not kept


def test_a_payload_of_another_task_with_the_same_id_or_with_counts_that_disagree_needs_a_read() -> None:
    world = World()
    record = record_from_task(world.task())
    world.create("indoor", False, False)
    task, annotation = read_payload(world.events[-1][1])
    assert not apply_payload(record_from_task({**world.task(), "created_at": "other"}), task, annotation)
    assert apply_payload(record, {**task, "total_annotations": 2}, annotation)
    assert task_for_converter(record) is None  # Label Studio counts an annotation the record lacks
    assert not apply_payload(None, task, annotation)


def test_predictions_make_the_line_only_after_a_read() -> None:
    world = World()
    t = world.task()
    t["predictions"] = [5]
    assert task_for_converter(record_from_task(t)) is None


def test_shapes_that_are_not_label_studios_stay_hints() -> None:
    assert payload_parts({"id": 1}, {"id": 2}) is None  # no data, no counts
    assert payload_parts([{"id": 1}], {"id": 2}) is None
    big = {"id": 2, "data": {"x": "y" * 300_000}, "total_annotations": 1, "total_predictions": 0}
    assert payload_parts({"id": 1, "result": []}, big) is None


# ------------------------------------------------------------------------------------ real Redis


@pytest.fixture
def state(redis_url: str) -> Iterator[ProjectState]:
    s = ProjectState(Redis.from_url(redis_url), 98)
    s.forget()
    yield s
    s.forget()


def value(ann_id: int, t: int) -> bytes:
    ann = {"id": ann_id, "result": [], "created_at": stamp(1), "updated_at": stamp(t)}
    task = {"id": 7, "data": {}, "created_at": CREATED, "updated_at": stamp(t), "total_annotations": 1}
    parts = payload_parts(ann, {**task, "total_predictions": 0})
    assert parts is not None
    return parts[1]


def test_redis_keeps_the_newest_payload_of_each_annotation(state: ProjectState) -> None:
    state.note(payloads={1: value(1, 5)})
    state.note(payloads={1: value(1, 3), 2: value(2, 4)})  # stale for 1
    state.note(payloads={1: value(1, 5)})  # duplicate
    batch = state.take()
    assert batch.payloads == {1: value(1, 5), 2: value(2, 4)}
    assert state.take().payloads == {}


def test_payloads_given_back_or_recovered_keep_the_newest(state: ProjectState) -> None:
    state.note(payloads={1: value(1, 5)})
    batch = state.take()
    state.note(payloads={1: value(1, 7)})  # newer came while the publish ran
    state.give_back(batch)
    assert state.take().payloads == {1: value(1, 7)}
    state.note(payloads={1: value(1, 2)})
    state.take()  # the taker dies: the copy is in taken-payloads
    state.note(payloads={1: value(1, 9)})
    assert state.recover() == 1
    assert state.take().payloads == {1: value(1, 9)}


def test_records_round_trip_and_a_read_keeps_tombstones(state: ProjectState) -> None:
    records = TaskRecords(state.redis, state)
    world = World()
    run(world, [("create", "indoor", False, False), ("create", "night", True, False)])
    records.save([record_from_task(world.task())])
    record = records.load([7])[7]
    assert record == TaskRecord.unpack(7, record.pack())
    gone = sorted(record.annotations)[0]
    world.delete(0)
    # A whole read (rebuild) replaces every record and keeps what the old ones knew was deleted.
    list(records.recording([world.task()], whole=True))
    again = records.load([7])[7]
    assert gone in again.tombstones and gone not in again.annotations
    records.save((), removed=[7])
    assert records.load([7]) == {}
