"""COCO object detection files -> entries (Rekognition's own transform, spec §5.1).

Field map: ``source-ref`` = S3 prefix + ``image.file_name`` (or ``coco_url`` when it is ``s3://``);
``image_size`` = ``image.width/height``, depth 3; each box ``left, top, width, height`` = ``bbox[0..3]``
in pixels (floats pass through, as AWS's script does); ``class_id`` = ``category_id``; the class-map holds
only the categories used on that image; confidence 1; ``human-annotated: yes``; ``creation-date`` from
``image.date_captured`` (``%Y-%m-%d %H:%M:%S`` -> ``%Y-%m-%dT%H:%M:%S``). The attribute is
``bounding-box``. Every COCO image gives one entry, even with no annotations. A ``file_name`` seen twice
keeps its first image and is reported, since one image may appear once in a dataset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from converters import codes
from converters.errors import InputFormatError, Issue, Severity
from converters.manifest import valid_source_ref
from converters.model import Box, BoxGroup, Entry, ImageSize, Provenance

ATTRIBUTE = "bounding-box"


def _list(coco: dict[str, Any], key: str, source: str) -> list[dict[str, Any]]:
    value = coco.get(key)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InputFormatError("must be a list of objects", source=source, field=key)
    return value


def _date(value: Any, fallback: str) -> str:
    if isinstance(value, str):
        try:
            return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").strftime("%Y-%m-%dT%H:%M:%S")
        except ValueError:
            return fallback
    return fallback


def coco_to_entries(
    coco: Any,
    *,
    s3_prefix: str,
    job_name: str | None = None,
    now: str,
    source: str = "<coco>",
    issues: list[tuple[int, Issue]] | None = None,
) -> Iterator[Entry]:
    """One :class:`Entry` per COCO image, in file order; raise :class:`InputFormatError` naming the field.

    ``issues`` receives ``(image number, issue)`` for images dropped as duplicates.
    """
    if not isinstance(coco, dict):
        raise InputFormatError("a COCO file is a JSON object", source=source)
    images = _list(coco, "images", source)
    annotations = _list(coco, "annotations", source)
    categories = _list(coco, "categories", source)
    names: dict[Any, str] = {}
    for i, cat in enumerate(categories):
        if "id" not in cat or not isinstance(cat.get("name"), str):
            raise InputFormatError("needs an id and a name", source=source, field=f"categories[{i}]")
        names[cat["id"]] = cat["name"]
    image_ids = {img.get("id") for img in images}
    by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        bbox = ann.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
        ):
            raise InputFormatError(
                "must be [x, y, width, height] in pixels", source=source, field=f"{where}.bbox"
            )
        if ann.get("category_id") not in names:
            raise InputFormatError(
                f"category {ann.get('category_id')!r} is not in categories",
                source=source,
                field=f"{where}.category_id",
            )
        if ann.get("image_id") not in image_ids:
            raise InputFormatError(
                f"image {ann.get('image_id')!r} is not in images", source=source, field=f"{where}.image_id"
            )
        by_image[ann["image_id"]].append(ann)

    seen: set[str] = set()
    for n, image in enumerate(images, start=1):
        where = f"images[{n - 1}]"
        coco_url = image.get("coco_url")
        if isinstance(coco_url, str) and coco_url.startswith("s3://"):
            ref = coco_url
        else:
            file_name = image.get("file_name")
            if not isinstance(file_name, str) or not file_name:
                raise InputFormatError("missing", source=source, field=f"{where}.file_name")
            ref = s3_prefix.rstrip("/") + "/" + file_name.lstrip("/")
        if not valid_source_ref(ref):
            raise InputFormatError(f"{ref!r} is not an s3://bucket/key reference", source=source, field=where)
        width, height = image.get("width"), image.get("height")
        if not (isinstance(width, int) and isinstance(height, int)):
            raise InputFormatError("width and height must be integers", source=source, field=where)
        if ref in seen:
            if issues is not None:
                issues.append(
                    (
                        n,
                        Issue(
                            codes.DUPLICATE_SOURCE_REF,
                            f"{ref} appears twice; the first image is kept",
                            Severity.WARNING,
                            field=where,
                        ),
                    )
                )
            continue
        seen.add(ref)
        provenance = Provenance(
            human_annotated=True, creation_date=_date(image.get("date_captured"), now), job_name=job_name
        )
        boxes = [
            Box(
                label=names[ann["category_id"]],
                left=ann["bbox"][0],
                top=ann["bbox"][1],
                width=ann["bbox"][2],
                height=ann["bbox"][3],
                class_id=ann["category_id"] if isinstance(ann["category_id"], int) else None,
            )
            for ann in by_image.get(image.get("id"), [])
        ]
        class_map = {str(b.class_id): b.label for b in boxes if b.class_id is not None}
        group = BoxGroup(
            attribute=ATTRIBUTE,
            image_size=ImageSize(width, height, 3),
            boxes=boxes,
            class_map=dict(sorted(class_map.items(), key=lambda kv: int(kv[0]))),
            provenance=provenance,
        )
        yield Entry(source_ref=ref, box_groups=[group])
