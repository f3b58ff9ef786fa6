"""The ``customlabels`` command line: the root parser and ``main``; each command group is a module here.

Exit codes: 0 success (for ``validate``: the dataset is usable for training), 1 bad data or a dataset
not usable for training, 2 usage errors. Outputs are replaced whole or not at all. With ``--json`` a
command prints one JSON document on standard output (``{"status": "error", "error": ...}`` when it
fails); warnings and errors still go to standard error.

The groups: :mod:`~plugin.cli.convert`, :mod:`~plugin.cli.validate`, :mod:`~plugin.cli.split` (the
batch commands, over :mod:`~plugin.cli.fastpath`), :mod:`~plugin.cli.service` (serve, worker, project),
the local stack's up, down and doctor (:mod:`plugin.localstack`) and :mod:`~plugin.cli.dataset` (dataset,
snapshot).
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Sequence

from converters.errors import ConversionError
from plugin import localstack
from plugin.cli import convert, dataset, service, split, validate
from plugin.cli.common import print_error_json, say
from plugin.fileio import CliError

# Commands run by run_service_command (configuration and service errors become messages, exit codes).
SERVICE_MODULES = ("plugin.cli.service", "plugin.cli.dataset", "plugin.localstack")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``customlabels``."""
    parser = argparse.ArgumentParser(
        prog="customlabels",
        description="Rekognition Custom Labels datasets on Label Studio: convert, validate, split.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    convert.add_parsers(sub)
    validate.add_parser(sub)
    split.add_parser(sub)
    service.add_parsers(sub)
    localstack.add_parsers(sub)  # up, down, doctor
    dataset.add_parsers(sub)
    return parser


def _is_service_command(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in SERVICE_MODULES)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``customlabels``; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "json", False) and "-" in (
        getattr(args, "output", None),
        getattr(args, "train_out", None),
        getattr(args, "test_out", None),
    ):
        parser.error("--json prints to standard output: give the output a file name, not -")
    func = getattr(args, "func", None)
    if func is None:
        if args.command in ("convert", "project", "dataset"):
            parser.parse_args([args.command, "--help"])
        parser.print_help()
        return 0
    if _is_service_command(getattr(func, "__module__", "")):
        return service.run_service_command(func, args)
    # A command is a batch run: its objects die young or live to its end, and none form cycles worth
    # collecting, so the cyclic collector (which would walk every live object again and again: a
    # quarter of validate's own time at 250,000 lines) stays off for it, in its worker processes too.
    collecting = gc.isenabled()
    gc.disable()
    try:
        code: int = func(args)
    except (ConversionError, CliError) as exc:
        print_error_json(args, str(exc))
        say(f"error: {exc}")
        return 1
    except BrokenPipeError:
        return 1
    finally:
        if collecting:
            gc.enable()
    return code
