"""The one canonical record: an :class:`Entry` is one image of a dataset with its labels and boxes.

Every format reads into it and writes from it (Label Studio tasks, Ground Truth manifest lines, COCO,
CSV). Geometry is always in **pixels of the stored image** (the bytes in S3, EXIF orientation not
applied), because that is what Rekognition trains on.

Provenance (attribute names, ``job-name``, ``creation-date``, ``human-annotated``, confidences and keys we
do not know) is carried along so that an untouched entry round-trips to the identical manifest line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]


@dataclass(slots=True)
class Provenance:
    """Ground Truth metadata common to a label attribute.

    ``extra`` keeps metadata keys we do not interpret (in their order), so they survive a round trip.
    """

    human_annotated: bool = True
    creation_date: str | None = None
    job_name: str | None = None
    extra: JsonDict = field(default_factory=dict)


@dataclass(slots=True)
class ImageLabel:
    """An image-level label (a ``groundtruth/image-classification`` attribute).

    ``attribute`` is the manifest attribute name (``None`` for a label made in Label Studio, named on
    write); ``value`` is the attribute's value (an integer, or a numeric string as Ground Truth writes).
    ``confidence`` is 0..1.
    """

    name: str
    confidence: float = 1.0
    attribute: str | None = None
    value: int | str = 1
    provenance: Provenance = field(default_factory=Provenance)


@dataclass(slots=True)
class Box:
    """One bounding box in pixels of the stored image; ``left``/``top`` is its top-left corner.

    ``class_id`` is the id it had in its manifest's ``class-map`` (``None`` when new); ``region_id`` is
    the Label Studio region id it had (``None`` when it came from a manifest and has none yet).
    ``extra`` keeps unknown keys of the manifest annotation object.
    """

    label: str
    left: float
    top: float
    width: float
    height: float
    confidence: float = 1.0
    class_id: int | None = None
    region_id: str | None = None
    extra: JsonDict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImageSize:
    """Pixel size of the stored image (EXIF orientation not applied) and its channel count."""

    width: int
    height: int
    depth: int = 3


@dataclass(slots=True)
class BoxGroup:
    """A ``groundtruth/object-detection`` attribute: the boxes of one labeling job on one image.

    ``class_map`` is the attribute's own class-map as read (string ids to names), kept so that ids and
    unused entries survive a round trip; writers add ids for labels it lacks. ``extra`` keeps unknown keys
    of the attribute object. ``changed`` is set when boxes were edited since the group was read: its
    class-map is then rebuilt from the boxes.
    """

    attribute: str
    image_size: ImageSize
    boxes: list[Box] = field(default_factory=list)
    class_map: dict[str, str] = field(default_factory=dict)
    provenance: Provenance = field(default_factory=Provenance)
    extra: JsonDict = field(default_factory=dict)
    changed: bool = False


@dataclass(slots=True)
class Entry:
    """One image: its ``source_ref`` (full ``s3://bucket/key``: the identity), labels and boxes.

    ``extra`` keeps top-level keys we do not interpret, including label attributes of types Rekognition
    does not support, so they pass through untouched. ``dataset`` is ``"train"``, ``"test"`` or ``None``.
    """

    source_ref: str
    labels: list[ImageLabel] = field(default_factory=list)
    box_groups: list[BoxGroup] = field(default_factory=list)
    extra: JsonDict = field(default_factory=dict)
    dataset: str | None = None

    @property
    def label_names(self) -> list[str]:
        """Every distinct label of the entry (image-level and boxes), in first-seen order."""
        seen: dict[str, None] = {}
        for label in self.labels:
            seen.setdefault(label.name, None)
        for group in self.box_groups:
            for box in group.boxes:
                seen.setdefault(box.label, None)
        return list(seen)

    @property
    def is_labeled(self) -> bool:
        """True when the entry has at least one image-level label or box."""
        return bool(self.labels) or any(group.boxes for group in self.box_groups)

    @property
    def boxes(self) -> list[Box]:
        """All boxes of all box groups."""
        return [box for group in self.box_groups for box in group.boxes]


def bucket_of(source_ref: str) -> str:
    """The bucket of an ``s3://bucket/key`` reference ('' when it has none)."""
    rest = source_ref[5:] if source_ref.startswith("s3://") else source_ref
    return rest.split("/", 1)[0]
