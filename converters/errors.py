"""Typed errors and per-line issues of the converters package.

Two kinds of trouble, kept apart on purpose:

* :class:`ConversionError` (and subclasses) is raised when input cannot be converted at all; it always
  names where: the file, the line (or array item), and the field.
* :class:`Issue` is a per-line finding (a Rekognition error or warning code) collected into a report,
  never raised one by one, because a dataset with one bad line is still a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ConversionError(Exception):
    """Base of every error the converters raise; carries where the problem is."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
        code: str | None = None,
        unit: str = "line",
    ) -> None:
        self.message = message
        self.unit = unit
        self.source = source
        self.line = line
        self.field = field
        self.code = code
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.line is not None:
            where.append(f"{self.unit} {self.line}")
        prefix = ":".join(where)
        parts = [prefix] if prefix else []
        if self.field:
            parts.append(f"field {self.field!r}")
        head = ", ".join(parts)
        code = f" [{self.code}]" if self.code else ""
        return f"{head}: {self.message}{code}" if head else f"{self.message}{code}"


class InputFormatError(ConversionError):
    """The input is not the format it claims to be (broken JSON, a pretty-printed manifest, ...)."""


class TaskError(ConversionError):
    """A Label Studio task cannot be turned into a manifest line (no image, unknown result type, ...)."""


class LabelConfigError(ConversionError):
    """A Label Studio labeling config that cannot be parsed or lacks the controls we need."""


class ImageMetaError(ConversionError):
    """A line of an ``--image-meta`` file that is not ``{"source-ref", "width", "height", "orientation"}``."""


class SplitError(ConversionError):
    """The train/test split cannot be made (bad fraction, an entry in both kept sets, ...)."""


class Severity(StrEnum):
    """How bad an :class:`Issue` is: an error excludes what it sits on, a warning does not."""

    ERROR = "error"
    WARNING = "warning"


class Scope(StrEnum):
    """Where Rekognition places an issue in a validation manifest."""

    LINE = "line"
    ATTRIBUTE = "attribute"
    METADATA = "metadata"
    ANNOTATION = "annotation"


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding on one manifest line: a Rekognition code, its message and where it sits.

    ``attribute`` names the label attribute (without ``-metadata``) for attribute, metadata and annotation
    scopes; ``annotation`` is the index into that attribute's ``annotations`` for annotation scope.
    """

    code: str
    message: str
    severity: Severity = Severity.ERROR
    scope: Scope = Scope.LINE
    attribute: str | None = None
    annotation: int | None = None
    field: str | None = None

    def as_json(self) -> dict[str, str]:
        """The ``{"code", "message"}`` object Rekognition writes."""
        return {"code": self.code, "message": self.message}


@dataclass(slots=True)
class Report:
    """Issues collected while converting a stream, with the line each belongs to."""

    source: str = "<input>"
    items: list[tuple[int, Issue]] = field(default_factory=list)
    unit: str = "line"

    def add(self, line: int, issue: Issue) -> None:
        """Record ``issue`` against 1-based ``line``."""
        self.items.append((line, issue))

    @property
    def errors(self) -> list[tuple[int, Issue]]:
        """The error-severity items."""
        return [(n, i) for n, i in self.items if i.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[tuple[int, Issue]]:
        """The warning-severity items."""
        return [(n, i) for n, i in self.items if i.severity is Severity.WARNING]

    def format(self, limit: int = 20) -> str:
        """Readable lines ``file:line: field: message [CODE]``, at most ``limit`` of them."""
        out = []
        for n, issue in self.items[:limit]:
            where = f"{self.source}:{self.unit} {n}"
            fld = f", field {issue.field!r}" if issue.field else ""
            out.append(f"{where}{fld}: {issue.severity.value}: {issue.message} [{issue.code}]")
        if len(self.items) > limit:
            out.append(f"... and {len(self.items) - limit} more")
        return "\n".join(out)
