"""The stratified, stable train/test split."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from converters.errors import SplitError
from converters.split import SplitItem, labels_short_of, split, target_test_count

single_label_data = st.dictionaries(
    st.text("abcdefghij/_", min_size=1, max_size=10).map(lambda s: f"s3://b/{s}.jpg"),
    st.sampled_from(["cat", "dog", "owl", "eel", "ant"]),
    min_size=1,
    max_size=120,
)


def items_of(data: dict[str, str]) -> list[SplitItem]:
    return [SplitItem(ref, frozenset([label])) for ref, label in data.items()]


def check_single_label_properties(data: dict[str, str], assignment: dict[str, str], fraction: float) -> None:
    per_label: dict[str, Counter[str]] = {}
    for ref, label in data.items():
        per_label.setdefault(label, Counter())[assignment[ref]] += 1
    for label, sides in per_label.items():
        n = sides["train"] + sides["test"]
        assert abs(sides["test"] - n * fraction) <= 1, (label, sides)
        if n >= 2:
            assert sides["train"] and sides["test"], (label, sides)


@settings(max_examples=150)
@given(single_label_data, st.sampled_from([0.1, 0.2, 0.25, 0.5]), st.integers(0, 5))
def test_split_is_stable_stratified_and_within_one_image(
    data: dict[str, str], fraction: float, seed: int
) -> None:
    first = split(items_of(data), test_fraction=fraction, seed=seed)
    again = split(list(reversed(items_of(data))), test_fraction=fraction, seed=seed)
    assert first == again
    assert set(first) == set(data)
    check_single_label_properties(data, first, fraction)


@settings(max_examples=150)
@given(single_label_data, single_label_data, st.integers(0, 3))
def test_keeping_an_earlier_split_never_moves_an_entry(
    old: dict[str, str], new: dict[str, str], seed: int
) -> None:
    earlier = split(items_of(old), seed=seed)
    combined = {**new, **old}
    later = split(items_of(combined), seed=seed, keep=earlier)
    for ref, side in earlier.items():
        assert later[ref] == side
    check_single_label_properties(combined, later, 0.2)


def test_multi_label_repair_puts_a_label_in_both_sets() -> None:
    # L has two images, each in a stratum of one ("+A", "+B"), so the strata alone put both in train.
    items = [
        SplitItem("s3://b/1.jpg", frozenset({"A", "L"})),
        SplitItem("s3://b/2.jpg", frozenset({"B", "L"})),
        *(SplitItem(f"s3://b/c{i}.jpg", frozenset({"C"})) for i in range(5)),
    ]
    assignment = split(items, seed=1)
    assert {assignment["s3://b/1.jpg"], assignment["s3://b/2.jpg"]} == {"train", "test"}


def test_two_frames_with_one_name_in_two_folders_are_two_entries() -> None:
    items = [
        SplitItem("s3://b/cam1/frame_0001.jpg", frozenset({"x"})),
        SplitItem("s3://b/cam2/frame_0001.jpg", frozenset({"x"})),
    ]
    assert sorted(split(items).values()) == ["test", "train"]


def test_target_counts() -> None:
    assert [target_test_count(n, 0.2) for n in (0, 1, 2, 3, 5, 7, 8, 10)] == [0, 0, 1, 1, 1, 1, 2, 2]


def test_bad_input_is_refused() -> None:
    with pytest.raises(SplitError, match="appears twice"):
        split([SplitItem("s3://b/a.jpg", frozenset()), SplitItem("s3://b/a.jpg", frozenset())])
    with pytest.raises(SplitError, match=r"0\.\.1"):
        split([], test_fraction=1.5)


def test_labels_short_of_two_images_are_named() -> None:
    items = [SplitItem("s3://b/1.jpg", frozenset({"a", "b"})), SplitItem("s3://b/2.jpg", frozenset({"a"}))]
    assert labels_short_of(items) == {"b": 1}
