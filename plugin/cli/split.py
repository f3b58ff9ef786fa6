"""``customlabels split``: a stratified train/test split of a manifest, stable for a seed."""

from __future__ import annotations

import argparse
from typing import Any

from converters import codes
from converters.errors import Report
from converters.jsonio import iter_lines, loads
from converters.manifest import parse_line
from converters.split import SplitItem, labels_short_of, split
from plugin.cli.common import MAX_LINE, add_json_flag, line_error, print_json, say
from plugin.fileio import CliError, atomic_output, open_input


def _read_items(path: str) -> list[SplitItem]:
    items = []
    report = Report(source=path)
    with open_input(path) as stream:
        for raw in iter_lines(stream, max_chars=MAX_LINE):
            if raw.too_long or not raw.data.strip():
                report.add(
                    raw.number, line_error(codes.ERROR_INVALID_JSON_LINE, "the line is empty or too long")
                )
                continue
            try:
                parsed = parse_line(loads(raw.data))
            except ValueError as exc:
                report.add(raw.number, line_error(codes.ERROR_INVALID_JSON_LINE, f"broken JSON: {exc}"))
                continue
            if parsed.entry is None:
                for issue in parsed.issues:
                    report.add(raw.number, issue)
                continue
            items.append(SplitItem(parsed.entry.source_ref, frozenset(parsed.entry.label_names)))
    if report.errors:
        say(report.format())
        raise CliError(
            f"{path}: {len(report.errors)} line(s) are not valid manifest lines; nothing was written"
        )
    return items


def cmd_split(args: argparse.Namespace) -> int:
    """Split a manifest into train and test, stratified by label, stable for a seed."""
    if bool(args.keep_train) != bool(args.keep_test):
        raise CliError("--keep-train and --keep-test go together")
    keep: dict[str, str] = {}
    for side, path in (("train", args.keep_train), ("test", args.keep_test)):
        if path:
            for item in _read_items(path):
                if keep.setdefault(item.source_ref, side) != side:
                    raise CliError(f"{item.source_ref} is in both --keep-train and --keep-test")
    items = _read_items(args.input)
    short = labels_short_of(items)
    if short:
        names = ", ".join(f"{n} ({c})" for n, c in list(short.items())[:10])
        say(
            f"warning: {codes.message(codes.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE)} "
            f"[{codes.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE}] labels with fewer than 2 images stay in "
            f"train: {names}"
        )
    assignment = split(items, test_fraction=args.test_fraction, seed=args.seed, keep=keep)
    counts = {"train": 0, "test": 0}
    with (
        open_input(args.input) as stream,
        atomic_output(args.train_out) as train,
        atomic_output(args.test_out) as test,
    ):
        outs = {"train": train, "test": test}
        seen: set[str] = set()
        for raw in iter_lines(stream, max_chars=MAX_LINE):
            if not raw.data.strip():
                continue
            ref = loads(raw.data)["source-ref"]
            if ref in seen:
                continue
            seen.add(ref)
            side = assignment[ref]
            outs[side].write(raw.data)
            outs[side].write(b"\n")
            counts[side] += 1
    if args.json:
        print_json(
            {
                "input": args.input,
                "train": {"output": args.train_out, "count": counts["train"]},
                "test": {"output": args.test_out, "count": counts["test"]},
                "test_fraction": args.test_fraction,
                "seed": args.seed,
                "labels_short": dict(short),
            }
        )
    else:
        say(
            f"train: {counts['train']} entries -> {args.train_out}; test: {counts['test']} entries -> {args.test_out}"
        )
    return 0


def add_parser(sub: Any) -> None:
    """Add ``split`` to ``customlabels``' subparsers."""
    p = sub.add_parser("split", help="stratified, stable train/test split of a manifest")
    p.add_argument("input", metavar="INPUT.manifest")
    p.add_argument("--train-out", required=True, metavar="TRAIN.manifest")
    p.add_argument("--test-out", required=True, metavar="TEST.manifest")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of each label sent to test (0.2)")
    p.add_argument("--seed", type=int, default=0, help="same input and seed give the same split (default 0)")
    p.add_argument("--keep-train", metavar="OLD_TRAIN.manifest", help="entries that stay in train")
    p.add_argument("--keep-test", metavar="OLD_TEST.manifest", help="entries that stay in test")
    add_json_flag(p)
    p.set_defaults(func=cmd_split)
