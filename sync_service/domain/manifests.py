"""The manifests' kept state: what a publish needs of the last one, so that a change costs what it touches.

A full publish (:meth:`sync_service.domain.publisher.Publisher._write`) ends by keeping, through
:class:`sync_service.edges.state.ManifestKeep`:

* per task (:class:`Kept`): its source-ref, whether its line is usable, the manifest it is in (None: left
  out), its line's size and validation row, its labels and ``data.dataset``, why it is left out;
* per source-ref the tasks with a usable line (the first one is the image's entry, the others are left
  out as duplicates), and the tasks left out in id order;
* per manifest its task ids in order with their lines' sizes (so the byte range of any entry in the
  object is known) and its validation counters (:class:`SideCounts`, the figures ``manifest_summary.json``
  is made of), the object's ETag;
* the split's state: each label's entry count, each label set's count (from which each set's stratum
  follows), per stratum the entries with a dataset (counted) and those without (ranked by the split's
  hash, in a Redis sorted set), and how many test entries carry each label.

:func:`publish_changes` then publishes the changes of a few tasks: it places them (dedupe, split), moves
the entries whose side the split's boundary crossed, writes each changed manifest from byte ranges of the
previous one (:meth:`sync_service.edges.s3.Storage.write_pieces`) and the summary from the counters. The
result is byte-identical to a full publish of the same entries; when it could not be (below), it returns
None and the caller publishes in full, which keeps the state afresh.

The split stays :func:`converters.split.split`'s: within a stratum, entries without a dataset are ranked
by ``sha256(seed, source-ref)`` and the first ``target - kept test entries`` go to test. A change moves
that boundary by a few ranks, so the entries whose side changes are exactly those ranked between the old
and the new boundary (a range read of the stratum's sorted set). A full re-split (a full publish) happens
when: a label set's stratum changes (a multi-label entry's rarest label is another one after the change),
the placement leaves a label of two or more entries out of a set (the split's repair step would move an
entry), the last full split needed its repair step, or the test fraction, seed, test dataset or the
manifests' keys changed. Also when the change touches more than :data:`MAX_CHANGED` tasks, a manifest has
no test entries (its summary auto-splits the training entries) or passes Rekognition's row limit, or an
entry's line names another image than its task's.
"""

from __future__ import annotations

import hashlib
import logging
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import orjson

from converters import codes
from converters.jsonio import dumps
from converters.model import bucket_of
from converters.split import TEST, TRAIN, stratum_of, target_test_count
from converters.validation import DatasetResult, ManifestValidator, summarize
from sync_service.edges.s3 import PART_MIN, Copy, Piece, Storage
from sync_service.edges.state import CachedEntry, LineRow, ManifestKeep

log = logging.getLogger(__name__)

KEEP_VERSION = 1
MAX_CHANGED = 5000
"""Tasks a publish may touch and still be published by changes; more are published in full."""
SIDES = (TRAIN, TEST)
FIRST_ERRORS = 50  # tasks left out that the status lists
_ABOVE_ALL = "~"  # sorts after every ranked member (hex digits, ':' and digits)

RowOf = Callable[[bytes, str], LineRow | None]


@dataclass(slots=True)
class Kept:
    """What the last publish made of one task."""

    ref: str
    usable: bool
    side: str | None
    size: int
    row: LineRow | None
    labels: tuple[str, ...]
    dataset: str | None
    error: str | None
    digest: str = ""  # of the line in its manifest: a change that leaves it as it was writes nothing

    def pack(self) -> bytes:
        """The Redis value of this record."""
        return orjson.dumps(
            [
                self.ref, self.usable, self.side, self.size, self.row, self.labels, self.dataset,
                self.error, self.digest,
            ]
        )  # fmt: skip

    @classmethod
    def unpack(cls, raw: bytes) -> Kept:
        """Read a record written by :meth:`pack`."""
        ref, usable, side, size, row, labels, dataset, error, digest = orjson.loads(raw)
        return cls(
            ref,
            usable,
            side,
            size,
            (row[0], row[1], row[2], row[3], tuple(row[4]), tuple(row[5])) if row is not None else None,
            tuple(labels),
            dataset,
            error,
            digest,
        )


@dataclass(slots=True)
class SideCounts:
    """One manifest's validation figures, as :class:`converters.validation.ManifestValidator` counts
    them, kept so that a change adds and subtracts its lines' rows instead of validating all lines."""

    total: int = 0
    valid: int = 0
    invalid: int = 0
    ignored: int = 0
    terminal: int = 0
    bytes_read: int = 0
    classification_lines: int = 0
    detection_lines: int = 0
    classification_labels: dict[str, int] = field(default_factory=dict)
    detection_labels: dict[str, int] = field(default_factory=dict)
    boxes_per_label: dict[str, int] = field(default_factory=dict)
    buckets: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)  # the entries' label names (the publish result)
    errors: list[int] = field(default_factory=list)  # task ids of lines with errors, sorted

    def count(self, task_id: int, kept: Kept, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) one line (its kept row and size)."""
        row = kept.row
        assert row is not None
        has_error, terminal, named, labeled, classes, boxes = row
        self.total += sign
        self.bytes_read += sign * kept.size
        _add(self.labels, kept.labels, sign)
        if has_error:
            if sign > 0:
                self.errors.insert(bisect_left(self.errors, task_id), task_id)
            else:
                self.errors.pop(bisect_left(self.errors, task_id))
        if not named:
            self.invalid += sign
            self.terminal += sign if terminal else 0
            return
        _add(self.buckets, (bucket_of(kept.ref),), sign)
        if not labeled:
            self.ignored += sign
            return
        self.valid += sign
        if classes:
            self.classification_lines += sign
            _add(self.classification_labels, classes, sign)
        if boxes:
            self.detection_lines += sign
            _add(self.boxes_per_label, boxes, sign)
            _add(self.detection_labels, set(boxes), sign)

    @classmethod
    def of(cls, lines: list[tuple[int, str, int, LineRow, tuple[str, ...]]]) -> SideCounts:
        """The figures of a whole manifest's lines (task id, source-ref, size, row, labels), counted in
        bulk as :meth:`~converters.validation.ManifestValidator.account_rows` does."""
        out = cls(total=len(lines))
        if not lines:
            return out
        tasks, refs, sizes, rows, labels = zip(*lines, strict=True)
        out.bytes_read = sum(sizes)
        out.labels = dict(Counter(chain.from_iterable(labels)))
        out.errors = [t for t, row in zip(tasks, rows, strict=True) if row[0]]
        unnamed = [row for row in rows if not row[2]]
        out.invalid = len(unnamed)
        out.terminal = sum(1 for row in unnamed if row[1])
        named = [(ref, row) for ref, row in zip(refs, rows, strict=True) if row[2]]
        buckets: Counter[str] = Counter()
        prefix, bucket = "\x00", ""
        for ref, _ in named:
            if not ref.startswith(prefix):
                bucket = bucket_of(ref)
                prefix = f"s3://{bucket}/"
            buckets[bucket] += 1
        out.buckets = dict(buckets)
        used = [row for _, row in named if row[3]]
        out.ignored = len(named) - len(used)
        out.valid = len(used)
        classes = [row[4] for row in used if row[4]]
        boxes = [row[5] for row in used if row[5]]
        out.classification_lines = len(classes)
        out.detection_lines = len(boxes)
        out.classification_labels = dict(Counter(chain.from_iterable(classes)))
        out.boxes_per_label = dict(Counter(chain.from_iterable(boxes)))
        out.detection_labels = dict(Counter(chain.from_iterable(map(set, boxes))))
        return out

    def result(self, order: array[int]) -> DatasetResult:
        """The :class:`~converters.validation.DatasetResult` these figures make, with its dataset-level
        rules applied; ``order`` (the manifest's task ids) numbers the lines with errors."""
        res = DatasetResult(
            total=self.total,
            valid=self.valid,
            invalid=self.invalid,
            ignored=self.ignored,
            terminal=self.terminal,
            error_lines=[bisect_left(order, t) + 1 for t in self.errors],
            classification_lines=self.classification_lines,
            detection_lines=self.detection_lines,
            bytes_read=self.bytes_read,
        )
        res.classification_labels.update(self.classification_labels)
        res.detection_labels.update(self.detection_labels)
        res.boxes_per_label.update(self.boxes_per_label)
        res.buckets.update(self.buckets)
        validator = ManifestValidator()
        validator.result = res
        return validator.finish()

    def as_json(self) -> dict[str, Any]:
        """These figures as the head keeps them."""
        return {name: getattr(self, name) for name in self.__slots__}


def _add(counts: dict[str, int], names: Iterable[str], sign: int) -> None:
    for name in names:
        value = counts.get(name, 0) + sign
        if value:
            counts[name] = value
        else:
            del counts[name]


@dataclass(slots=True)
class Head:
    """The small part of the kept state, read whole by every publish."""

    keys: dict[str, str]
    etags: dict[str, str]
    seed: int
    fraction: float
    has_test: bool
    frequency: dict[str, int]
    label_sets: dict[tuple[str, ...], int]
    kept: dict[str, list[int]]  # stratum -> [entries with a dataset, of them in test]
    ranked: dict[str, int]  # stratum -> entries without a dataset
    test_labels: dict[str, int]  # label -> test entries carrying it
    counts: dict[str, SideCounts]

    def pack(self) -> bytes:
        """The Redis value of the head."""
        return orjson.dumps(
            {
                "v": KEEP_VERSION,
                "keys": self.keys,
                "etags": self.etags,
                "seed": self.seed,
                "fraction": self.fraction,
                "has_test": self.has_test,
                "frequency": self.frequency,
                "label_sets": [[list(k), n] for k, n in self.label_sets.items()],
                "kept": self.kept,
                "ranked": self.ranked,
                "test_labels": self.test_labels,
                "counts": {side: c.as_json() for side, c in self.counts.items()},
            }
        )

    @classmethod
    def unpack(cls, raw: bytes) -> Head | None:
        """Read a head written by :meth:`pack`; None for another version's."""
        obj = orjson.loads(raw)
        if not isinstance(obj, dict) or obj.get("v") != KEEP_VERSION:
            return None
        return cls(
            keys=obj["keys"],
            etags=obj["etags"],
            seed=obj["seed"],
            fraction=obj["fraction"],
            has_test=obj["has_test"],
            frequency=obj["frequency"],
            label_sets={tuple(k): n for k, n in obj["label_sets"]},
            kept=obj["kept"],
            ranked=obj["ranked"],
            test_labels=obj["test_labels"],
            counts={side: SideCounts(**c) for side, c in obj["counts"].items()},
        )


def line_digest(line: bytes) -> str:
    """A short digest of a manifest line (tells a rewritten but equal line from a changed one)."""
    return hashlib.blake2b(line, digest_size=8).hexdigest()


def rank_member(seed: int, ref: str, task_id: int) -> str:
    """An entry's member in its stratum's sorted set: the split's rank (``sha256(seed, ref)``, as
    :func:`converters.split.split` orders a stratum) in hex, then its task id."""
    return hashlib.sha256(f"{seed}\x00{ref}".encode()).hexdigest() + ":" + str(task_id)


def _member_task(member: str) -> int:
    return int(member.rpartition(":")[2])


def stratum_digest(name: str) -> str:
    """A stratum's name as a Redis key part (label names may hold any character)."""
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:20]


def _set_key(labels: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(labels)))


def _stratum(labels: tuple[str, ...], frequency: Mapping[str, int]) -> str:
    return stratum_of(frozenset(labels), frequency)


def sized_dumps(value: Any) -> bytes:
    """``orjson.dumps(value)`` in a bytes object of its own size: orjson's keeps its 4 KiB output buffer,
    and a full publish holds a record and a line per task (250,000 of them would hold 1 GiB)."""
    return bytes(memoryview(orjson.dumps(value)))


def _ids(values: Iterable[int]) -> array[int]:
    return array("q", values)


def _loaded(raw: bytes) -> array[int]:
    out = array("q")
    out.frombytes(raw)
    return out


def summary_document(head: Head, orders: Mapping[str, array[int]]) -> dict[str, Any] | None:
    """``manifest_summary.json`` from the kept counters; None when the counters cannot make it (no test
    entries: the summary auto-splits the training lines; or past the row limit)."""
    limits = codes.DEFAULT_LIMITS
    if head.counts[TEST].total == 0 or any(c.total > limits.max_rows for c in head.counts.values()):
        return None
    train = head.counts[TRAIN].result(orders[TRAIN])
    test = head.counts[TEST].result(orders[TEST])
    return summarize(train, test).document


# ----------------------------------------------------------------------------------------- keeping


def keep_full(
    keep: ManifestKeep,
    *,
    cached: list[CachedEntry],
    sides: Mapping[str, str],
    keys: Mapping[str, str],
    etags: Mapping[str, str | None],
    seed: int,
    fraction: float,
    has_test: bool,
    row_of: RowOf,
) -> bool:
    """Keep the state of a full publish of ``cached`` (task id order) whose usable entries went to
    ``sides`` (source-ref -> side). Returns False, keeping nothing, when the next publish could not be
    made from it (an object without an ETag, a line naming another image, a split the repair changed)."""
    if any(etags.get(side) is None for side in SIDES):
        keep.forget()
        return False
    records: dict[int, bytes] = {}
    refs: dict[str, list[int]] = {}
    errors: list[int] = []
    lines: dict[str, list[tuple[int, str, int, LineRow, tuple[str, ...]]]] = {TRAIN: [], TEST: []}
    label_sets: dict[tuple[str, ...], int] = {}
    set_keys: dict[tuple[str, ...], tuple[str, ...]] = {}  # an entry's labels -> its label set's key
    members: list[tuple[str, str, int, str | None, tuple[str, ...]]] = []  # ref, side, task, dataset, set
    pack = sized_dumps  # one name lookup per entry
    for entry in cached:
        ref, labels, task_id = entry.source_ref, entry.labels, entry.task_id
        line = entry.line
        if line is None:
            records[task_id] = pack([ref, False, None, 0, None, labels, entry.dataset, entry.error, ""])
            errors.append(task_id)
            continue
        tasks = refs.get(ref)
        if tasks is not None:
            error = f"{ref} is on an earlier task"
            records[task_id] = pack([ref, True, None, 0, None, labels, entry.dataset, error, ""])
            tasks.append(task_id)
            errors.append(task_id)
            continue
        row = entry.check if entry.check is not None else row_of(line, ref)
        if row is None:
            keep.forget()
            return False
        side = sides[ref]
        size = len(line) + 1
        records[task_id] = pack([ref, True, side, size, row, labels, entry.dataset, None, line_digest(line)])
        refs[ref] = [task_id]
        lines[side].append((task_id, ref, size, row, labels))
        key = set_keys.get(labels)
        if key is None:
            key = set_keys[labels] = _set_key(labels)
        label_sets[key] = label_sets.get(key, 0) + 1
        members.append((ref, side, task_id, entry.dataset, key))
    frequency: dict[str, int] = {}
    for key, count in label_sets.items():
        _add(frequency, key, count)
    strata_of = {key: _stratum(key, frequency) for key in label_sets}
    kept_counts: dict[str, list[int]] = {}
    ranked: dict[str, list[tuple[str, str]]] = {}
    tested: Counter[tuple[str, ...]] = Counter()
    for ref, side, task_id, dataset, key in members:
        stratum = strata_of[key]
        if side == TEST:
            tested[key] += 1
        if dataset is not None:
            pair = kept_counts.setdefault(stratum, [0, 0])
            pair[0] += 1
            pair[1] += dataset == TEST
        else:
            ranked.setdefault(stratum, []).append((rank_member(seed, ref, task_id), side))
    test_labels: dict[str, int] = {}
    for key, count in tested.items():
        _add(test_labels, key, count)
    # The kept split must be the stratified placement itself (no repair move): check it.
    for stratum, ranks in ranked.items():
        ranks.sort()
        total, in_test = kept_counts.get(stratum, [0, 0])
        need = target_test_count(len(ranks) + total, fraction) - in_test if has_test else 0
        if any(side != (TEST if index < need else TRAIN) for index, (_, side) in enumerate(ranks)):
            keep.forget()
            log.info("the split's repair moved entries: the next publishes rebuild the manifests whole")
            return False
    head = Head(
        keys=dict(keys),
        etags={side: str(etags[side]) for side in SIDES},
        seed=seed,
        fraction=fraction,
        has_test=has_test,
        frequency=frequency,
        label_sets=label_sets,
        kept=kept_counts,
        ranked={stratum: len(ranks) for stratum, ranks in ranked.items()},
        test_labels=test_labels,
        counts={side: SideCounts.of(lines[side]) for side in SIDES},
    )
    keep.replace(
        head.pack(),
        records=records,
        refs={ref: b"[%d]" % tasks[0] if len(tasks) == 1 else pack(tasks) for ref, tasks in refs.items()},
        errors=errors,
        orders={
            side: (
                _ids(t for t, *_ in lines[side]).tobytes(),
                _ids(z for _, _, z, *_ in lines[side]).tobytes(),
            )
            for side in SIDES
        },
        strata={
            keep.stratum_key(stratum_digest(stratum)): [member for member, _ in ranks]
            for stratum, ranks in ranked.items()
        },
    )
    return True


# ----------------------------------------------------------------------------------------- changes


@dataclass(slots=True)
class Published:
    """What :func:`publish_changes` published: entries and label counts per side, the first tasks left
    out (with why) and how many are."""

    entries: dict[str, int]
    labels: dict[str, int]
    errors: list[dict[str, Any]]
    error_count: int


class _Fallback(Exception):
    """The changes cannot be published from the kept state: publish in full."""


def publish_changes(
    keep: ManifestKeep,
    *,
    touched: set[int],
    cached: Callable[[Iterable[int]], dict[int, CachedEntry]],
    storage: Storage,
    keys: Mapping[str, str],
    seed: int,
    fraction: float,
    has_test: bool,
    row_of: RowOf,
    before_write: Callable[[], None],
    part_min: int | None = None,
) -> Published | None:
    """Publish the changes of the ``touched`` tasks (their entries as the cache now holds them, read by
    ``cached``) from the kept state; None when a full publish must be made (see the module docstring).
    ``before_write`` runs before each write (the publish lock's check)."""
    if len(touched) > MAX_CHANGED:
        return None
    raw = keep.head()
    head = Head.unpack(raw) if raw is not None else None
    if (
        head is None
        or head.keys != dict(keys)
        or head.seed != seed
        or head.fraction != fraction
        or head.has_test != has_test
    ):
        return None
    try:
        return _Changes(keep, head, cached, storage, seed, fraction, row_of, before_write, part_min).run(
            touched
        )
    except _Fallback as why:
        log.info("publishing in full: %s", why)
        return None


class _Changes:
    """One publish of changes (see :func:`publish_changes`)."""

    def __init__(
        self,
        keep: ManifestKeep,
        head: Head,
        cached: Callable[[Iterable[int]], dict[int, CachedEntry]],
        storage: Storage,
        seed: int,
        fraction: float,
        row_of: RowOf,
        before_write: Callable[[], None],
        part_min: int | None,
    ) -> None:
        self.keep = keep
        self.head = head
        self.cached = cached
        self.storage = storage
        self.seed = seed
        self.fraction = fraction
        self.row_of = row_of
        self.before_write = before_write
        self.part_min = part_min
        self.old: dict[int, Kept] = {}  # records as the last publish left them
        self.new: dict[int, Kept | None] = {}  # records as this publish leaves them (None: task gone)
        self.lines: dict[int, bytes] = {}  # lines of the entries joining a manifest

    def run(self, touched: set[int]) -> Published:
        entries = self.cached(touched)
        self.old = {t: Kept.unpack(v) for t, v in self.keep.records(touched).items()}
        refs = self._dedupe(touched, entries)
        # A touched entry whose line, labels and dataset are as they were stays; another one that stays
        # leaves and joins again.
        same = {t for t in touched if self._unchanged(t)}
        removed = [
            t
            for t, k in self.old.items()
            if k.side is not None and t not in same and (t in touched or self._leaves(t))
        ]
        added = [t for t, k in self.new.items() if k is not None and k.side is not None and t not in same]
        flipped = self._split(removed, added)
        # The summary is made before any write: when the counters cannot make it, only the strata have
        # changed (the state is marked busy: the full publish that follows keeps it afresh).
        moves = self._moves(removed, added, flipped)
        orders = {side: self._order(side) for side in SIDES}
        new_orders: dict[str, tuple[array[int], array[int], list[Piece]]] = {}
        for side in SIDES:
            leaving, joining = moves[side]
            if leaving or joining:
                new_orders[side] = self._pieces(orders[side], leaving, joining)
        current = {side: new_orders[side][0] if side in new_orders else orders[side][0] for side in SIDES}
        document = summary_document(self.head, current)
        if document is None:
            raise _Fallback("the summary needs every line (no test entries, or past the row limit)")
        for side, (_, _, pieces) in new_orders.items():
            self.before_write()
            written = self.storage.write_pieces(
                self.head.keys[side],
                pieces,
                previous_etag=self.head.etags[side],
                content_type="application/x-ndjson",
                part_min=self.part_min or PART_MIN,
            )
            self.head.etags[side] = written.etag
        if new_orders:  # the summary follows the manifests' lines only
            self.before_write()
            self.storage.put_bytes(
                self.head.keys["summary"], dumps(document) + b"\n", content_type="application/json"
            )
        records = {t: k.pack() for t, k in self.new.items() if k is not None}
        gone = [t for t, k in self.new.items() if k is None]
        errors = {t: k is not None and k.error is not None for t, k in self.new.items()}
        self.before_write()
        self.keep.commit(
            self.head.pack(),
            records=records,
            gone=gone,
            refs=refs,
            errors=errors,
            orders={side: (ids.tobytes(), sizes.tobytes()) for side, (ids, sizes, _) in new_orders.items()},
        )
        first, count = self.keep.first_errors(FIRST_ERRORS)
        reasons = {t: Kept.unpack(v).error for t, v in self.keep.records(first).items()}
        return Published(
            entries={side: len(current[side]) for side in SIDES},
            labels={side: len(self.head.counts[side].labels) for side in SIDES},
            errors=[{"task": t, "error": reasons.get(t)} for t in first],
            error_count=count,
        )

    def _unchanged(self, task_id: int) -> bool:
        """Whether a touched entry is in a manifest and stays there as it was (its new side: the old)."""
        old, new = self.old.get(task_id), self.new.get(task_id)
        if old is None or new is None or old.side is None or new.side is None:
            return False
        if (old.ref, old.labels, old.dataset, old.digest) != (new.ref, new.labels, new.dataset, new.digest):
            return False
        new.side = old.side
        return True

    def _leaves(self, task_id: int) -> bool:
        new = self.new.get(task_id, self.old[task_id])
        return new is None or new.side is None

    # ------------------------------------------------------------------------------------ dedupe

    def _dedupe(self, touched: set[int], entries: dict[int, CachedEntry]) -> dict[str, bytes | None]:
        """The new records of the touched tasks and of the tasks whose image's first task changed;
        returns the changed source-ref task lists (None: no usable task left)."""
        names = {k.ref for k in self.old.values() if k.usable}
        names |= {e.source_ref for e in entries.values() if e.line is not None}
        before = {ref: orjson.loads(v) for ref, v in self.keep.ref_tasks(names).items()}
        after = {ref: list(tasks) for ref, tasks in before.items()}
        for t in touched:
            old = self.old.get(t)
            if old is not None and old.usable:
                if t not in after.get(old.ref, ()):
                    raise _Fallback(f"task {t} is not where the kept state says")
                after[old.ref].remove(t)
            entry = entries.get(t)
            if entry is not None and entry.line is not None:
                tasks = after.setdefault(entry.source_ref, [])
                tasks.insert(bisect_left(tasks, t), t)
        others: set[int] = set()
        for ref in names:
            first_before = before.get(ref, [None])[0]
            first_after = (after.get(ref) or [None])[0]
            if first_before != first_after:
                others.update(t for t in (first_before, first_after) if t is not None and t not in touched)
        if others:
            self.old.update({t: Kept.unpack(v) for t, v in self.keep.records(others).items()})
            entries = {**entries, **self.cached(others)}
        for t in touched | others:
            entry = entries.get(t)
            if entry is None:
                self.new[t] = None
                continue
            if entry.line is None:
                self.new[t] = Kept(
                    entry.source_ref, False, None, 0, None, entry.labels, entry.dataset, entry.error
                )
                continue
            if after[entry.source_ref][0] != t:
                error = f"{entry.source_ref} is on an earlier task"
                self.new[t] = Kept(entry.source_ref, True, None, 0, None, entry.labels, entry.dataset, error)
                continue
            row = entry.check if entry.check is not None else self.row_of(entry.line, entry.source_ref)
            if row is None:
                raise _Fallback(f"the line of task {t} names another image")
            self.new[t] = Kept(
                entry.source_ref,
                True,
                TRAIN,
                len(entry.line) + 1,
                row,
                entry.labels,
                entry.dataset,
                None,
                line_digest(entry.line),
            )  # fmt: skip  (its side is placed by the split)
            self.lines[t] = entry.line
        return {ref: orjson.dumps(after[ref]) if after.get(ref) else None for ref in names}

    # ------------------------------------------------------------------------------------- split

    def _split(self, removed: list[int], added: list[int]) -> dict[int, str]:
        """Place the entries joining the manifests, update the split's state; returns the other entries
        whose side changes (the stratum's boundary passed them)."""
        head = self.head
        frequency = dict(head.frequency)
        label_sets = dict(head.label_sets)
        for t, sign in [(t, -1) for t in removed] + [(t, 1) for t in added]:
            kept = self.old[t] if sign < 0 else self.new[t]
            assert kept is not None
            key = _set_key(kept.labels)
            _add(frequency, key, sign)
            label_sets[key] = label_sets.get(key, 0) + sign
            if not label_sets[key]:
                del label_sets[key]
        for key in set(label_sets) & set(head.label_sets):
            if _stratum(key, head.frequency) != _stratum(key, frequency):
                raise _Fallback(f"the stratum of the label set {key} changes")
        ranked_add: dict[str, list[str]] = {}
        ranked_remove: dict[str, list[str]] = {}
        joining: dict[str, list[tuple[str, int]]] = {}
        leaving = [(t, _stratum(_set_key(self.old[t].labels), head.frequency)) for t in removed]
        arriving = []
        for t in added:
            new = self.new[t]
            assert new is not None
            arriving.append((t, new, _stratum(_set_key(new.labels), frequency)))
        touched_strata = {s for _, s in leaving} | {s for _, _, s in arriving}
        before = {s: self._boundary(s, head.ranked.get(s, 0)) for s in touched_strata}
        for t, stratum in leaving:
            old = self.old[t]
            if old.dataset is not None:
                pair = head.kept[stratum]
                pair[0] -= 1
                pair[1] -= old.dataset == TEST
            else:
                ranked_remove.setdefault(stratum, []).append(rank_member(self.seed, old.ref, t))
            if old.side == TEST:
                _add(head.test_labels, _set_key(old.labels), -1)
        for t, new, stratum in arriving:
            if new.dataset is not None:
                pair = head.kept.setdefault(stratum, [0, 0])
                pair[0] += 1
                pair[1] += new.dataset == TEST
                new.side = new.dataset
            else:
                member = rank_member(self.seed, new.ref, t)
                ranked_add.setdefault(stratum, []).append(member)
                joining.setdefault(stratum, []).append((member, t))
        self.keep.mark_busy()
        self.keep.change_strata(
            {self.keep.stratum_key(stratum_digest(s)): m for s, m in ranked_add.items()},
            {self.keep.stratum_key(stratum_digest(s)): m for s, m in ranked_remove.items()},
        )
        flipped: dict[int, str] = {}
        added_set = set(added)
        for stratum in touched_strata:
            count = (
                head.ranked.get(stratum, 0)
                + len(ranked_add.get(stratum, ()))
                - len(ranked_remove.get(stratum, ()))
            )
            if count:
                head.ranked[stratum] = count
            else:
                head.ranked.pop(stratum, None)
            if head.kept.get(stratum) == [0, 0]:
                del head.kept[stratum]
            after = self._boundary(stratum, count)
            for member, t in joining.get(stratum, ()):
                new = self.new[t]
                assert new is not None
                new.side = TEST if head.has_test and member < after else TRAIN
            if not head.has_test or before[stratum] == after:
                continue
            low, high = min(before[stratum], after), max(before[stratum], after)
            zkey = self.keep.stratum_key(stratum_digest(stratum))
            for member in self.keep.stratum_between(zkey, low or None, None if high == _ABOVE_ALL else high):
                t = _member_task(member)
                if t not in added_set:
                    flipped[t] = TEST if member < after else TRAIN
        if flipped:
            self.old.update(
                {t: Kept.unpack(v) for t, v in self.keep.records(set(flipped) - set(self.old)).items()}
            )
            for t in flipped:
                if t not in self.new:
                    old = self.old[t]
                    self.new[t] = Kept(
                        old.ref, old.usable, old.side, old.size, old.row, old.labels, old.dataset, old.error,
                        old.digest,
                    )  # fmt: skip
        for t in added:
            new = self.new[t]
            if new is not None and new.side == TEST:
                _add(head.test_labels, _set_key(new.labels), 1)
        for t, side in flipped.items():
            new = self.new[t]
            assert new is not None
            _add(head.test_labels, _set_key(new.labels), 1 if side == TEST else -1)
            new.side = side
        if head.has_test and self.fraction > 0 and head.ranked:
            for name, n in frequency.items():
                tested = head.test_labels.get(name, 0)
                if n >= 2 and tested in (0, n):
                    raise _Fallback(f"label {name!r} would be missing from a set: the split's repair runs")
        head.frequency = frequency
        head.label_sets = label_sets
        return flipped

    def _boundary(self, stratum: str, ranked: int) -> str:
        """The first member of the stratum that goes to train ("" when all do, :data:`_ABOVE_ALL` when
        none does): members ranked before it go to test."""
        if not self.head.has_test:
            return ""
        total, tested = self.head.kept.get(stratum, [0, 0])
        need = target_test_count(ranked + total, self.fraction) - tested
        if need <= 0:
            return ""
        if need >= ranked:
            return _ABOVE_ALL
        member = self.keep.stratum_at(self.keep.stratum_key(stratum_digest(stratum)), need)
        return member if member is not None else _ABOVE_ALL

    # --------------------------------------------------------------------------------- manifests

    def _moves(
        self, removed: list[int], added: list[int], flipped: dict[int, str]
    ) -> dict[str, tuple[set[int], dict[int, bytes]]]:
        """Per side, the task ids whose line leaves it and the lines joining it; counters updated."""
        moves: dict[str, tuple[set[int], dict[int, bytes]]] = {side: (set(), {}) for side in SIDES}
        counts = self.head.counts
        for t in removed:
            old = self.old[t]
            assert old.side is not None
            moves[old.side][0].add(t)
            counts[old.side].count(t, old, -1)
        for t in added:
            new = self.new[t]
            assert new is not None and new.side is not None
            moves[new.side][1][t] = self.lines[t]
            counts[new.side].count(t, new, 1)
        if flipped:
            lines = self.cached(flipped)
            for t, side in flipped.items():
                old, new = self.old[t], self.new[t]
                assert old.side is not None and new is not None
                moves[old.side][0].add(t)
                counts[old.side].count(t, old, -1)
                line = lines[t].line
                if line is None:
                    raise _Fallback(f"task {t}'s cached entry lost its line")
                moves[side][1][t] = line
                counts[side].count(t, new, 1)
        return moves

    def _order(self, side: str) -> tuple[array[int], array[int]]:
        ids, sizes = self.keep.order(side)
        return _loaded(ids), _loaded(sizes)

    def _pieces(
        self, order: tuple[array[int], array[int]], leaving: set[int], joining: dict[int, bytes]
    ) -> tuple[array[int], array[int], list[Piece]]:
        """The manifest's new task ids and sizes, and its new bytes as pieces of the previous object."""
        ids, sizes = order
        events: list[tuple[int, int, int]] = []  # (index in the old order, 0 insert / 1 remove, task id)
        for t in leaving:
            index = bisect_left(ids, t)
            if index >= len(ids) or ids[index] != t:
                raise _Fallback(f"task {t} is not where the kept manifest says")
            events.append((index, 1, t))
        for t in joining:
            events.append((bisect_left(ids, t), 0, t))
        events.sort()
        pieces: list[Piece] = []
        new_ids: array[int] = array("q")
        new_sizes: array[int] = array("q")
        index = offset = 0  # where the copy of the previous object resumes
        for at, kind, t in events:
            if at > index:
                end = offset + sum(sizes[index:at])
                pieces.append(Copy(offset, end))
                new_ids.extend(ids[index:at])
                new_sizes.extend(sizes[index:at])
                index, offset = at, end
            if kind == 0:
                line = joining[t] + b"\n"
                pieces.append(line)
                new_ids.append(t)
                new_sizes.append(len(line))
            else:
                pieces.append(b"")  # a deletion: the bytes around it are no longer contiguous
                offset += sizes[index]
                index += 1
        if index < len(ids):
            end = offset + sum(sizes[index:])
            pieces.append(Copy(offset, end))
            new_ids.extend(ids[index:])
            new_sizes.extend(sizes[index:])
        return new_ids, new_sizes, pieces
