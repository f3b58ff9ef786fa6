"""Near-duplicate detection: recall and precision on injected copies, hashing speed, a leak-free split.

Generates 640x480 JPEGs of varied synthetic content (gradients, shapes, noise, text), injects copies of
some of them (resized, re-encoded at lower quality, cropped by 5%, brightness +10% and -10%, and a
horizontal flip), hashes all of them in a process pool and groups them (:mod:`converters.duplicates`).

* recall: of the injected (original, copy) pairs, excluding flips, the share found in one group;
* precision: of the pairs found in one group (flip links excluded), the share that are injected ones;
* flip recall, apart: the share of flipped copies grouped with their original by a flip link;
* speed: images hashed per second with one worker process per core (2), from the workers' CPU time
  (the wall-clock rate, which other processes on the machine lower, is printed too);
* split: after a group-aware split, the number of groups with members on both sides (target 0).

Run: ``python bench/bench_dedup.py [--originals 400] [--workers 2]``; prints figures and PASS/FAIL.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from itertools import combinations

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from converters.duplicates import FLIP, DuplicateGroup, Fingerprint, find_duplicates
from converters.split import SplitItem, split
from sync_service.domain.fingerprints import DUPLICATE_DISTANCE, fingerprint_of

SIZE = (640, 480)
TARGET_RECALL = 0.95
TARGET_PRECISION = 0.95
TARGET_RATE = 200.0  # images/s on 2 cores


def synthetic_image(seed: int) -> Image.Image:
    """A 640x480 picture of its own: a random gradient, shapes, noise and text."""
    rng = random.Random(seed)
    w, h = SIZE
    c0 = [rng.randrange(256) for _ in range(3)]
    c1 = [rng.randrange(256) for _ in range(3)]
    horizontal = rng.random() < 0.5
    span = w if horizontal else h
    strip = Image.new("RGB", (span, 1))
    strip.putdata([tuple(c0[k] + (c1[k] - c0[k]) * i // span for k in range(3)) for i in range(span)])
    image = strip.resize((w, h)) if horizontal else strip.resize((h, w)).rotate(90, expand=True)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(4, 12)):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randrange(30, 300), y0 + rng.randrange(30, 300)
        colour = tuple(rng.randrange(256) for _ in range(3))
        shape = rng.choice(("rectangle", "ellipse", "line", "polygon"))
        if shape == "rectangle":
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif shape == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == "line":
            draw.line((x0, y0, x1, y1), fill=colour, width=rng.randrange(3, 25))
        else:
            draw.polygon(
                [(rng.randrange(w), rng.randrange(h)) for _ in range(rng.randrange(3, 7))], fill=colour
            )
    for _ in range(rng.randrange(1, 4)):
        draw.text(
            (rng.randrange(w - 100), rng.randrange(h - 20)), f"#{seed} {rng.random():.5f}", fill=(0, 0, 0)
        )
    noise = Image.effect_noise(SIZE, rng.randrange(5, 40)).convert("RGB")
    return Image.blend(image, noise, 0.15)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _crop5(image: Image.Image) -> Image.Image:
    w, h = image.size
    dx, dy = int(w * 0.05) // 2, int(h * 0.05) // 2
    return image.crop((dx, dy, w - dx, h - dy)).resize(SIZE)


VARIANTS: dict[str, Callable[[Image.Image], tuple[Image.Image, int]]] = {
    "resized": lambda im: (im.resize((320, 240)), 90),
    "low_quality": lambda im: (im, 30),
    "cropped_5pct": lambda im: (_crop5(im), 90),
    "brighter_10pct": lambda im: (ImageEnhance.Brightness(im).enhance(1.1), 90),
    "darker_10pct": lambda im: (ImageEnhance.Brightness(im).enhance(0.9), 90),
    FLIP: lambda im: (ImageOps.mirror(im), 90),
}


def make_fixture(
    originals: int, *, copies_every: int = 2, seed: int = 0
) -> tuple[dict[str, bytes], dict[str, str]]:
    """``originals`` JPEGs plus copies of every ``copies_every``-th: ``({name: bytes}, {copy: original})``;
    a copy's name ends with its variant (``.../flip.jpg`` for the mirror images)."""
    files: dict[str, bytes] = {}
    origin: dict[str, str] = {}
    for number in range(originals):
        image = synthetic_image(seed * 1_000_003 + number)
        name = f"s3://bench/img{number:05d}/original.jpg"
        files[name] = jpeg(image)
        if number % copies_every:
            continue
        for variant, make in VARIANTS.items():
            copy, quality = make(image)
            copy_name = f"s3://bench/img{number:05d}/{variant}.jpg"
            files[copy_name] = jpeg(copy, quality)
            origin[copy_name] = name
    return files, origin


def _hash_one(item: tuple[str, bytes]) -> tuple[Fingerprint | None, float]:
    started = time.process_time()
    return fingerprint_of(*item), time.process_time() - started


def hash_all(files: dict[str, bytes], workers: int) -> tuple[list[Fingerprint], float, float]:
    """Fingerprints of ``files`` in a pool of ``workers`` processes; images hashed per second of wall
    time, and per second of the workers' CPU time shared by ``workers`` cores (what the pool does on
    cores of its own: the wall figure falls when other processes share the machine)."""
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(_hash_one, files.items(), chunksize=16))
    wall = time.perf_counter() - started
    cpu = sum(seconds for _, seconds in results)
    prints = [fp for fp, _ in results if fp is not None]
    return prints, len(files) / wall, len(files) / (cpu / workers)


def score(groups: list[DuplicateGroup], origin: dict[str, str]) -> dict[str, float]:
    """Recall and precision of the near/exact grouping over the injected pairs (flips apart)."""
    found: set[tuple[str, str]] = set()
    for group in groups:
        # Pairs joined without a flip link: the members of each non-flip component.
        parent = {ref: ref for ref in group.members}

        def find(x: str, parent: dict[str, str] = parent) -> str:
            while parent[x] != x:
                x = parent[x]
            return x

        for pair in group.pairs:
            if pair.kind != FLIP:
                parent[find(pair.a)] = find(pair.b)
        components: dict[str, list[str]] = {}
        for ref in group.members:
            components.setdefault(find(ref), []).append(ref)
        for members in components.values():
            found.update(combinations(sorted(members), 2))
    truth = {tuple(sorted((c, o))) for c, o in origin.items() if not c.endswith(f"/{FLIP}.jpg")}
    # copies of one original are duplicates of each other too
    by_original: dict[str, list[str]] = {}
    for copy, original in origin.items():
        if not copy.endswith(f"/{FLIP}.jpg"):
            by_original.setdefault(original, [original]).append(copy)
    for members in by_original.values():
        truth.update(combinations(sorted(members), 2))
    flips = {tuple(sorted((c, o))) for c, o in origin.items() if c.endswith(f"/{FLIP}.jpg")}
    flip_found = {(p.a, p.b) for g in groups for p in g.pairs if p.kind == FLIP}
    hits = len(found & truth)
    return {
        "recall": hits / len(truth) if truth else 1.0,
        "precision": hits / len(found) if found else 1.0,
        "flip_recall": len(flips & flip_found) / len(flips) if flips else 1.0,
        "pairs_true": len(truth),
        "pairs_found": len(found),
    }


def crossing_after_split(groups: list[DuplicateGroup], refs: list[str]) -> int:
    """Groups with members on both sides after a group-aware split of ``refs`` (each labelled by folder
    parity, so the strata are real)."""
    items = [SplitItem(ref, frozenset({f"label{int(ref.split('img')[1][:5]) % 3}"})) for ref in refs]
    sides = split(items, test_fraction=0.2, seed=7, groups=[g.members for g in groups])
    return sum(1 for g in groups if len({sides[m] for m in g.members}) > 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--distance", type=int, default=DUPLICATE_DISTANCE)
    args = parser.parse_args(argv)
    files, origin = make_fixture(args.originals)
    prints, wall_rate, rate = hash_all(files, args.workers)
    started = time.perf_counter()
    groups = find_duplicates(sorted(prints, key=lambda fp: fp.source_ref), distance=args.distance)
    grouping = time.perf_counter() - started
    figures = score(groups, origin)
    crossing = crossing_after_split(groups, sorted(files))
    checks = [
        ("recall", figures["recall"], f">= {TARGET_RECALL}", figures["recall"] >= TARGET_RECALL),
        (
            "precision",
            figures["precision"],
            f">= {TARGET_PRECISION}",
            figures["precision"] >= TARGET_PRECISION,
        ),
        (
            "hashing images/s (CPU time)",
            rate,
            f">= {TARGET_RATE} ({args.workers} cores)",
            rate >= TARGET_RATE,
        ),
        ("groups crossing after split", crossing, "== 0", crossing == 0),
    ]
    print(
        f"{len(files)} images ({args.originals} originals, {len(origin)} injected copies), distance "
        f"{args.distance}/64 bits; {len(groups)} groups in {grouping * 1000:.0f} ms; pairs true "
        f"{figures['pairs_true']}, found {figures['pairs_found']}; flip recall (apart) {figures['flip_recall']:.3f}; "
        f"hashing {wall_rate:.0f} images/s of wall time ({os.getloadavg()[0]:.1f} load average)"
    )
    for name, value, target, ok in checks:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{name:<30} {shown:>10}  target {target:<24} {'PASS' if ok else 'FAIL'}")
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
