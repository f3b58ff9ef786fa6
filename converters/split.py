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
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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
) -> dict[str, str]:
    """Assign every item to ``"train"`` or ``"test"``; return ``{source_ref: set}``.

    ``keep`` maps source-refs of an earlier split to their set; those stay where they are. Items are
    unique by ``source_ref`` (a repeat raises :class:`SplitError`).
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
    frequency: dict[str, int] = {}
    for item in by_ref.values():
        for name in item.labels:
            frequency[name] = frequency.get(name, 0) + 1
    ranks = {ref: _rank(seed, ref) for ref in by_ref}

    strata: dict[str, list[SplitItem]] = defaultdict(list)
    for item in by_ref.values():
        strata[stratum_of(item.labels, frequency)].append(item)

    assignment: dict[str, str] = {}
    for members in strata.values():
        members.sort(key=lambda it: ranks[it.source_ref])
        target = target_test_count(len(members), test_fraction)
        have = sum(1 for it in members if kept.get(it.source_ref) == TEST)
        need = target - have
        for it in members:
            earlier = kept.get(it.source_ref)
            if earlier is not None:
                assignment[it.source_ref] = earlier
            elif need > 0:
                assignment[it.source_ref] = TEST
                need -= 1
            else:
                assignment[it.source_ref] = TRAIN
    if test_fraction > 0:
        _repair(by_ref, assignment, kept, frequency, ranks)
    return assignment


def _repair(
    by_ref: Mapping[str, SplitItem],
    assignment: dict[str, str],
    kept: Mapping[str, str],
    frequency: Mapping[str, int],
    ranks: Mapping[str, bytes],
) -> None:
    presence: dict[str, Counter[str]] = {TRAIN: Counter(), TEST: Counter()}
    holders: dict[str, list[str]] = defaultdict(list)
    for ref, item in by_ref.items():
        presence[assignment[ref]].update(item.labels)
        for name in item.labels:
            holders[name].append(ref)
    for name in sorted(frequency, key=lambda n: (frequency[n], n)):
        if frequency[name] < 2:
            continue
        for missing in (TEST, TRAIN):
            if presence[missing][name]:
                continue
            source = TRAIN if missing == TEST else TEST
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


def labels_short_of(items: Iterable[SplitItem], minimum: int = 2) -> dict[str, int]:
    """Labels with fewer than ``minimum`` entries, with their counts: these cannot be in both sets.

    Rekognition refuses to distribute or auto-split such a dataset
    (``ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE`` / ``..._FOR_AUTOSPLIT``).
    """
    counts: Counter[str] = Counter()
    for item in items:
        counts.update(item.labels)
    return {name: n for name, n in sorted(counts.items()) if n < minimum}
