"""What the command groups of ``customlabels`` share: messages on standard error, ``--json`` documents,
the optional inputs several commands read (image metadata, a labeling config)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from converters import codes
from converters.errors import Issue, Report, Severity
from converters.imagemeta import ImageMeta, read_image_meta
from converters.labelconfig import LabelConfig, parse_label_config
from plugin.fileio import CliError, open_input

MAX_LINE = codes.DEFAULT_LIMITS.max_line_chars


def now() -> str:
    """The current UTC time as the manifests write it (creation-date)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def say(message: str) -> None:
    """Tell the user ``message`` on standard error (standard output holds the results)."""
    print(message, file=sys.stderr)


def warn_all(report: Report) -> None:
    """Print the issues of ``report``, if any, on standard error."""
    if report.items:
        say(report.format())


def print_json(document: object) -> None:
    """A command's result with ``--json``: one JSON document on standard output."""
    print(json.dumps(document, indent=2), flush=True)


def print_result(args: argparse.Namespace, document: Any, text: str) -> int:
    """Print a command's result: ``document`` as JSON with ``--json``, else ``text``; exit code 0."""
    print(json.dumps(document, indent=2) if args.json else text)
    return 0


def print_error_json(args: argparse.Namespace, message: str) -> None:
    """With ``--json``, an error is a JSON document on standard output too (the message on stderr)."""
    if getattr(args, "json", False):
        print(json.dumps({"status": "error", "error": message}), flush=True)


def issues_json(report: Report, limit: int = 20) -> list[dict[str, object]]:
    """The first ``limit`` issues of ``report``: where (``unit`` ``line`` or ``item``), code, severity."""
    return [
        {
            report.unit: number,
            "code": issue.code,
            "severity": issue.severity.value,
            "field": issue.field,
            "message": issue.message,
        }
        for number, issue in report.items[:limit]
    ]


def load_image_meta(path: str | None) -> dict[str, ImageMeta]:
    """The stored image metadata of ``--image-meta`` (none without the option)."""
    if not path:
        return {}
    with open_input(path) as stream:
        return read_image_meta(stream, source=path)


def load_label_config(path: str | None) -> LabelConfig | None:
    """The labeling config of ``--label-config`` (None without the option)."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_label_config(text, source=path)


def line_error(code: str, message: str) -> Issue:
    """An error on one line of a manifest."""
    return Issue(code, message, Severity.ERROR)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Give a command ``--json``."""
    parser.add_argument(
        "--json", action="store_true", help="print the result as one JSON document on standard output"
    )
