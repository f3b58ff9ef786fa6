"""Image fingerprints (content digest and perceptual hashes), read from S3 once per object and ETag.

An image is read once, bounded by Rekognition's largest image (15 MB; a larger object is no valid entry),
and that one read gives the SHA-256, the perceptual hash of the image and of its mirror image
(:func:`fingerprint_of`), and the stored size and EXIF facts the manifests need (handed to ``on_meta``,
so the image-facts cache need not read the header again). Fingerprints are kept in Redis under
``FINGERPRINT_KEY`` with the object's ETag: a replaced object is read again, an unchanged one never is.

The perceptual hash is ``imagehash.phash`` (a 64-bit DCT hash) of the image decoded at a reduced size
(a JPEG's DCT scaling: 1/8 of 640x480 is 80x60) and brought to 32x32 grey; the mirrored hash is the
same of those 32x32 pixels mirrored, so both cost one decode.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import imagehash
from PIL import Image, ImageStat
from redis import Redis

from converters.codes import DEFAULT_LIMITS
from converters.duplicates import DEFAULT_DISTANCE, DuplicateGroup, Fingerprint, find_duplicates
from converters.imagemeta import ImageMeta, image_meta_from_header
from converters.jsonio import dumps, loads
from sync_service.edges.s3 import Storage
from sync_service.edges.state import DUPLICATE_GROUP_KEY, FINGERPRINT_KEY

DUPLICATE_DISTANCE = DEFAULT_DISTANCE
"""Hamming threshold in bits (of 64) for near duplicates; the setting ``CUSTOMLABELS_DUPLICATE_DISTANCE``
is to carry it (see :mod:`converters.duplicates` for what it catches)."""
MAX_IMAGE_BYTES = DEFAULT_LIMITS.max_image_bytes
READERS = 8  # S3 reads in flight at once (the decode releases the GIL too)
_SMALL = (32, 32)  # what imagehash.phash reduces an image to before its DCT (hash_size 8 x highfreq 4)
FLAT_STDDEV = 2.0
"""Grey levels (of 255): a reduced image whose standard deviation is below this is flat (a blank frame,
a solid colour) and gets no perceptual hash; only an exact copy groups it (else every blank image
would be one group, whatever its colour)."""

MetaCallback = Callable[[str, ImageMeta], None]


def fingerprint_of(source_ref: str, data: bytes) -> Fingerprint | None:
    """The fingerprint of the image ``data`` (no perceptual hashes when it is flat: ``FLAT_STDDEV``), or
    None when it is not an image Pillow can decode."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (_SMALL[0] * 2, _SMALL[1] * 2))  # a JPEG decodes at 1/2..1/8 size: far faster
            small = image.convert("L").resize(_SMALL, Image.Resampling.LANCZOS)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    if ImageStat.Stat(small).stddev[0] < FLAT_STDDEV:
        return Fingerprint(source_ref, digest, None, None)
    mirrored = small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return Fingerprint(source_ref, digest, _bits(imagehash.phash(small)), _bits(imagehash.phash(mirrored)))


def _bits(value: imagehash.ImageHash) -> int:
    return int(str(value), 16)


class FingerprintCache:
    """Fingerprints of images in S3, computed from one bounded read and kept in Redis per ETag."""

    def __init__(self, redis: Redis, storage: Storage, *, on_meta: MetaCallback | None = None) -> None:
        self.redis = redis
        self.storage = storage
        self.on_meta = on_meta

    def get_many(
        self, source_refs: Iterable[str], *, progress: Callable[[int, int], None] | None = None
    ) -> dict[str, Fingerprint]:
        """Fingerprints of ``source_refs`` (missing objects and non-images left out): cached ones whose
        ETag still matches, the others read and hashed (``READERS`` at a time) and cached."""
        refs = list(dict.fromkeys(source_refs))
        if not refs:
            return {}
        held = dict(zip(refs, self.redis.hmget(FINGERPRINT_KEY, refs), strict=True))
        out: dict[str, Fingerprint] = {}
        with ThreadPoolExecutor(READERS) as pool:
            for number, (ref, fp) in enumerate(pool.map(lambda r: (r, self._one(r, held[r])), refs), start=1):
                if fp is not None:
                    out[ref] = fp
                if progress is not None:
                    progress(number, len(refs))
        return out

    def _one(self, ref: str, raw: bytes | str | None) -> Fingerprint | None:
        if raw is not None:
            etag, digest, phash, flip = loads(raw)
            if self.storage.etag(ref) == etag:
                return Fingerprint(ref, digest, phash, flip)
        tagged = self.storage.read_tagged(ref, MAX_IMAGE_BYTES)
        if tagged is None:
            return None
        data, etag = tagged
        fp = fingerprint_of(ref, data)
        if fp is None:
            return None
        self.redis.hset(FINGERPRINT_KEY, ref, dumps([etag, fp.sha256, fp.phash, fp.flip]))
        if self.on_meta is not None:
            meta = image_meta_from_header(data)
            if meta is not None:
                self.on_meta(ref, meta)
        return fp


def groups_of(prints: Iterable[Fingerprint], *, distance: int = DUPLICATE_DISTANCE) -> list[DuplicateGroup]:
    """Duplicate groups among ``prints`` (sorted by source-ref first, so the result is stable)."""
    return find_duplicates(sorted(prints, key=lambda fp: fp.source_ref), distance=distance)


def record_groups(
    redis: Redis, source_refs: Sequence[str], groups: Sequence[DuplicateGroup], *, distance: int
) -> None:
    """Remember the duplicate groups found among ``source_refs`` (a check or distribute hashed them), so
    that a publish's split finds them without grouping again: each member maps to its group's first
    member, tagged with ``distance``; the others of ``source_refs`` are in no group now."""
    grouped = {ref: f"{distance}:{group.members[0]}" for group in groups for ref in group.members}
    pipe = redis.pipeline(transaction=False)
    alone = [ref for ref in source_refs if ref not in grouped]
    for start in range(0, len(alone), 1000):
        pipe.hdel(DUPLICATE_GROUP_KEY, *alone[start : start + 1000])
    items = list(grouped.items())
    for start in range(0, len(items), 1000):
        pipe.hset(DUPLICATE_GROUP_KEY, mapping=dict(items[start : start + 1000]))
    pipe.execute()


def in_groups(redis: Redis, source_refs: Sequence[str], *, distance: int = DUPLICATE_DISTANCE) -> bool:
    """Whether any of ``source_refs`` is in a duplicate group the last check or distribute recorded at
    ``distance`` (one Redis read)."""
    if not source_refs:
        return False
    tag = f"{distance}:".encode()
    return any(
        raw is not None and (raw if isinstance(raw, bytes) else str(raw).encode()).startswith(tag)
        for raw in redis.hmget(DUPLICATE_GROUP_KEY, list(source_refs))
    )


def known_groups(
    redis: Redis, source_refs: Sequence[str], *, distance: int = DUPLICATE_DISTANCE
) -> list[tuple[str, ...]]:
    """Duplicate groups among ``source_refs`` as the last check or distribute found them at ``distance``
    (:func:`record_groups`); images never hashed are in no group. One Redis read, no grouping, no S3."""
    if not source_refs:
        return []
    tag = f"{distance}:"
    members: dict[str, list[str]] = {}
    for ref, raw in zip(source_refs, redis.hmget(DUPLICATE_GROUP_KEY, list(source_refs)), strict=True):
        if raw is None:
            continue
        value = raw.decode() if isinstance(raw, bytes) else str(raw)
        if value.startswith(tag):
            members.setdefault(value[len(tag) :], []).append(ref)
    return [tuple(group) for group in members.values() if len(group) > 1]
