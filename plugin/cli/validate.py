"""``customlabels validate``: Rekognition's validation rules over train (and test) manifests.

The lines are checked in worker processes (see :mod:`plugin.cli.fastpath`); the summary and the
manifests with validation results are what Rekognition writes.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from converters import codes
from converters.fastlines import line_check
from converters.imagemeta import ImageMeta
from converters.jsonio import RawLine, dumps, loads
from converters.validation import (
    KEPT,
    SKIPPED,
    ManifestValidator,
    check_line,
    file_error_summary,
    mark_duplicate,
    summarize,
)
from plugin.cli.common import add_json_flag, load_image_meta, print_json, say
from plugin.cli.fastpath import Line, map_manifest_lines, range_lines
from plugin.fileio import CliError, atomic_output, open_input, write_text

_CHECK_LIMITS = codes.DEFAULT_LIMITS
_CHECK_META: dict[str, ImageMeta] = {}


def set_check_state(limits: codes.Limits, meta: dict[str, ImageMeta]) -> None:
    """Set the limits and image facts a worker process checks lines with (the pool's initializer)."""
    global _CHECK_LIMITS, _CHECK_META
    _CHECK_LIMITS, _CHECK_META = limits, meta


@dataclass(slots=True)
class CheckChunk:
    """Checked lines of one piece: their validation lines as one blob, and the counts as plain tuples."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    blob: bytes = b""
    lines: int = 0


def check_lines(lines: Iterable[Line]) -> CheckChunk:
    """Check manifest lines by Rekognition's rules (the shortcut of fastlines when it applies, else the
    general checker); runs in a worker."""
    out = CheckChunk()
    outputs = []
    for number, data, too_long, length in lines:
        check = None
        if not too_long:
            try:
                obj = loads(data)
            except ValueError:
                pass  # check_line reports it
            else:
                check = line_check(number, data, obj, limits=_CHECK_LIMITS, image_meta=_CHECK_META)
        if check is None:
            raw = RawLine(number, data, too_long, length)
            check = check_line(raw, limits=_CHECK_LIMITS, image_meta=_CHECK_META)
        outputs.append(check.output)
        out.rows.append((check.number, *check[2:]))
        out.lines = number
    out.blob = b"\n".join(outputs)
    return out


def check_range(path: str, start: int, end: int) -> CheckChunk:
    """Check the lines of the byte range ``[start, end)`` of ``path``; runs in a worker."""
    return check_lines(range_lines(path, start, end, _CHECK_LIMITS.max_line_chars))


def cmd_validate(args: argparse.Namespace) -> int:
    """Apply Rekognition's rules; write the summary and the manifests with validation results."""
    meta = load_image_meta(args.image_meta)
    limits = codes.DEFAULT_LIMITS
    outdir = args.output_dir
    os.makedirs(outdir, exist_ok=True)
    sets = [("training", args.train)] + ([("testing", args.test)] if args.test else [])
    for _, path in sets:
        code = _file_error(path, limits)
        if code:
            document = file_error_summary(code[0], f"({path}: {code[1]})")
            write_text(os.path.join(outdir, "manifest_summary.json"), dumps(document).decode() + "\n")
            say(f"{path}: {code[1]} [{code[0]}]")
            if args.json:
                print_json(
                    {
                        "usable": False,
                        "output_dir": outdir,
                        "files": {"summary": os.path.join(outdir, "manifest_summary.json")},
                        "errors": {code[0]: 1},
                        "error": f"{path}: {code[1]} [{code[0]}]",
                    }
                )
            return 1
    results = {}
    with ExitStack() as stack:
        for name, path in sets:
            validator = ManifestValidator(limits=limits, image_meta=meta, collect_items=args.test is None)
            stream = stack.enter_context(open_input(path))
            out = stack.enter_context(
                atomic_output(os.path.join(outdir, f"{name}_manifest_with_validation.json"))
            )
            work = map_manifest_lines(path, stream, check_lines, check_range, set_check_state, (limits, meta))
            for base, chunk in work:
                fates = validator.account_rows(chunk.rows, base)
                if fates is None:  # every line kept
                    if chunk.rows:
                        out.write(chunk.blob)
                        out.write(b"\n")
                    continue
                for fate, line in zip(fates, chunk.blob.split(b"\n"), strict=True):
                    if fate != SKIPPED:
                        out.write(line if fate == KEPT else mark_duplicate(line))
                        out.write(b"\n")
            results[name] = validator.finish()
        if results["training"].total == 0:
            raise CliError(
                f"{args.train}: {codes.message(codes.ERROR_EMPTY_MANIFEST)} [{codes.ERROR_EMPTY_MANIFEST}]"
            )
        if args.test and results["testing"].total == 0:
            raise CliError(
                f"{args.test}: {codes.message(codes.ERROR_EMPTY_MANIFEST)} [{codes.ERROR_EMPTY_MANIFEST}]"
            )
        summary = summarize(results["training"], results.get("testing"), limits=limits, seed=args.seed)
        write_text(os.path.join(outdir, "manifest_summary.json"), dumps(summary.document).decode() + "\n")
    if args.json:
        print_json(_summary_json(summary.document, summary.usable, outdir, [name for name, _ in sets]))
    else:
        _print_summary(summary.document, summary.usable, outdir)
    return 0 if summary.usable else 1


def _file_error(path: str, limits: codes.Limits) -> tuple[str, str] | None:
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        return codes.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT, exc.strerror or str(exc)
    if size > limits.max_manifest_bytes:
        return codes.ERROR_MANIFEST_SIZE_TOO_LARGE, f"{size:,} bytes, over {limits.max_manifest_bytes:,}"
    if size == 0:
        return codes.ERROR_EMPTY_MANIFEST, "the file is empty"
    return None


def _summary_json(doc: dict[str, Any], usable: bool, outdir: str, sets: list[str]) -> dict[str, Any]:
    """``validate --json``: usable or not, each dataset's counts, its dataset-level error codes and the
    error codes on its lines (lines per code, read back from its validation manifest), the files."""
    files = {"summary": os.path.join(outdir, "manifest_summary.json")}
    out: dict[str, Any] = {"usable": usable, "output_dir": outdir, "files": files}
    for name in ("training", "testing"):
        stats = doc["statistics"].get(name) or {}
        block: dict[str, Any] = {
            "use_case": stats.get("use_case"),
            "lines": stats.get("total_json_lines", 0),
            "valid": stats.get("valid_json_lines", 0),
            "invalid": stats.get("invalid_json_lines", 0),
            "ignored": stats.get("ignored_json_lines", 0),
            "lines_with_errors": len(stats.get("error_json_line_indices") or ()),
            "errors": _code_counts(stats.get("errors") or ()),
        }
        if name in sets:
            path = os.path.join(outdir, f"{name}_manifest_with_validation.json")
            files[name] = path
            block["line_errors"] = _line_error_codes(path)
        else:
            block["auto_split"] = True  # the test set is 20% of the training manifest
        out[name] = block
    out["errors"] = _code_counts(doc.get("errors") or ())
    return out


def _code_counts(errors: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for error in errors:
        counts[error["code"]] = counts.get(error["code"], 0) + 1
    return counts


def _line_error_codes(path: str) -> dict[str, int]:
    """Lines of a validation manifest per error code (a line counted once per code it carries)."""
    counts: dict[str, int] = {}
    with open(path, "rb") as stream:
        for data in stream:
            if b'"errors"' not in data:
                continue
            for code in _codes_in(loads(data)):
                counts[code] = counts.get(code, 0) + 1
    return dict(sorted(counts.items()))


def _codes_in(value: Any) -> set[str]:
    """The codes under every ``errors`` list in a validation line (line, attribute, annotation)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "errors" and isinstance(item, list):
                found.update(e["code"] for e in item if isinstance(e, dict) and "code" in e)
            else:
                found |= _codes_in(item)
    elif isinstance(value, list):
        for item in value:
            found |= _codes_in(item)
    return found


def _print_summary(doc: dict[str, object], usable: bool, outdir: str) -> None:
    stats = doc["statistics"]
    assert isinstance(stats, dict)
    for name in ("training", "testing"):
        s = stats.get(name)
        if not s or not s.get("total_json_lines"):
            continue
        print(
            f"{name}: {s['total_json_lines']} lines, {s['valid_json_lines']} valid, "
            f"{s['invalid_json_lines']} invalid, {s['ignored_json_lines']} ignored; use case {s['use_case']}"
        )
        if s["error_json_line_indices"]:
            shown = ", ".join(str(i) for i in s["error_json_line_indices"][:20])
            more = "" if len(s["error_json_line_indices"]) <= 20 else ", ..."
            print(f"  lines with errors: {shown}{more}")
        for e in s["errors"]:
            print(f"  {e['code']}: {e['message']}")
    errors = doc.get("errors")
    assert isinstance(errors, list)
    for e in errors:
        print(f"{e['code']}: {e['message']}")
    print(f"{'usable' if usable else 'NOT usable'} for training; details in {outdir}/")


def add_parser(sub: Any) -> None:
    """Add ``validate`` to ``customlabels``' subparsers."""
    p = sub.add_parser("validate", help="apply Rekognition's validation rules to train (and test) manifests")
    p.add_argument("train", metavar="TRAIN.manifest")
    p.add_argument(
        "--test", metavar="TEST.manifest", help="test manifest; without it the train set is auto-split"
    )
    p.add_argument(
        "--output-dir", default="validation", metavar="DIR", help="where results go (default: validation)"
    )
    p.add_argument("--image-meta", metavar="META.jsonl", help="stored size, format and bytes per image")
    p.add_argument("--seed", type=int, default=0, help="seed of the auto-split (default 0)")
    add_json_flag(p)
    p.set_defaults(func=cmd_validate)
