"""The dataset check: leakage between train and test through duplicate images, and label coverage.

A model's test precision is only true when no test image is a copy (or a resize, a re-encode, a burst
neighbour, a mirror image) of a training image. :func:`check_report` takes each entry's side, labels and
boxes and the duplicate groups (:mod:`converters.duplicates`) and reports, as a JSON-ready dict:

* ``crossing``: groups with members in train and in test, the images named per side;
* ``within``: groups wholly inside one dataset (not leakage; duplicates weigh their image twice);
* ``label_disagreements``: groups whose members carry different label sets (one image labelled two ways);
* ``coverage``: per label, entries and boxes per side; labels missing from test; labels below Rekognition's
  minimums (spec §2.3: at least 1 training image; at least 2 images to distribute or auto-split); the
  dataset size limits of the region (spec §2.2: 250,000 images, 28,000 train / 7,000 test in the regions
  with the lower limit);
* ``fix``: the moves that put each crossing group on the side holding most of it (ties: train).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from converters.duplicates import DuplicateGroup
from converters.split import TEST, TRAIN

MIN_TRAIN_IMAGES_PER_LABEL = 1  # limits.md: min images per label, training
MIN_IMAGES_TO_SPLIT = 2  # a label needs an image on each side: distribute and auto-split refuse fewer
MAX_TEST_IMAGES_PER_LABEL = 1000  # limits.md: max images per label (testing), as printed
DATASET_LIMIT = 250_000
LOWER_LIMIT_REGIONS = frozenset({"ap-south-1", "eu-west-2"})
LOWER_LIMITS = {TRAIN: 28_000, TEST: 7_000}


@dataclass(frozen=True, slots=True)
class CheckItem:
    """What the check needs of an entry: its image, side, label names and box count per label."""

    source_ref: str
    dataset: str
    labels: frozenset[str]
    boxes: Mapping[str, int] = field(default_factory=dict)


def dataset_limits(region: str | None) -> dict[str, int]:
    """Most images per dataset in ``region`` (None: the usual limit)."""
    if region in LOWER_LIMIT_REGIONS:
        return dict(LOWER_LIMITS)
    return {TRAIN: DATASET_LIMIT, TEST: DATASET_LIMIT}


def fix_moves(groups: Iterable[Sequence[str]], sides: Mapping[str, str]) -> dict[str, str]:
    """``{source_ref: new side}`` that puts each group wholly on the side holding most of its members
    (ties: train); members not in ``sides`` are ignored."""
    moves: dict[str, str] = {}
    for group in groups:
        present = [ref for ref in group if ref in sides]
        held = Counter(sides[ref] for ref in present)
        if len(held) < 2:
            continue
        to = TEST if held[TEST] > held[TRAIN] else TRAIN
        moves.update({ref: to for ref in present if sides[ref] != to})
    return moves


def coverage(items: Iterable[CheckItem], *, region: str | None = None) -> dict[str, Any]:
    """Each label's entries and boxes per side, labels missing from test, labels below the minimums, and
    the image counts against the region's dataset limits."""
    entries: dict[str, Counter[str]] = {TRAIN: Counter(), TEST: Counter()}
    boxes: dict[str, Counter[str]] = {TRAIN: Counter(), TEST: Counter()}
    images = Counter[str]()
    for item in items:
        images[item.dataset] += 1
        entries[item.dataset].update(item.labels)
        boxes[item.dataset].update(item.boxes)
    names = sorted(set(entries[TRAIN]) | set(entries[TEST]) | set(boxes[TRAIN]) | set(boxes[TEST]))
    labels = {
        name: {side: {"entries": entries[side][name], "boxes": boxes[side][name]} for side in (TRAIN, TEST)}
        for name in names
    }
    below = []
    for name in names:
        train, test = entries[TRAIN][name], entries[TEST][name]
        if train < MIN_TRAIN_IMAGES_PER_LABEL:
            below.append(
                {"label": name, "rule": "train", "images": train, "minimum": MIN_TRAIN_IMAGES_PER_LABEL}
            )
        if not images[TEST] and train < MIN_IMAGES_TO_SPLIT:
            below.append({"label": name, "rule": "split", "images": train, "minimum": MIN_IMAGES_TO_SPLIT})
        if test > MAX_TEST_IMAGES_PER_LABEL:
            below.append(
                {"label": name, "rule": "test_max", "images": test, "maximum": MAX_TEST_IMAGES_PER_LABEL}
            )
    limits = dataset_limits(region)
    return {
        "labels": labels,
        "missing_from_test": [n for n in names if entries[TRAIN][n] and not entries[TEST][n]]
        if images[TEST]
        else [],
        "below_minimum": below,
        "images": {side: images[side] for side in (TRAIN, TEST)},
        "limits": {"region": region, **limits},
        "over_limit": [side for side in (TRAIN, TEST) if images[side] > limits[side]],
    }


def check_report(
    items: Sequence[CheckItem], groups: Sequence[DuplicateGroup], *, region: str | None = None
) -> dict[str, Any]:
    """The check of a project's datasets (see the module docstring); images named by source-ref."""
    by_ref = {item.source_ref: item for item in items}
    crossing, within, disagreements, leaking = [], [], [], []
    for number, group in enumerate(groups, start=1):
        members = [by_ref[ref] for ref in group.members if ref in by_ref]
        if len(members) < 2:
            continue
        per_side = {side: [m.source_ref for m in members if m.dataset == side] for side in (TRAIN, TEST)}
        head = {"group": number, "kind": group.kind}
        if per_side[TRAIN] and per_side[TEST]:
            crossing.append({**head, **per_side})
            leaking.append(group.members)
        else:
            within.append({**head, "dataset": members[0].dataset, "images": [m.source_ref for m in members]})
        if len({m.labels for m in members}) > 1:
            disagreements.append(
                {
                    **head,
                    "images": [
                        {"source-ref": m.source_ref, "dataset": m.dataset, "labels": sorted(m.labels)}
                        for m in members
                    ],
                }
            )
    moves = fix_moves(leaking, {ref: item.dataset for ref, item in by_ref.items()})
    return {
        "images": len(items),
        "groups": len(groups),
        "crossing": crossing,
        "within": within,
        "label_disagreements": disagreements,
        "coverage": coverage(items, region=region),
        "fix": {
            "moves": [
                {"source-ref": ref, "from": by_ref[ref].dataset, "to": to}
                for ref, to in sorted(moves.items())
            ]
        },
    }
