"""Duplicate grouping, the group-aware split and the check report (pure core)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.bench_dedup import make_fixture, score
from converters.datacheck import CheckItem, check_report, dataset_limits
from converters.duplicates import EXACT, FLIP, NEAR, Fingerprint, HashIndex, find_duplicates
from converters.split import SplitItem, groups_kept_apart, split
from sync_service.domain.fingerprints import fingerprint_of


def fp(ref: str, phash: int, *, sha: str | None = None, flip: int | None = None) -> Fingerprint:
    """A fingerprint whose mirrored hash is, unless given, far from every hash (all bits inverted)."""
    return Fingerprint(ref, sha or ref, phash, phash ^ (2**64 - 1) if flip is None else flip)


def test_exact_near_and_flip_groups_are_told_apart() -> None:
    base = 0x0123_4567_89AB_CDEF
    mirror = 0xFEDC_BA98_7654_3210
    prints = [
        fp("s3://b/a.jpg", base, flip=mirror),
        fp("s3://b/a-copy.jpg", base, sha="s3://b/a.jpg", flip=mirror),
        fp("s3://b/near.jpg", base ^ 0b1011, flip=mirror),
        fp("s3://b/mirror.jpg", mirror, flip=base),
        fp("s3://b/other.jpg", 0x5555_5555_5555_5555, flip=0xAAAA_AAAA_AAAA_AAAA),
        fp("s3://b/x.jpg", 0x0F0F_0F0F_0F0F_0F0F, flip=1),
        fp("s3://b/x2.jpg", 0x0F0F_0F0F_0F0F_0F0F, sha="s3://b/x.jpg", flip=1),
    ]
    groups = find_duplicates(prints, distance=6)
    kinds = {g.members: g.kind for g in groups}
    assert kinds == {
        ("s3://b/a-copy.jpg", "s3://b/a.jpg", "s3://b/mirror.jpg", "s3://b/near.jpg"): FLIP,
        ("s3://b/x.jpg", "s3://b/x2.jpg"): EXACT,
    }
    first = next(g for g in groups if len(g.members) == 4)
    assert Counter(p.kind for p in first.pairs) == {
        EXACT: 1,
        NEAR: 1,
        FLIP: 2,
    }  # an exact copy is matched once
    assert find_duplicates(prints[:3], distance=6)[0].kind == NEAR


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=40), st.integers(0, 12), st.integers(1, 5000))
def test_hash_index_finds_exactly_the_hashes_within_the_distance(
    values: list[int], distance: int, expected: int
) -> None:
    index = HashIndex(distance=distance, expected=expected)
    for v in values:
        index.add(v)
    probe = values[0] ^ 0b1_0000_0001
    found = sorted(index.near(probe))
    want = sorted(
        (i, (v ^ probe).bit_count()) for i, v in enumerate(values) if (v ^ probe).bit_count() <= distance
    )
    assert found == want


def test_recall_and_precision_on_injected_copies() -> None:
    files, origin = make_fixture(16, copies_every=2, seed=3)
    prints = [p for p in (fingerprint_of(name, data) for name, data in files.items()) if p is not None]
    groups = find_duplicates(sorted(prints, key=lambda p: p.source_ref))
    figures = score(groups, origin)
    assert figures["recall"] >= 0.95, figures
    assert figures["precision"] >= 0.95, figures
    assert figures["flip_recall"] >= 0.95, figures


labelled = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=6).map(lambda s: f"s3://b/{s}.jpg"),
    st.sampled_from(["cat", "dog", "owl"]),
    min_size=2,
    max_size=80,
)


@settings(max_examples=120, deadline=None)
@given(labelled, st.integers(0, 40), st.sampled_from([0.2, 0.25, 0.5]), st.integers(0, 3))
def test_no_group_crosses_sides_and_fractions_hold(
    data: dict[str, str], cut: int, fraction: float, seed: int
) -> None:
    refs = sorted(data)
    groups = [refs[i : i + 3] for i in range(0, min(cut, len(refs)), 3)]
    items = [SplitItem(ref, frozenset([label])) for ref, label in data.items()]
    sides = split(items, test_fraction=fraction, seed=seed, groups=groups)
    again = split(list(reversed(items)), test_fraction=fraction, seed=seed, groups=groups)
    assert sides == again
    assert all(len({sides[m] for m in g}) == 1 for g in groups)
    largest = max((len(g) for g in groups), default=1)
    tested = sum(1 for s in sides.values() if s == "test")
    # Within one unit per stratum of the target (units of up to ``largest`` images).
    assert abs(tested - len(data) * fraction) <= 3 * largest + 1


@settings(max_examples=100, deadline=None)
@given(labelled, st.integers(0, 3))
def test_ungrouped_input_gives_exactly_the_ungrouped_split(data: dict[str, str], seed: int) -> None:
    items = [SplitItem(ref, frozenset([label])) for ref, label in data.items()]
    plain = split(items, seed=seed)
    assert split(items, seed=seed, groups=[]) == plain
    assert split(items, seed=seed, groups=[[ref] for ref in data]) == plain
    keep = dict(list(plain.items())[: len(plain) // 2])
    assert split(items, seed=seed, keep=keep, groups=[[r] for r in data]) == split(
        items, seed=seed, keep=keep
    )


def test_kept_group_on_both_sides_is_reported_not_moved() -> None:
    items = [SplitItem(f"s3://b/{n}.jpg", frozenset(["cat"])) for n in "abcdef"]
    keep = {"s3://b/a.jpg": "train", "s3://b/b.jpg": "test", "s3://b/c.jpg": "test"}
    group = ["s3://b/a.jpg", "s3://b/b.jpg", "s3://b/c.jpg", "s3://b/d.jpg"]
    sides = split(items, keep=keep, groups=[group])
    assert {ref: sides[ref] for ref in keep} == keep
    assert sides["s3://b/d.jpg"] == "test"  # with most of its kept members
    assert groups_kept_apart([group], keep) == [tuple(group)]


def test_check_report_names_leaks_disagreements_coverage_and_moves() -> None:
    items = [
        CheckItem("s3://b/1.jpg", "train", frozenset(["cat"]), {"cat": 2}),
        CheckItem("s3://b/2.jpg", "test", frozenset(["dog"])),
        CheckItem("s3://b/3.jpg", "train", frozenset(["cat"])),
        CheckItem("s3://b/4.jpg", "train", frozenset(["owl"])),
        CheckItem("s3://b/5.jpg", "train", frozenset(["owl"])),
        CheckItem("s3://b/6.jpg", "test", frozenset(["cat"])),
    ]
    groups = find_duplicates(
        [
            fp("s3://b/1.jpg", 1),
            fp("s3://b/2.jpg", 1),
            fp("s3://b/3.jpg", 3),
            fp("s3://b/4.jpg", 0xFFFF_0000_FFFF_0000),
            fp("s3://b/5.jpg", 0xFFFF_0000_FFFF_0001),
        ],
        distance=4,
    )
    report = check_report(items, groups, region="eu-west-2")
    assert [(g["train"], g["test"]) for g in report["crossing"]] == [
        (["s3://b/1.jpg", "s3://b/3.jpg"], ["s3://b/2.jpg"])
    ]
    assert [g["images"] for g in report["within"]] == [["s3://b/4.jpg", "s3://b/5.jpg"]]
    assert len(report["label_disagreements"]) == 1
    assert report["fix"]["moves"] == [{"source-ref": "s3://b/2.jpg", "from": "test", "to": "train"}]
    coverage = report["coverage"]
    assert coverage["labels"]["cat"] == {
        "train": {"entries": 2, "boxes": 2},
        "test": {"entries": 1, "boxes": 0},
    }
    assert coverage["missing_from_test"] == ["owl"]
    assert {(b["label"], b["rule"]) for b in coverage["below_minimum"]} == {("dog", "train")}
    assert coverage["limits"] == {"region": "eu-west-2", "train": 28_000, "test": 7_000}
    assert dataset_limits(None)["train"] == 250_000
