"""Groups of duplicate images from their fingerprints: exact copies, near copies and mirrored copies.

An image's :class:`Fingerprint` is its content digest (SHA-256 of the bytes) and two 64-bit perceptual
hashes: ``phash`` of the image and ``flip`` of the image mirrored left to right (the caller hashes both
from the same downscaled pixels; a DCT hash's median threshold makes the mirrored hash not derivable
from the other's bits, so it is computed, not derived). Two images are:

* ``exact`` duplicates when their digests are equal;
* ``near`` duplicates when the Hamming distance of their ``phash`` is at most ``distance`` bits
  (a resize, a re-encode, a small crop or a brightness change);
* ``flip`` duplicates when one's ``phash`` is within ``distance`` of the other's ``flip`` and they are not
  near duplicates already (a horizontally mirrored copy: a different picture to a person, often the same
  to a model trained with flip augmentation, so it is reported as its own kind).

An image too flat to hash (``phash`` None: a uniform or nearly uniform picture, whose DCT hash is noise
or all zeros whatever its colour) is grouped by its digest only.

Pairs are found by multi-index hashing (Norouzi, Punjani and Fleet, 2012): the 64 bits are cut into
``m`` chunks; two hashes within ``distance`` bits agree within ``distance // m`` bits on at least one chunk
(pigeonhole), so each hash is looked up in ``m`` tables under the chunk values within that radius, and
only those candidates are compared. ``m`` is chosen for the input's size, so the work grows about linearly
with the number of images, not with its square. Pairs are joined into groups with a union-find.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from math import comb

from converters.errors import ConversionError

HASH_BITS = 64
DEFAULT_DISTANCE = 8
"""Default Hamming threshold, in bits of 64: the bench's injected copies (resized, re-encoded at lower
quality, cropped 5%, brightness +-10%) fall within it and distinct images very rarely do."""

EXACT = "exact"
NEAR = "near"
FLIP = "flip"


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """An image's content digest (hex SHA-256) and 64-bit perceptual hashes of it and its mirror image
    (both None for an image too flat to hash)."""

    source_ref: str
    sha256: str
    phash: int | None
    flip: int | None


@dataclass(frozen=True, slots=True)
class Pair:
    """Two duplicate images (``a < b`` by source-ref), their ``kind`` and Hamming ``distance`` in bits."""

    a: str
    b: str
    kind: str
    distance: int


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """Images joined by duplicate pairs: ``members`` sorted by source-ref, ``kind`` the loosest link
    needed to join them (``exact`` < ``near`` < ``flip``), ``pairs`` the links found."""

    members: tuple[str, ...]
    kind: str
    pairs: tuple[Pair, ...]


def _chunks(count: int) -> list[tuple[int, int]]:
    """``count`` (shift, width) bit ranges covering the 64 bits, widths differing by at most one."""
    out, shift = [], 0
    for index in range(count):
        width = HASH_BITS // count + (1 if index < HASH_BITS % count else 0)
        out.append((shift, width))
        shift += width
    return out


_CANDIDATE_COST = 4  # a candidate's comparison (a Python loop step) against a probe's (a step of map())


def _chunk_count(n: int, distance: int) -> int:
    """The number of chunks that makes the least work (table probes and candidate comparisons) per
    look-up among ``n`` stored hashes."""
    best, best_cost = 1, float("inf")
    for count in range(1, min(distance + 1, HASH_BITS) + 1):
        radius = distance // count
        width = HASH_BITS // count
        probes = count * sum(comb(width, i) for i in range(radius + 1))
        cost = probes * (1 + _CANDIDATE_COST * n / 2**width)
        if cost < best_cost:
            best, best_cost = count, cost
    return best


def _flips(width: int, radius: int) -> list[int]:
    """Every mask of ``width`` bits with at most ``radius`` bits set."""
    return [
        sum(1 << bit for bit in bits) for r in range(radius + 1) for bits in combinations(range(width), r)
    ]


class HashIndex:
    """Multi-index hashing of 64-bit hashes: :meth:`near` finds the stored ones within ``distance`` bits."""

    def __init__(self, *, distance: int, expected: int) -> None:
        if not 0 <= distance < HASH_BITS:
            raise ConversionError(
                f"duplicate distance must be within 0..{HASH_BITS - 1} bits, got {distance}"
            )
        self.distance = distance
        count = _chunk_count(max(expected, 1), distance)
        self.radius = distance // count
        self.chunks = _chunks(count)
        self.masks = {width: _flips(width, self.radius) for _, width in self.chunks}
        self.tables: list[dict[int, list[int]]] = [{} for _ in self.chunks]
        self.hashes: list[int] = []

    def add(self, value: int) -> int:
        """Store ``value``; returns its position."""
        position = len(self.hashes)
        self.hashes.append(value)
        for table, (shift, width) in zip(self.tables, self.chunks, strict=True):
            table.setdefault((value >> shift) & ((1 << width) - 1), []).append(position)
        return position

    def near(self, value: int) -> Iterator[tuple[int, int]]:
        """``(position, distance)`` of each stored hash within ``distance`` bits of ``value``, once each."""
        seen: set[int] = set()
        hashes, limit = self.hashes, self.distance
        for table, (shift, width) in zip(self.tables, self.chunks, strict=True):
            key = (value >> shift) & ((1 << width) - 1)
            # The probes run in map() (C) rather than a Python loop: they are most of the work.
            for bucket in filter(None, map(table.get, map(key.__xor__, self.masks[width]))):
                for position in bucket:
                    bits = (hashes[position] ^ value).bit_count()
                    if bits <= limit and position not in seen:  # a match may be in several chunks
                        seen.add(position)
                        yield position, bits


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def duplicate_pairs(prints: Sequence[Fingerprint], *, distance: int = DEFAULT_DISTANCE) -> list[Pair]:
    """Every exact, near and flip pair among ``prints`` (unique by source-ref), sorted.

    Exact copies are linked to the first image with their digest (a star, not every pair), and are not
    compared again by hash.
    """
    first_of: dict[str, int] = {}
    pairs: list[Pair] = []
    # Each image's hash and its mirror image's hash are stored; one look-up of an image's hash then finds
    # both its near copies (their hash) and its mirrored copies (their mirror's hash).
    index = HashIndex(distance=distance, expected=2 * len(prints))
    owners: list[tuple[int, bool]] = []  # index position -> (position in prints, is the mirror's hash)
    for position, fp in enumerate(prints):
        original = first_of.setdefault(fp.sha256, position)
        if original != position:
            pairs.append(_pair(fp.source_ref, prints[original].source_ref, EXACT, 0))
            continue
        if fp.phash is None or fp.flip is None:
            continue
        found: dict[int, tuple[str, int]] = {}
        for stored, bits in index.near(fp.phash):
            other, mirrored = owners[stored]
            kind = FLIP if mirrored else NEAR
            if other not in found or (found[other][0] == FLIP and kind == NEAR):
                found[other] = (kind, bits)
        for other, (kind, bits) in found.items():
            pairs.append(_pair(fp.source_ref, prints[other].source_ref, kind, bits))
        index.add(fp.phash)
        owners.append((position, False))
        index.add(fp.flip)
        owners.append((position, True))
    pairs.sort(key=lambda p: (p.a, p.b))
    return pairs


def _pair(a: str, b: str, kind: str, distance: int) -> Pair:
    return Pair(a, b, kind, distance) if a < b else Pair(b, a, kind, distance)


_LOOSENESS = {EXACT: 0, NEAR: 1, FLIP: 2}


def group_pairs(pairs: Iterable[Pair]) -> list[DuplicateGroup]:
    """Join ``pairs`` into groups (union-find); sorted by first member. A group's kind is ``flip`` when it
    is joined only through a flip pair, ``near`` when through a near pair, else ``exact``."""
    pair_list = list(pairs)
    refs = sorted({ref for p in pair_list for ref in (p.a, p.b)})
    number = {ref: i for i, ref in enumerate(refs)}
    by_kind = {kind: _UnionFind(len(refs)) for kind in _LOOSENESS}
    for pair in pair_list:
        # Each finder joins the pairs of its kind and the tighter ones.
        for kind, finder in by_kind.items():
            if _LOOSENESS[pair.kind] <= _LOOSENESS[kind]:
                finder.union(number[pair.a], number[pair.b])
    loosest = by_kind[FLIP]
    members: dict[int, list[str]] = defaultdict(list)
    for ref in refs:
        members[loosest.find(number[ref])].append(ref)
    links: dict[int, list[Pair]] = defaultdict(list)
    for pair in pair_list:
        links[loosest.find(number[pair.a])].append(pair)
    groups = []
    for root, names in members.items():
        kind = EXACT
        for candidate in (EXACT, NEAR):
            finder = by_kind[candidate]
            if len({finder.find(number[ref]) for ref in names}) == 1:
                kind = candidate
                break
        else:
            kind = FLIP
        groups.append(DuplicateGroup(tuple(names), kind, tuple(links[root])))
    groups.sort(key=lambda g: g.members[0])
    return groups


def find_duplicates(
    prints: Sequence[Fingerprint], *, distance: int = DEFAULT_DISTANCE
) -> list[DuplicateGroup]:
    """The groups of exact, near and flip duplicates among ``prints`` (see the module docstring)."""
    seen: set[str] = set()
    for fp in prints:
        if fp.source_ref in seen:
            raise ConversionError(f"source-ref {fp.source_ref!r} appears twice among the fingerprints")
        seen.add(fp.source_ref)
    return group_pairs(duplicate_pairs(prints, distance=distance))
