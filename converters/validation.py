"""Rekognition Custom Labels' validation rules, applied to a manifest stream without fetching images.

:class:`ManifestValidator` reads one dataset's lines and returns, for each, the line Rekognition writes
into ``*_manifest_with_validation.json`` (errors and warnings placed at line, attribute, metadata or
annotation level); :func:`summarize` applies the dataset-wide rules (invalid-row share, one bucket,
label counts, use case, train/test label overlap, auto-split) and builds ``manifest_summary.json``.

Decisions where Rekognition is silent (see shared/spec/rekognition.md §9): the use case is the one with
more valid lines (image-level on a tie); ``error_json_line_indices`` are 1-based and list every line
with an error; attribute and metadata errors are also listed on the line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import add
from typing import Any, NamedTuple

import orjson

from converters import codes
from converters.errors import Issue, Scope, Severity
from converters.imagemeta import ImageMeta
from converters.jsonio import RawLine
from converters.manifest import META_SUFFIX, parse_line
from converters.model import BoxGroup, Entry, bucket_of
from converters.split import SplitItem, labels_short_of, split

# Line-level problems that Rekognition's dataset operations drop silently (spec §2.5 a').
_TERMINAL_CONTENT = frozenset(
    {
        codes.ERROR_INVALID_JSON_LINE,
        codes.ERROR_MISSING_SOURCE_REF,
        codes.ERROR_INVALID_SOURCE_REF_FORMAT,
        codes.DUPLICATE_SOURCE_REF,
    }
)


def _issue(
    code: str,
    scope: Scope = Scope.LINE,
    *,
    attribute: str | None = None,
    annotation: int | None = None,
    severity: Severity = Severity.ERROR,
    message: str | None = None,
) -> Issue:
    return Issue(code, message or codes.message(code), severity, scope, attribute, annotation)


@dataclass(slots=True)
class DatasetResult:
    """What validating one dataset (train or test) found: counts, per-label figures, dataset errors."""

    total: int = 0
    valid: int = 0
    invalid: int = 0
    ignored: int = 0
    terminal: int = 0
    error_lines: list[int] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)
    classification_lines: int = 0
    detection_lines: int = 0
    classification_labels: Counter[str] = field(default_factory=Counter)
    detection_labels: Counter[str] = field(default_factory=Counter)
    boxes_per_label: Counter[str] = field(default_factory=Counter)
    buckets: set[str] = field(default_factory=set)
    items: list[SplitItem] = field(default_factory=list)
    bytes_read: int = 0
    rows_exceeded: bool = False

    @property
    def labels(self) -> set[str]:
        """Every label on a valid line, image-level or box."""
        return set(self.classification_labels) | set(self.detection_labels)

    def statistics(self, use_case: str) -> dict[str, Any]:
        """This dataset's block of ``manifest_summary.json``."""
        return {
            "use_case": use_case,
            "total_json_lines": self.total,
            "valid_json_lines": self.valid,
            "invalid_json_lines": self.invalid,
            "ignored_json_lines": self.ignored,
            "error_json_line_indices": self.error_lines,
            "errors": [e.as_json() for e in self.errors],
        }


class LineCheck(NamedTuple):
    """What checking one line found, in a compact form that crosses process boundaries cheaply.

    ``output`` is the validation-manifest line; ``source_ref`` is set for lines that are not invalid by
    themselves (duplicates are found later, in order, by :class:`ManifestValidator`). ``size`` is the
    line's length in bytes (for the manifest size limit).
    """

    number: int
    output: bytes
    has_error: bool = False
    terminal: bool = False
    source_ref: str | None = None
    labeled: bool = False
    class_labels: tuple[str, ...] = ()
    box_labels: tuple[str, ...] = ()
    size: int = 0


# A LineCheck's fields but its output: what ManifestValidator.account counts.
Row = tuple[int, bool, bool, str | None, bool, tuple[str, ...], tuple[str, ...], int]


def check_line(
    raw: RawLine,
    *,
    limits: codes.Limits = codes.DEFAULT_LIMITS,
    image_meta: Mapping[str, ImageMeta] | None = None,
) -> LineCheck:
    """Apply every per-line rule to one manifest line (pure: no state, no I/O)."""
    if raw.too_long:
        message = (
            f"{codes.message(codes.ERROR_INVALID_JSON_LINE)} The line has {raw.length:,} characters; "
            f"the maximum is {limits.max_line_chars:,}."
        )
        return _invalid_json(raw.number, message, raw.length + 1)
    size = len(raw.data) + 1
    try:
        obj = orjson.loads(raw.data)
    except orjson.JSONDecodeError:
        return _invalid_json(raw.number, codes.message(codes.ERROR_INVALID_JSON_LINE), size)
    if _too_deep(raw.data, obj):
        message = (
            f"{codes.message(codes.ERROR_INVALID_JSON_LINE)} It nests more than {MAX_DEPTH} levels deep."
        )
        return _invalid_json(raw.number, message, size)
    entry, issues = line_issues(obj, limits=limits, image_meta=image_meta)
    has_error = any(i.severity is Severity.ERROR for i in issues)
    output = orjson.dumps(place_issues(obj, issues)) if issues else raw.data
    if entry is None:
        terminal = any(i.code in _TERMINAL_CONTENT for i in issues)
        return LineCheck(raw.number, output, has_error, terminal, size=size)
    return LineCheck(
        raw.number,
        output,
        has_error,
        False,
        entry.source_ref,
        entry.is_labeled,
        tuple({label.name: None for label in entry.labels}),
        tuple(box.label for box in entry.boxes),
        size,
    )


def line_issues(
    obj: Any,
    *,
    limits: codes.Limits = codes.DEFAULT_LIMITS,
    image_meta: Mapping[str, ImageMeta] | None = None,
) -> tuple[Entry | None, list[Issue]]:
    """Every per-line rule on one decoded line: its entry (None when a terminal error removed it) and issues."""
    parsed = parse_line(obj, max_label_name=limits.max_label_name)
    issues = list(parsed.issues)
    entry = parsed.entry
    if entry is not None:
        entry = _check_entry(entry, issues, limits, image_meta or {})
    return entry, issues


def dataset_entry(obj: dict[str, Any], issues: list[Issue], *, labeled: bool) -> dict[str, Any]:
    """A line as ``ListDatasetEntries`` returns it: ``cl-metadata.is_labeled`` and, when there are errors,
    ``cl-errors`` on the line and inside the ``-metadata`` of the attribute they concern."""
    out = dict(obj)
    for issue in issues:
        if issue.severity is not Severity.ERROR:
            continue
        out.setdefault("cl-errors", []).append(issue.as_json())
        if issue.attribute is not None and issue.scope is not Scope.LINE:
            meta = _copied(out, issue.attribute + META_SUFFIX)
            if meta is not None:
                meta.setdefault("cl-errors", []).append(issue.as_json())
    out["cl-metadata"] = {"is_labeled": labeled}
    return out


MAX_DEPTH = 254
"""Deepest nesting of a line's objects and arrays: what orjson writes back (it reads up to 1,024)."""


def _too_deep(data: bytes, obj: Any) -> bool:
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return False  # too few brackets to be that deep: the usual case, no walk
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            values: Iterable[Any] = value.values()
        elif isinstance(value, list):
            values = value
        else:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in values)
    return False


def _invalid_json(number: int, message: str, size: int) -> LineCheck:
    issue = _issue(codes.ERROR_INVALID_JSON_LINE, message=message)
    return LineCheck(number, orjson.dumps({"errors": [issue.as_json()]}), True, True, size=size)


def _dimensions_ok(width: int, height: int, lim: codes.Limits) -> bool:
    return (
        lim.min_image_side <= width <= lim.max_image_side
        and lim.min_image_side <= height <= lim.max_image_side
        and max(width, height) / min(width, height) <= lim.max_aspect_ratio
    )


def _check_entry(
    entry: Entry, issues: list[Issue], limits: codes.Limits, image_meta: Mapping[str, ImageMeta]
) -> Entry | None:
    """Apply the image and box rules; return the entry as Rekognition would use it, or None."""
    meta = image_meta.get(entry.source_ref)
    dimension_code = codes.ERROR_INVALID_IMAGE_DIMENSION if entry.box_groups else codes.ERROR_INVALID_IMAGE
    if meta is not None:
        if (meta.format is not None and meta.format not in limits.image_formats) or (
            meta.bytes is not None and (meta.bytes == 0 or meta.bytes > limits.max_image_bytes)
        ):
            issues.append(_issue(codes.ERROR_INVALID_IMAGE))
            return None
        if not _dimensions_ok(meta.width, meta.height, limits):
            issues.append(_issue(dimension_code))
            return None
    for group in entry.box_groups:
        if not _dimensions_ok(group.image_size.width, group.image_size.height, limits):
            issues.append(_issue(codes.ERROR_INVALID_IMAGE_DIMENSION))
            return None

    kept_groups: list[BoxGroup] = []
    had_boxes = False
    for group in entry.box_groups:
        attr = group.attribute
        if not group.boxes:
            issues.append(
                _issue(
                    codes.WARNING_NO_ATTRIBUTE_ANNOTATIONS,
                    Scope.ATTRIBUTE,
                    attribute=attr,
                    severity=Severity.WARNING,
                )
            )
            continue
        had_boxes = True
        if len(group.boxes) > limits.max_boxes:
            issues.append(_issue(codes.ERROR_TOO_MANY_BOUNDING_BOXES, Scope.ATTRIBUTE, attribute=attr))
            continue
        good = [b for i, b in enumerate(group.boxes) if _box_ok(group, i, issues, limits)]
        if not good:
            issues.append(_issue(codes.ERROR_NO_VALID_ANNOTATIONS, Scope.ATTRIBUTE, attribute=attr))
            continue
        kept_groups.append(BoxGroup(attr, group.image_size, good, group.class_map, group.provenance))

    used = Entry(entry.source_ref, entry.labels, kept_groups, entry.extra, entry.dataset)
    if used.is_labeled:
        return used
    if had_boxes:
        issues.append(_issue(codes.ERROR_NO_VALID_LABEL_ATTRIBUTES))
        return None
    if entry.box_groups:
        issues.append(_issue(codes.WARNING_NO_ANNOTATIONS, severity=Severity.WARNING))
    else:
        issues.append(_issue(codes.WARNING_UNANNOTATED_RECORD, severity=Severity.WARNING))
    return used


def _box_ok(group: BoxGroup, index: int, issues: list[Issue], limits: codes.Limits) -> bool:
    box = group.boxes[index]
    width, height = group.image_size.width, group.image_size.height
    if (
        box.left < 0
        or box.top < 0
        or box.width < 0
        or box.height < 0
        or box.left + box.width > width
        or box.top + box.height > height
    ):
        issues.append(
            _issue(
                codes.ERROR_INVALID_BOUNDING_BOX,
                Scope.ANNOTATION,
                attribute=group.attribute,
                annotation=index,
            )
        )
        return False
    scale = min(1.0, limits.training_downscale_side / max(width, height))
    if box.width * scale <= 1 or box.height * scale <= 1:
        issues.append(
            _issue(
                codes.ERROR_BOUNDING_BOX_TOO_SMALL,
                Scope.ANNOTATION,
                attribute=group.attribute,
                annotation=index,
            )
        )
        return False
    return True


KEPT = "kept"
DUPLICATE = "duplicate"
SKIPPED = "skipped"


def mark_duplicate(output: bytes) -> bytes:
    """A validation-manifest line with ``DUPLICATE_SOURCE_REF`` added to its line errors."""
    obj = orjson.loads(output)
    obj.setdefault("errors", []).append(_issue(codes.DUPLICATE_SOURCE_REF).as_json())
    return orjson.dumps(obj)


class ManifestValidator:
    """Validates the lines of one dataset's manifest in order, in constant memory per line.

    Per-line rules live in :func:`check_line` (pure, so callers may run it in other processes); this
    class applies what needs the order of lines: the row limit, duplicate ``source-ref``, and the counts.
    ``image_meta`` (stored size, format and bytes per ``source-ref``) enables the image rules; without
    it only what the manifest itself says is checked. ``collect_items`` keeps each valid entry's labels
    for an auto-split (no test dataset).
    """

    def __init__(
        self,
        *,
        limits: codes.Limits = codes.DEFAULT_LIMITS,
        image_meta: Mapping[str, ImageMeta] | None = None,
        collect_items: bool = False,
    ) -> None:
        self.limits = limits
        self.image_meta = image_meta or {}
        self.collect_items = collect_items
        self.result = DatasetResult()
        self._seen: set[str] = set()
        self._bucket_prefix = "\x00"

    def feed(self, raw: RawLine) -> bytes | None:
        """Validate one line; return its validation-manifest line, or None past the row limit."""
        return self.add(check_line(raw, limits=self.limits, image_meta=self.image_meta))

    def add(self, check: LineCheck) -> bytes | None:
        """Take the result of :func:`check_line` for the next line, in order; return its output line.

        Returns None for a line past the row limit (Rekognition validates only up to the limit).
        """
        fate = self.account(check.number, *check[2:])
        if fate == SKIPPED:
            return None
        return check.output if fate == KEPT else mark_duplicate(check.output)

    def account(
        self,
        number: int,
        has_error: bool,
        terminal: bool,
        ref: str | None,
        labeled: bool,
        class_labels: tuple[str, ...],
        box_labels: tuple[str, ...],
        size: int,
    ) -> str:
        """Count the next line (the fields of a :class:`LineCheck` but its output).

        Returns :data:`KEPT`, :data:`DUPLICATE` (its output must be marked with
        :func:`mark_duplicate`) or :data:`SKIPPED` (past the row limit: no output).
        """
        res = self.result
        res.bytes_read += size
        if res.total >= self.limits.max_rows:
            res.rows_exceeded = True
            return SKIPPED
        res.total += 1
        fate = KEPT
        if ref is not None and ref in self._seen:
            # A later duplicate is dropped whole (Rekognition keeps one line per image).
            has_error = terminal = True
            ref = None
            fate = DUPLICATE
        if has_error:
            res.error_lines.append(number)
        if ref is None:
            res.invalid += 1
            if terminal:
                res.terminal += 1
            return fate
        self._seen.add(ref)
        if not ref.startswith(self._bucket_prefix):
            bucket = bucket_of(ref)
            res.buckets.add(bucket)
            self._bucket_prefix = f"s3://{bucket}/"
        if not labeled:
            res.ignored += 1
            return fate
        res.valid += 1
        # Plain dict arithmetic: Counter.update costs more than the rest of this method.
        if class_labels:
            res.classification_lines += 1
            counts = res.classification_labels
            for name in class_labels:
                counts[name] = counts.get(name, 0) + 1
        if box_labels:
            res.detection_lines += 1
            per_label = res.boxes_per_label
            for name in box_labels:
                per_label[name] = per_label.get(name, 0) + 1
            counts = res.detection_labels
            for name in set(box_labels) if len(box_labels) > 1 else box_labels:
                counts[name] = counts.get(name, 0) + 1
        if self.collect_items:
            res.items.append(SplitItem(ref, frozenset(class_labels).union(box_labels)))
        return fate

    def account_rows(self, rows: Sequence[Row], base: int = 0) -> list[str] | None:
        """:meth:`account` for each of ``rows`` in order (their numbers counted from ``base``); returns
        the fates, or None when every line is :data:`KEPT`.

        When no line repeats an image (of these lines or earlier ones) and none passes the row limit,
        the counts are taken for all lines at once: the same counts as line by line, in a fraction of
        the time. Otherwise the lines are counted one by one.
        """
        if not rows:
            return None
        res = self.result
        numbers, errors, terminals, refs, labeled, classes, boxes, sizes = zip(*rows, strict=True)
        with_ref = [ref for ref in refs if ref is not None]
        if (
            res.total + len(rows) > self.limits.max_rows
            or len(set(with_ref)) != len(with_ref)
            or not self._seen.isdisjoint(with_ref)
        ):
            fates = [self.account(row[0] + base, *row[1:]) for row in rows]
            return None if all(fate == KEPT for fate in fates) else fates
        res.bytes_read += sum(sizes)
        res.total += len(rows)
        if any(errors):
            res.error_lines.extend(
                [number + base for number, error in zip(numbers, errors, strict=True) if error]
            )
        if len(with_ref) != len(rows):
            res.invalid += len(rows) - len(with_ref)
            res.terminal += sum(
                1 for ref, terminal in zip(refs, terminals, strict=True) if ref is None and terminal
            )
        self._seen.update(with_ref)
        prefix = self._bucket_prefix
        others = [ref for ref in with_ref if not ref.startswith(prefix)]
        if others:
            res.buckets.update({bucket_of(ref) for ref in others})
            self._bucket_prefix = f"s3://{bucket_of(others[-1])}/"
        if len(with_ref) != len(rows) or not all(labeled):
            kept = [i for i, ref in enumerate(refs) if ref is not None and labeled[i]]
            res.ignored += len(with_ref) - len(kept)
            refs = tuple(refs[i] for i in kept)
            classes = tuple(classes[i] for i in kept)
            boxes = tuple(boxes[i] for i in kept)
        res.valid += len(refs)
        res.classification_lines += sum(map(bool, classes))
        res.detection_lines += sum(map(bool, boxes))
        # Counter(...) lists names in the order they come first, as counting line by line inserts them.
        for counts, names in (
            (res.classification_labels, chain.from_iterable(classes)),
            (res.boxes_per_label, chain.from_iterable(boxes)),
            (res.detection_labels, chain.from_iterable(map(set, boxes))),
        ):
            for name, count in Counter(names).items():
                counts[name] = counts.get(name, 0) + count
        if self.collect_items:
            res.items.extend(map(SplitItem, refs, map(frozenset, map(add, classes, boxes))))
        return None

    def finish(self) -> DatasetResult:
        """The dataset-level rules of one set (size, rows, invalid share, buckets); return the result."""
        res = self.result
        limits = self.limits
        if res.total == 0:
            res.errors.append(_issue(codes.ERROR_EMPTY_MANIFEST))
        if res.bytes_read > limits.max_manifest_bytes:
            res.errors.append(_issue(codes.ERROR_MANIFEST_SIZE_TOO_LARGE))
        if res.rows_exceeded:
            res.errors.append(_issue(codes.ERROR_MANIFEST_ROWS_EXCEEDS_MAXIMUM))
        if res.total and res.invalid / res.total > limits.invalid_row_fraction:
            res.errors.append(_issue(codes.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST))
        if res.total and res.terminal / res.total > limits.invalid_row_fraction:
            res.errors.append(_issue(codes.ERROR_TOO_MANY_RECORDS_IN_ERROR))
        if len(res.buckets) > 1:
            res.errors.append(_issue(codes.ERROR_IMAGES_IN_MULTIPLE_S3_BUCKETS))
        return res


def place_issues(obj: Any, issues: list[Issue]) -> dict[str, Any]:
    """A copy of manifest line ``obj`` with each issue written where Rekognition writes it.

    Line-scope issues, and attribute or metadata errors, go to the line's ``errors``/``warnings``;
    attribute issues also into the attribute object, metadata issues into ``<attr>-metadata``, and
    annotation issues into ``<attr>.annotations[i]``.
    """
    out: dict[str, Any] = dict(obj) if isinstance(obj, dict) else {}
    for issue in issues:
        key = "errors" if issue.severity is Severity.ERROR else "warnings"
        if issue.scope is Scope.ANNOTATION and issue.attribute is not None and issue.annotation is not None:
            value = _copied(out, issue.attribute)
            anns = value.get("annotations") if value is not None else None
            if isinstance(anns, list) and value is not None:
                anns = value["annotations"] = list(anns)
                ann = anns[issue.annotation] = dict(anns[issue.annotation])
                ann.setdefault(key, []).append(issue.as_json())
            continue
        if issue.scope is Scope.ATTRIBUTE and issue.attribute is not None:
            value = _copied(out, issue.attribute)
            if value is not None:
                value.setdefault(key, []).append(issue.as_json())
            elif (meta := _copied(out, issue.attribute + META_SUFFIX)) is not None:
                meta.setdefault(key, []).append(issue.as_json())
        elif issue.scope is Scope.METADATA and issue.attribute is not None:
            meta = _copied(out, issue.attribute + META_SUFFIX)
            if meta is not None:
                meta.setdefault(key, []).append(issue.as_json())
        if issue.scope is not Scope.ANNOTATION and not (
            issue.scope is Scope.ATTRIBUTE and issue.severity is Severity.WARNING
        ):
            out.setdefault(key, []).append(issue.as_json())
    return out


def _copied(out: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = out.get(key)
    if not isinstance(value, dict):
        return None
    copy = dict(value)
    out[key] = copy
    return copy


def use_case_of(train: DatasetResult, test: DatasetResult | None = None) -> str:
    """The model type Rekognition would train: the kind with more valid lines (image-level on a tie)."""
    cls, det = train.classification_lines, train.detection_lines
    if cls == det == 0 and test is not None:
        cls, det = test.classification_lines, test.detection_lines
    if cls == det == 0:
        return codes.USE_CASE_NOT_DETERMINED
    return codes.USE_CASE_CLASSIFICATION if cls >= det else codes.USE_CASE_DETECTION


def _usable(result: DatasetResult, use_case: str) -> set[str]:
    if use_case == codes.USE_CASE_CLASSIFICATION:
        return set(result.classification_labels)
    if use_case == codes.USE_CASE_DETECTION:
        return set(result.detection_labels)
    return set()


def _label_rules(labels: set[str], usable: set[str], use_case: str, limits: codes.Limits) -> list[Issue]:
    minimum = (
        limits.min_labels_classification
        if use_case == codes.USE_CASE_CLASSIFICATION
        else limits.min_labels_detection
    )
    if len(labels) > limits.max_labels:
        return [_issue(codes.ERROR_MANIFEST_TOO_MANY_LABELS)]
    if len(labels) < minimum:
        return [_issue(codes.ERROR_MANIFEST_TOO_FEW_LABELS)]
    if len(usable) < minimum:
        return [_issue(codes.ERROR_MANIFEST_TOO_FEW_USABLE_LABELS)]
    return []


def _overlap(train: set[str], test: set[str]) -> float:
    return len(train & test) / len(train) if train else 1.0


@dataclass(slots=True)
class Summary:
    """``manifest_summary.json`` and whether the datasets are usable for training."""

    document: dict[str, Any]
    usable: bool
    autosplit: dict[str, str] | None = None


def summarize(
    train: DatasetResult,
    test: DatasetResult | None,
    *,
    limits: codes.Limits = codes.DEFAULT_LIMITS,
    seed: int = 0,
) -> Summary:
    """Apply the dataset-wide rules to both sets and build ``manifest_summary.json``.

    Without ``test``, the training set is auto-split 80/20 (``train.items`` must have been collected);
    label counts are taken after the split, as Rekognition does.
    """
    use_case = use_case_of(train, test)
    top: list[Issue] = []
    autosplit: dict[str, str] | None = None
    if test is None:
        test = DatasetResult()
        short = labels_short_of(train.items)
        if short:
            train.errors.append(_issue(codes.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_AUTOSPLIT))
        autosplit = split(train.items, test_fraction=0.2, seed=seed)
        # The test entries' label sets, each counted once with how many entries have it.
        tested = Counter(
            frozenset(item.labels) for item in train.items if autosplit[item.source_ref] == "test"
        )
        classes, detections = set(train.classification_labels), set(train.detection_labels)
        for labels, count in tested.items():
            test.total += count
            test.valid += count
            for name in labels & classes:
                test.classification_labels[name] += count
            for name in labels & detections:
                test.detection_labels[name] += count
    for result in (train, test):
        result.errors.extend(_label_rules(result.labels, _usable(result, use_case), use_case, limits))
    if test.total:
        threshold = round(limits.min_label_overlap * 100)
        if _overlap(train.labels, test.labels) < limits.min_label_overlap:
            top.append(
                _issue(
                    codes.ERROR_INSUFFICIENT_LABEL_OVERLAP,
                    message=codes.message(codes.ERROR_INSUFFICIENT_LABEL_OVERLAP, threshold),
                )
            )
        elif _overlap(_usable(train, use_case), _usable(test, use_case)) < limits.min_label_overlap:
            top.append(
                _issue(
                    codes.ERROR_INSUFFICIENT_USABLE_LABEL_OVERLAP,
                    message=codes.message(codes.ERROR_INSUFFICIENT_USABLE_LABEL_OVERLAP, threshold),
                )
            )
    document = {
        "statistics": {"training": train.statistics(use_case), "testing": test.statistics(use_case)},
        "errors": [e.as_json() for e in top],
    }
    usable = not top and not train.errors and not test.errors
    return Summary(document, usable, autosplit)


def file_error_summary(code: str, detail: str | None = None) -> dict[str, Any]:
    """``manifest_summary.json`` for a terminal manifest *file* error (no per-line results exist)."""
    message = codes.message(code) + (f" {detail}" if detail else "")
    return {"statistics": {}, "errors": [{"code": code, "message": message}]}
