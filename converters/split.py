"""A stable, stratified train/test split of dataset entries, keyed by ``source-ref``.

* **Stable**: an entry's place depends on ``sha256(seed, source-ref)`` and on its stratum's size, never
  on input order, so the same entries and seed give the same split.
* **Stratified**: entries are grouped in strata and each stratum sends ``round(n * fraction)`` entries
  to test (half up), kept within ``[1, n - 1]`` for ``n >= 2`` so every stratum lands in both sets.
  The test share of each stratum is therefore within one image of ``n * fraction``.
* **Strata**: a single-label entry's stratum is its label; an unlabeled entry's is ``""``; a multi-label
  entry's is ``"+" + its rarest label`` (fewest entries in the whole input, ties by name): rare labels are
  the ones at risk of missing a set, and keeping multi-label entries apart leaves single-label strata exact.
* **Repair**: after the strata are placed, a label with two or more entries that is missing from a set
  gets one of its movable entries moved there, multi-label entries first, never one whose move would take
  another label out of the set it leaves. (For multi-label data this is best effort: some label
  combinations admit no split that puts every label in both sets.)
* **Keeping an earlier split**: kept entries never move; only new ones are placed, so that each stratum's
  total test count approaches its target.
* **Groups** (duplicate images, :mod:`converters.duplicates`): with ``groups``, the members of a group are
  placed as one unit, on one side. A unit's stratum is that of its members' label set together; its rank
  is its best-ranked member's; units are placed in rank order, each to test while that brings the
  stratum's test count nearer its target, and the repair moves whole units. A group with a kept member
  goes to its kept side; a group kept on both sides stays as kept (its new members join the side holding
  most of its kept ones, ties: train) and :func:`groups_kept_apart` names it. Without groups (or with
  groups of one) the split is exactly the ungrouped one.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import methodcaller

from converters.errors import SplitError

TRAIN = "train"
TEST = "test"


@dataclass(frozen=True, slots=True)
class SplitItem:
    """What the split needs of an entry: its identity and its label names."""

    source_ref: str
    labels: frozenset[str]


def _rank(seed: int, source_ref: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{source_ref}".encode()).digest()


def target_test_count(n: int, fraction: float) -> int:
    """How many of a stratum's ``n`` entries go to test: ``round(n * fraction)``, in ``[1, n-1]`` if n>=2."""
    count = int(n * fraction + 0.5)
    if n >= 2:
        count = min(max(count, 1), n - 1)
    return count


def stratum_of(labels: frozenset[str], frequency: Mapping[str, int]) -> str:
    """The stratum of an entry with ``labels``, given each label's entry count in the input."""
    if not labels:
        return ""
    if len(labels) == 1:
        return next(iter(labels))
    return "+" + min(labels, key=lambda name: (frequency[name], name))


def split(
    items: Iterable[SplitItem],
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    keep: Mapping[str, str] | None = None,
    groups: Iterable[Iterable[str]] | None = None,
) -> dict[str, str]:
    """Assign every item to ``"train"`` or ``"test"``; return ``{source_ref: set}``.

    ``keep`` maps source-refs of an earlier split to their set; those stay where they are. Items are
    unique by ``source_ref`` (a repeat raises :class:`SplitError`). ``groups`` are source-refs that must
    land on one side (refs that are not items are ignored; a ref in two groups joins them).
    """
    if not 0 <= test_fraction <= 1:
        raise SplitError(f"test fraction must be within 0..1, got {test_fraction}")
    kept = dict(keep or {})
    bad = {ref: side for ref, side in kept.items() if side not in (TRAIN, TEST)}
    if bad:
        ref, side = next(iter(bad.items()))
        raise SplitError(f"kept entry {ref!r} has set {side!r}, expected train or test")
    by_ref: dict[str, SplitItem] = {}
    for item in items:
        if item.source_ref in by_ref:
            raise SplitError(f"source-ref {item.source_ref!r} appears twice", code="DUPLICATE_SOURCE_REF")
        by_ref[item.source_ref] = item
    # Entries share few label sets: count and place each set once, not each entry.
    label_sets = {ref: _label_set(item) for ref, item in by_ref.items()}
    frequency: dict[str, int] = {}
    for labels, count in Counter(label_sets.values()).items():
        for name in labels:
            frequency[name] = frequency.get(name, 0) + count
    # _rank(seed, ref) of each ref, in map() steps rather than a Python call each
    hashed = map(hashlib.sha256, map(f"{seed}\x00".encode().__add__, map(str.encode, by_ref)))
    ranks = dict(zip(by_ref, map(_digest, hashed), strict=True))
    units = _units(groups, by_ref) if groups is not None else {}
    if units:
        return _split_units(by_ref, label_sets, frequency, ranks, units, test_fraction, kept)

    stratum: dict[frozenset[str], str] = {}
    strata: dict[str, list[str]] = defaultdict(list)
    for ref, labels in label_sets.items():
        where = stratum.get(labels)
        if where is None:
            where = stratum[labels] = stratum_of(labels, frequency)
        strata[where].append(ref)

    assignment: dict[str, str] = {}
    for members in strata.values():
        members.sort(key=ranks.__getitem__)
        target = target_test_count(len(members), test_fraction)
        if not kept:
            need = max(target, 0)
            assignment.update(zip(members, chain(repeat(TEST, need), repeat(TRAIN)), strict=False))
            continue
        have = sum(1 for ref in members if kept.get(ref) == TEST)
        need = target - have
        for ref in members:
            earlier = kept.get(ref)
            if earlier is not None:
                assignment[ref] = earlier
            elif need > 0:
                assignment[ref] = TEST
                need -= 1
            else:
                assignment[ref] = TRAIN
    if test_fraction > 0:
        _repair(by_ref, assignment, kept, frequency, ranks, label_sets)
    return assignment


def _units(groups: Iterable[Iterable[str]], by_ref: Mapping[str, SplitItem]) -> dict[str, tuple[str, ...]]:
    """Each grouped item's unit (its group's items, sorted), for groups of two or more items."""
    parent: dict[str, str] = {}

    def find(ref: str) -> str:
        while parent[ref] != ref:
            parent[ref] = parent[parent[ref]]
            ref = parent[ref]
        return ref

    for group in groups:
        members = [ref for ref in group if ref in by_ref]
        for ref in members:
            parent.setdefault(ref, ref)
        for ref in members[1:]:
            a, b = find(members[0]), find(ref)
            if a != b:
                parent[max(a, b)] = min(a, b)
    joined: dict[str, list[str]] = defaultdict(list)
    for ref in parent:
        joined[find(ref)].append(ref)
    return {ref: tuple(sorted(members)) for members in joined.values() if len(members) > 1 for ref in members}


def _majority(sides: Sequence[str]) -> str:
    """The side most of ``sides`` are on; ties: train."""
    return TEST if sides.count(TEST) > sides.count(TRAIN) else TRAIN


def _split_units(
    by_ref: Mapping[str, SplitItem],
    label_sets: Mapping[str, frozenset[str]],
    frequency: Mapping[str, int],
    ranks: Mapping[str, bytes],
    units: Mapping[str, tuple[str, ...]],
    test_fraction: float,
    kept: Mapping[str, str],
) -> dict[str, str]:
    """The split of :func:`split` when some items are grouped: each unit placed whole."""
    all_units: dict[tuple[str, ...], frozenset[str]] = {}
    for ref in by_ref:
        unit = units.get(ref, (ref,))
        if unit not in all_units:
            all_units[unit] = frozenset().union(*(label_sets[m] for m in unit))
    unit_rank = {unit: min(ranks[m] for m in unit) for unit in all_units}
    strata: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for unit, labels in all_units.items():
        strata[stratum_of(labels, frequency)].append(unit)

    assignment: dict[str, str] = {}
    for members in strata.values():
        members.sort(key=unit_rank.__getitem__)
        target = target_test_count(sum(map(len, members)), test_fraction)
        have = 0
        free = []
        for unit in members:
            earlier = [kept[m] for m in unit if m in kept]
            if not earlier:
                free.append(unit)
                continue
            side = _majority(earlier)
            for m in unit:
                assignment[m] = kept.get(m, side)
            have += sum(1 for m in unit if assignment[m] == TEST)
        for unit in free:
            # To test while that brings the stratum nearer its target (for a unit of one: while short).
            side = TEST if 2 * have + len(unit) < 2 * target else TRAIN
            if side == TEST:
                have += len(unit)
            assignment.update(dict.fromkeys(unit, side))
    if test_fraction > 0:
        _repair(by_ref, assignment, kept, frequency, ranks, label_sets, units)
    return assignment


def groups_kept_apart(groups: Iterable[Iterable[str]], keep: Mapping[str, str]) -> list[tuple[str, ...]]:
    """The groups whose kept members are on both sides (a split cannot put them on one without moving
    a kept entry; :func:`split` leaves them as kept)."""
    out = []
    for group in groups:
        members = tuple(group)
        if {keep[m] for m in members if m in keep} == {TRAIN, TEST}:
            out.append(members)
    return out


_digest = methodcaller("digest")


def _label_set(item: SplitItem) -> frozenset[str]:
    labels = item.labels
    return labels if type(labels) is frozenset else frozenset(labels)


def _repair(
    by_ref: Mapping[str, SplitItem],
    assignment: dict[str, str],
    kept: Mapping[str, str],
    frequency: Mapping[str, int],
    ranks: Mapping[str, bytes],
    label_sets: Mapping[str, frozenset[str]],
    units: Mapping[str, tuple[str, ...]] | None = None,
) -> None:
    """Move an entry (with ``units``: its whole unit) into a set its label is missing from."""
    # Each entry is in one set: count the labels of the test entries, the rest are in train.
    presence: dict[str, Counter[str]] = {TRAIN: Counter(), TEST: Counter()}
    tested = Counter([label_sets[ref] for ref, side in assignment.items() if side == TEST])
    for labels, count in tested.items():
        for name in labels:
            presence[TEST][name] += count
    for name, count in frequency.items():
        if count > presence[TEST][name]:
            presence[TRAIN][name] = count - presence[TEST][name]
    holders: dict[str, list[str]] | None = None  # made when a label is missing from a set (rare)
    for name in sorted(frequency, key=lambda n: (frequency[n], n)):
        if frequency[name] < 2:
            continue
        for missing in (TEST, TRAIN):
            if presence[missing][name]:
                continue
            if holders is None:
                holders = defaultdict(list)
                for ref, item in by_ref.items():
                    for label in item.labels:
                        holders[label].append(ref)
            source = TRAIN if missing == TEST else TEST
            if units:
                _repair_unit(
                    name,
                    source,
                    missing,
                    holders[name],
                    by_ref,
                    assignment,
                    kept,
                    frequency,
                    ranks,
                    units,
                    presence,
                )
                continue
            candidates = [
                ref
                for ref in holders[name]
                if assignment[ref] == source
                and ref not in kept
                and all(
                    presence[source][other] > 1 or frequency[other] < 2
                    for other in by_ref[ref].labels
                    if other != name
                )
                and presence[source][name] > 1
            ]
            if not candidates:
                continue
            candidates.sort(key=lambda ref: (len(by_ref[ref].labels) == 1, ranks[ref]))
            moved = candidates[0]
            assignment[moved] = missing
            presence[source].subtract(by_ref[moved].labels)
            presence[missing].update(by_ref[moved].labels)


def _repair_unit(
    name: str,
    source: str,
    missing: str,
    holders: Iterable[str],
    by_ref: Mapping[str, SplitItem],
    assignment: dict[str, str],
    kept: Mapping[str, str],
    frequency: Mapping[str, int],
    ranks: Mapping[str, bytes],
    units: Mapping[str, tuple[str, ...]],
    presence: dict[str, Counter[str]],
) -> None:
    """The repair's move of a unit holding ``name`` from ``source`` to ``missing``, as for one entry."""
    best: tuple[tuple[bool, bytes], tuple[str, ...], Counter[str]] | None = None
    for unit in dict.fromkeys(units.get(ref, (ref,)) for ref in holders):
        if any(assignment[m] != source or m in kept for m in unit):
            continue
        carried: Counter[str] = Counter()
        for m in unit:
            carried.update(by_ref[m].labels)
        if presence[source][name] <= carried[name]:
            continue
        if not all(presence[source][o] > carried[o] or frequency[o] < 2 for o in carried if o != name):
            continue
        key = (len(carried) == 1, min(ranks[m] for m in unit))
        if best is None or key < best[0]:
            best = (key, unit, carried)
    if best is None:
        return
    _, unit, carried = best
    assignment.update(dict.fromkeys(unit, missing))
    presence[source].subtract(carried)
    presence[missing].update(carried)


def labels_short_of(items: Iterable[SplitItem], minimum: int = 2) -> dict[str, int]:
    """Labels with fewer than ``minimum`` entries, with their counts: these cannot be in both sets.

    Rekognition refuses to distribute or auto-split such a dataset
    (``ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE`` / ``..._FOR_AUTOSPLIT``).
    """
    counts: Counter[str] = Counter()
    for labels, count in Counter(_label_set(item) for item in items).items():
        for name in labels:
            counts[name] += count
    return {name: n for name, n in sorted(counts.items()) if n < minimum}
