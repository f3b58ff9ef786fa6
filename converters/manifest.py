"""Ground Truth manifest lines <-> :class:`~converters.model.Entry`.

Reading discovers label attributes generically (every key ``X`` with a sibling ``X-metadata``) and
dispatches on ``X-metadata.type``:

* ``groundtruth/image-classification``: one image-level label per attribute;
* ``groundtruth/object-detection``: a :class:`~converters.model.BoxGroup`;
* ``groundtruth/image-classification-multilabel`` (the SageMaker job form): converted to one image-level
  label per class, named ``<attr><index>`` and typed ``groundtruth/image-classification`` (spec §9.10);
* anything else: ``ERROR_UNSUPPORTED_USE_CASE_TYPE``; the pair is kept untouched in ``Entry.extra``.

A label attribute without its ``-metadata``, or a ``-metadata`` without its attribute (a misspelt key),
is ``ERROR_NO_LABEL_ATTRIBUTES`` and stops the line, whatever else it holds (see
:func:`looks_like_label_attribute`). Other unknown keys are kept in ``Entry.extra``.

Structural problems are reported as :class:`~converters.errors.Issue` with Rekognition's codes and scopes.
Checks that need the whole box geometry or image facts (off-frame, too small, dimensions) live in
:mod:`converters.validation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from converters import codes
from converters.errors import Issue, Scope, Severity
from converters.model import Box, BoxGroup, Entry, ImageLabel, ImageSize, JsonDict, Provenance

META_SUFFIX = "-metadata"
# Rekognition's own key on dataset entries (``is_labeled``): not a label attribute's metadata (spec §1.2).
SERVICE_METADATA = "cl-metadata"
# Every Ground Truth label attribute metadata's ``type`` starts so (spec §1.2-§1.5).
GROUND_TRUTH_TYPE_PREFIX = "groundtruth/"
_CLASSIFICATION_META_KEYS = frozenset(
    ("confidence", "job-name", "class-name", "human-annotated", "creation-date", "type")
)
_DETECTION_META_KEYS = frozenset(
    ("objects", "class-map", "type", "human-annotated", "creation-date", "job-name")
)
_BOX_KEYS = ("class_id", "top", "left", "width", "height")
# Errors that stop validating a line (spec §2.5, precedence) and exclude it.
LINE_STOPPING = frozenset(
    {
        codes.ERROR_MISSING_SOURCE_REF,
        codes.ERROR_INVALID_SOURCE_REF_FORMAT,
        codes.ERROR_NO_LABEL_ATTRIBUTES,
        codes.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT,
        codes.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT,
        codes.ERROR_MISSING_BOUNDING_BOX_CONFIDENCE,
        codes.ERROR_MISSING_CLASS_MAP_ID,
        codes.ERROR_INVALID_JSON_LINE,
        codes.ERROR_INVALID_LABEL_NAME_LENGTH,
    }
)


@dataclass(slots=True)
class ParsedLine:
    """A manifest line read into an entry, with what was found wrong on the way.

    ``entry`` is ``None`` when a line-stopping error made the line unusable.
    """

    entry: Entry | None
    issues: list[Issue] = field(default_factory=list)
    normalized: bool = False

    @property
    def invalid(self) -> bool:
        """True when the line is excluded from the dataset."""
        return self.entry is None


def _issue(
    code: str,
    scope: Scope,
    *,
    attribute: str | None = None,
    field_name: str | None = None,
    args: tuple[object, ...] = (),
    severity: Severity = Severity.ERROR,
    annotation: int | None = None,
) -> Issue:
    return Issue(
        code=code,
        message=codes.message(code, *args),
        severity=severity,
        scope=scope,
        attribute=attribute,
        annotation=annotation,
        field=field_name,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_int_like(value: Any) -> bool:
    """An integer, or a numeric string as Ground Truth writes attribute values (spec §9.1)."""
    if _is_int(value):
        return True
    if isinstance(value, str):
        text = value.strip()
        return text.lstrip("-").isdigit()
    return False


def looks_like_label_attribute(value: Any) -> bool:
    """True for a value of a key without its ``-metadata`` sibling that is shaped as a label attribute
    or as a label attribute's metadata: then the key is an orphan, ``ERROR_NO_LABEL_ATTRIBUTES``.

    The shapes (spec §1.3-§1.5): an integer or a numeric string (image-level), a list of them (the
    SageMaker multi-label form), an object with ``image_size`` or ``annotations`` (boxes), or an object
    with a ``groundtruth/...`` ``type`` (metadata under a misspelt key). Any other unknown key (a string,
    a float, a boolean, another object) is not a label attribute and is kept as it is (spec §1.2).
    """
    if _is_int_like(value):
        return True
    if type(value) is list:
        return bool(value) and all(_is_int_like(item) for item in value)
    if type(value) is dict:
        kind = value.get("type")
        return (
            "image_size" in value
            or "annotations" in value
            or (isinstance(kind, str) and kind.startswith(GROUND_TRUTH_TYPE_PREFIX))
        )
    return False


def valid_source_ref(value: Any) -> bool:
    """True for ``s3://bucket/key`` with a lower-case scheme, a bucket and a key (spec §9.12)."""
    if not isinstance(value, str) or not value.startswith("s3://"):
        return False
    bucket, _, key = value[5:].partition("/")
    return bool(bucket) and bool(key)


def _provenance(meta: JsonDict, known: frozenset[str]) -> Provenance:
    return Provenance(
        meta.get("human-annotated") == "yes",
        meta.get("creation-date"),
        meta.get("job-name"),
        {} if meta.keys() <= known else {k: v for k, v in meta.items() if k not in known},
    )


def _common_meta_ok(meta: JsonDict) -> bool:
    return (
        meta.get("human-annotated") in ("yes", "no")
        and isinstance(meta.get("creation-date"), str)
        and isinstance(meta.get("job-name", ""), str)
    )


def parse_line(obj: Any, *, max_label_name: int = codes.DEFAULT_LIMITS.max_label_name) -> ParsedLine:
    """Read one decoded manifest line into an :class:`Entry`, reporting Rekognition's structural codes."""
    if not isinstance(obj, dict):
        return ParsedLine(None, [_issue(codes.ERROR_INVALID_JSON_LINE, Scope.LINE)])
    if "source-ref" not in obj:
        return ParsedLine(None, [_issue(codes.ERROR_MISSING_SOURCE_REF, Scope.LINE, field_name="source-ref")])
    source_ref = obj["source-ref"]
    if not valid_source_ref(source_ref):
        return ParsedLine(
            None, [_issue(codes.ERROR_INVALID_SOURCE_REF_FORMAT, Scope.LINE, field_name="source-ref")]
        )

    entry = Entry(source_ref=source_ref)
    issues: list[Issue] = []
    pairs: list[str] = []
    orphans: list[str] = []
    extra = entry.extra
    for key, value in obj.items():
        if key == "source-ref":
            continue
        if key.endswith(META_SUFFIX):
            if key[: -len(META_SUFFIX)] not in obj:
                # Rekognition's own cl-metadata is no orphan, unless it is a label attribute's metadata.
                if key != SERVICE_METADATA or looks_like_label_attribute(value):
                    orphans.append(key)
                extra[key] = value
        elif key + META_SUFFIX in obj:
            pairs.append(key)
        else:
            if looks_like_label_attribute(value):
                orphans.append(key)
            extra[key] = value
    if orphans:
        # One orphan stops the whole line, even beside proper pairs: Rekognition's precedence rule
        # (spec §2.5) stops a line's validation at ERROR_NO_LABEL_ATTRIBUTES, and taking the line
        # with its other attributes would drop the orphan's labels without a word.
        return ParsedLine(None, [_issue(codes.ERROR_NO_LABEL_ATTRIBUTES, Scope.LINE, field_name=orphans[0])])
    if not pairs:
        return ParsedLine(entry, [])

    usable = 0
    normalized = False
    for attr in pairs:
        meta = obj[attr + META_SUFFIX]
        value = obj[attr]
        kind = meta.get("type") if isinstance(meta, dict) else None
        before = len(issues)
        if not isinstance(meta, dict):
            issues.append(
                _issue(
                    codes.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT,
                    Scope.METADATA,
                    attribute=attr,
                    field_name=attr + META_SUFFIX,
                )
            )
        elif kind == codes.TYPE_CLASSIFICATION:
            _read_classification(entry, attr, value, meta, issues, max_label_name)
        elif kind == codes.TYPE_DETECTION:
            _read_detection(entry, attr, value, meta, issues, max_label_name)
        elif kind == codes.TYPE_MULTILABEL:
            _read_multilabel(entry, attr, value, meta, issues, max_label_name)
            normalized = True
        else:
            issues.append(
                _issue(
                    codes.ERROR_UNSUPPORTED_USE_CASE_TYPE,
                    Scope.METADATA,
                    attribute=attr,
                    field_name=attr + "-metadata.type",
                    args=(attr + META_SUFFIX,),
                )
            )
            entry.extra[attr] = value
            entry.extra[attr + META_SUFFIX] = meta
            continue
        if len(issues) == before:
            usable += 1

    if any(i.code in LINE_STOPPING for i in issues):
        return ParsedLine(None, issues)
    if usable == 0:
        issues.append(_issue(codes.ERROR_NO_VALID_LABEL_ATTRIBUTES, Scope.LINE))
        return ParsedLine(None, issues)
    return ParsedLine(entry, issues, normalized)


def _name_issue(attr: str, name: str, max_label_name: int, issues: list[Issue]) -> bool:
    if len(name) > max_label_name:
        issues.append(
            _issue(
                codes.ERROR_INVALID_LABEL_NAME_LENGTH,
                Scope.METADATA,
                attribute=attr,
                field_name=attr + "-metadata.class-name",
            )
        )
        return True
    return False


def _meta_format(attr: str, issues: list[Issue], what: str) -> None:
    issues.append(
        _issue(
            codes.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT,
            Scope.METADATA,
            attribute=attr,
            field_name=f"{attr}-metadata.{what}",
        )
    )


def _attr_format(attr: str, issues: list[Issue], what: str) -> None:
    issues.append(
        _issue(
            codes.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT,
            Scope.ATTRIBUTE,
            attribute=attr,
            field_name=f"{attr}{what}",
            args=(attr,),
        )
    )


def _read_classification(
    entry: Entry, attr: str, value: Any, meta: JsonDict, issues: list[Issue], max_label_name: int
) -> None:
    if not _is_int_like(value):
        _attr_format(attr, issues, "")
        return
    name = meta.get("class-name")
    confidence = meta.get("confidence")
    if not isinstance(name, str) or not name:
        _meta_format(attr, issues, "class-name")
        return
    if not isinstance(confidence, int | float) or isinstance(confidence, bool) or not 0 <= confidence <= 1:
        _meta_format(attr, issues, "confidence")
        return
    if not _common_meta_ok(meta):
        _meta_format(attr, issues, "human-annotated/creation-date/job-name")
        return
    if _name_issue(attr, name, max_label_name, issues):
        return
    entry.labels.append(
        ImageLabel(
            name=name,
            confidence=confidence,
            attribute=attr,
            value=value,
            provenance=_provenance(meta, _CLASSIFICATION_META_KEYS),
        )
    )


def _read_multilabel(
    entry: Entry, attr: str, value: Any, meta: JsonDict, issues: list[Issue], max_label_name: int
) -> None:
    class_map = meta.get("class-map")
    confidence_map = meta.get("confidence-map", {})
    if not isinstance(value, list) or not all(_is_int_like(v) for v in value):
        _attr_format(attr, issues, "")
        return
    if not isinstance(class_map, dict) or not isinstance(confidence_map, dict) or not _common_meta_ok(meta):
        _meta_format(attr, issues, "class-map")
        return
    known = _CLASSIFICATION_META_KEYS | {"class-map", "confidence-map"}
    for index, class_id in enumerate(value):
        name = class_map.get(str(class_id))
        if not isinstance(name, str) or not name:
            issues.append(
                _issue(
                    codes.ERROR_MISSING_CLASS_MAP_ID,
                    Scope.METADATA,
                    attribute=attr,
                    field_name=f"{attr}-metadata.class-map",
                )
            )
            return
        if _name_issue(attr, name, max_label_name, issues):
            return
        confidence = confidence_map.get(str(class_id), 1.0)
        entry.labels.append(
            ImageLabel(
                name=name,
                confidence=confidence if _is_number(confidence) else 1.0,
                attribute=f"{attr}{index}",
                value=index,
                provenance=_provenance(meta, known),
            )
        )


_NUMBER_TYPES = (int, float)
_BOX_EXTRA_FREE = frozenset(_BOX_KEYS)


def _read_detection(
    entry: Entry, attr: str, value: Any, meta: JsonDict, issues: list[Issue], max_label_name: int
) -> None:
    # One pass over the boxes, checking and building together: this is the hot path of every reader.
    if type(value) is not dict:
        _attr_format(attr, issues, "")
        return
    sizes = value.get("image_size")
    size = sizes[0] if type(sizes) is list and len(sizes) == 1 else None
    if (
        type(size) is not dict
        or type(size.get("width")) is not int
        or type(size.get("height")) is not int
        or type(size.get("depth")) is not int
    ):
        _attr_format(attr, issues, ".image_size")
        return
    annotations = value.get("annotations")
    if type(annotations) is not list:
        _attr_format(attr, issues, ".annotations")
        return
    objects = meta.get("objects")
    class_map = meta.get("class-map")
    boxes: list[Box] = []
    confidence_missing = type(objects) is not list or len(objects) < len(annotations)
    class_id_missing = False
    for i, ann in enumerate(annotations):
        if type(ann) is not dict:
            _attr_format(attr, issues, f".annotations[{i}]")
            return
        class_id, top, left = ann.get("class_id"), ann.get("top"), ann.get("left")
        width, height = ann.get("width"), ann.get("height")
        if (
            type(class_id) is not int
            or type(top) not in _NUMBER_TYPES
            or type(left) not in _NUMBER_TYPES
            or type(width) not in _NUMBER_TYPES
            or type(height) not in _NUMBER_TYPES
        ):
            _attr_format(attr, issues, f".annotations[{i}]")
            return
        confidence = None
        if not confidence_missing:
            obj = objects[i]  # type: ignore[index]
            confidence = obj.get("confidence") if type(obj) is dict else None
            confidence_missing = type(confidence) not in _NUMBER_TYPES
        name = class_map.get(str(class_id)) if type(class_map) is dict else None
        class_id_missing = class_id_missing or name is None
        extra = {k: v for k, v in ann.items() if k not in _BOX_EXTRA_FREE} if len(ann) > 5 else {}
        boxes.append(Box(name or "", left, top, width, height, confidence or 0, class_id, None, extra))  # type: ignore[arg-type]
    if type(objects) is not list or type(class_map) is not dict or not _common_meta_ok(meta):
        _meta_format(attr, issues, "objects/class-map")
        return
    for key, name in class_map.items():
        if type(key) is not str or type(name) is not str:
            _meta_format(attr, issues, "class-map")
            return
    if confidence_missing:
        issues.append(
            _issue(
                codes.ERROR_MISSING_BOUNDING_BOX_CONFIDENCE,
                Scope.METADATA,
                attribute=attr,
                field_name=f"{attr}-metadata.objects",
            )
        )
        return
    if class_id_missing:
        issues.append(
            _issue(
                codes.ERROR_MISSING_CLASS_MAP_ID,
                Scope.METADATA,
                attribute=attr,
                field_name=f"{attr}-metadata.class-map",
            )
        )
        return
    for name in class_map.values():
        if _name_issue(attr, name, max_label_name, issues):
            return
    entry.box_groups.append(
        BoxGroup(
            attribute=attr,
            image_size=ImageSize(size["width"], size["height"], size["depth"]),
            boxes=boxes,
            class_map=dict(class_map),
            provenance=_provenance(meta, _DETECTION_META_KEYS),
            extra={k: v for k, v in value.items() if k not in ("image_size", "annotations")}
            if len(value) > 2
            else {},
        )
    )


# ---------------------------------------------------------------------------------------------- writing


def _label_metadata(label: ImageLabel) -> JsonDict:
    prov = label.provenance
    meta: JsonDict = {"confidence": label.confidence}
    if prov.job_name is not None:
        meta["job-name"] = prov.job_name
    meta["class-name"] = label.name
    meta["human-annotated"] = "yes" if prov.human_annotated else "no"
    if prov.creation_date is not None:
        meta["creation-date"] = prov.creation_date
    meta["type"] = codes.TYPE_CLASSIFICATION
    meta.update(prov.extra)
    return meta


def class_ids_for(group: BoxGroup) -> tuple[list[int], dict[str, str]]:
    """The ``class_id`` of each box and the class-map a group is written with.

    An unchanged group is written as read. For a changed one, ids a box already has are kept, a label the
    map lacks gets the next free integer, and entries no box uses are dropped (spec §6.4).
    """
    if not group.changed and all(b.class_id is not None for b in group.boxes):
        return [b.class_id for b in group.boxes if b.class_id is not None], dict(group.class_map)
    by_name: dict[str, str] = {}
    for key, name in group.class_map.items():
        by_name.setdefault(name, key)
    numeric = [int(c) for c in group.class_map if c.isdigit()]
    next_id = max(numeric, default=-1) + 1
    ids: list[int] = []
    used: dict[int, str] = {}
    for box in group.boxes:
        cid: int
        if box.class_id is not None and group.class_map.get(str(box.class_id)) == box.label:
            cid = box.class_id
        elif box.label in by_name and by_name[box.label].isdigit():
            cid = int(by_name[box.label])
        else:
            cid = next_id
            next_id += 1
            by_name[box.label] = str(cid)
        ids.append(cid)
        used[cid] = box.label
    return ids, {str(k): used[k] for k in sorted(used)}


def entry_to_line(entry: Entry) -> JsonDict:
    """The manifest line (a dict, ready to serialize) for ``entry``.

    Key order follows Ground Truth's: ``source-ref``, each label attribute followed by its metadata, then
    the keys the entry carried unread.
    """
    line: JsonDict = {"source-ref": entry.source_ref}
    used = set(entry.extra) | {"source-ref"}
    for label in entry.labels:
        attr = label.attribute or _free_attribute("label", used)
        used.add(attr)
        line[attr] = label.value
        line[attr + META_SUFFIX] = _label_metadata(label)
    for group in entry.box_groups:
        attr = group.attribute
        ids, class_map = class_ids_for(group)
        value: JsonDict = {
            "image_size": [
                {
                    "width": group.image_size.width,
                    "height": group.image_size.height,
                    "depth": group.image_size.depth,
                }
            ],
            "annotations": [
                {
                    "class_id": cid,
                    "top": box.top,
                    "left": box.left,
                    "width": box.width,
                    "height": box.height,
                    **box.extra,
                }
                for cid, box in zip(ids, group.boxes, strict=True)
            ],
        }
        value.update(group.extra)
        prov = group.provenance
        meta: JsonDict = {
            "objects": [{"confidence": box.confidence} for box in group.boxes],
            "class-map": class_map,
            "type": codes.TYPE_DETECTION,
            "human-annotated": "yes" if prov.human_annotated else "no",
        }
        if prov.creation_date is not None:
            meta["creation-date"] = prov.creation_date
        if prov.job_name is not None:
            meta["job-name"] = prov.job_name
        meta.update(prov.extra)
        line[attr] = value
        line[attr + META_SUFFIX] = meta
    for key, val in entry.extra.items():
        line.setdefault(key, val)
    return line


def _free_attribute(base: str, used: set[str]) -> str:
    if base not in used and base + META_SUFFIX not in used:
        return base
    n = 1
    while f"{base}{n}" in used:
        n += 1
    return f"{base}{n}"
