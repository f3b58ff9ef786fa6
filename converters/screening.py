"""Which lines of a manifest an import takes, and whether the import may go ahead (Rekognition's rules).

A line that cannot be an entry (not JSON, over the line limit, no or a bad ``source-ref``, no label
attribute Rekognition reads...) or that repeats an earlier line's ``source-ref`` is rejected with its
codes and does not stop the others. A line that is an entry but breaks a rule of its content (a box off
the frame...) is taken as it is and counts as invalid, as Rekognition keeps such lines and shows their
errors. An import of an empty manifest, or of one where more than 20% of the lines
(``Limits.invalid_row_fraction``) are rejected or invalid, fails as a whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from converters import codes
from converters.errors import Severity
from converters.jsonio import RawLine, loads
from converters.manifest import parse_line
from converters.model import Entry
from converters.validation import line_issues


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """A manifest line an import did not take: its 1-based number and error codes (the first leads)."""

    number: int
    codes: tuple[str, ...]
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        """The line as an import's result lists it."""
        item: dict[str, Any] = {
            "line": self.number,
            "code": self.codes[0],
            "codes": list(self.codes),
            "message": codes.message(self.codes[0]),
        }
        if self.detail:
            item["detail"] = self.detail
        return item


@dataclass(slots=True)
class Screened:
    """The outcome of :func:`screen_lines`: the entries to import and the lines rejected."""

    entries: list[Entry] = field(default_factory=list)
    rejected: list[RejectedLine] = field(default_factory=list)
    total: int = 0  # lines read
    invalid_kept: int = 0  # entries taken although a rule of their content fails

    @property
    def invalid(self) -> int:
        """Lines that count against the import: rejected, or taken with errors."""
        return self.rejected_count + self.invalid_kept

    @property
    def rejected_count(self) -> int:
        """How many lines were rejected."""
        return len(self.rejected)

    def refusal(self, limits: codes.Limits = codes.DEFAULT_LIMITS) -> str | None:
        """The code the whole import fails with (``ERROR_EMPTY_MANIFEST``,
        ``ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST``), or None when it may go ahead."""
        if self.total == 0:
            return codes.ERROR_EMPTY_MANIFEST
        if self.invalid / self.total > limits.invalid_row_fraction:
            return codes.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST
        return None


def screen_lines(
    lines: Iterable[RawLine],
    *,
    on_line: Callable[[int], None] | None = None,
    max_line_chars: int | None = None,
) -> Screened:
    """Sort manifest lines into the entries an import takes and the lines it rejects.

    ``on_line(count)`` is called after each line read (a progress display); ``max_line_chars`` names the
    limit the reader applied, for the message of a line it cut (default: Rekognition's 100,000).
    """
    limit = max_line_chars or codes.DEFAULT_LIMITS.max_line_chars
    out = Screened()
    seen: set[str] = set()
    for raw in lines:
        out.total += 1
        if on_line is not None:
            on_line(out.total)
        if raw.too_long or not raw.data.strip():
            why = f"longer than {limit:,} characters" if raw.too_long else "an empty line"
            out.rejected.append(RejectedLine(raw.number, (codes.ERROR_INVALID_JSON_LINE,), why))
            continue
        try:
            obj = loads(raw.data)
        except ValueError:
            out.rejected.append(RejectedLine(raw.number, (codes.ERROR_INVALID_JSON_LINE,)))
            continue
        parsed = parse_line(obj)
        entry = parsed.entry
        if entry is None:
            found = tuple(i.code for i in parsed.issues if i.severity is Severity.ERROR)
            out.rejected.append(RejectedLine(raw.number, found or (codes.ERROR_INVALID_JSON_LINE,)))
            continue
        if entry.source_ref in seen:
            out.rejected.append(RejectedLine(raw.number, (codes.DUPLICATE_SOURCE_REF,), entry.source_ref))
            continue
        seen.add(entry.source_ref)
        if entry.box_groups and line_issues(obj)[0] is None:
            out.invalid_kept += 1
        out.entries.append(entry)
    return out
