"""Local file edges of the command line: inputs by path or ``-``, outputs replaced whole or not at all."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO

_BUFFER = 1 << 20


class CliError(Exception):
    """A problem with the command's arguments or files, reported as one line, exit code 1."""


@contextmanager
def open_input(path: str) -> Iterator[IO[bytes]]:
    """A buffered binary stream of ``path`` (``-`` for standard input)."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        stream = open(path, "rb", buffering=_BUFFER)  # noqa: SIM115 (closed below, after the caller's block)
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with stream:
        yield stream


@contextmanager
def atomic_output(path: str) -> Iterator[IO[bytes]]:
    """Write ``path`` through a temporary file beside it, renamed over it only when the block succeeds.

    Readers never see a half-written file, and a failed command leaves the old file as it was.
    ``-`` writes to standard output (not atomic: it is a stream, not a file).
    """
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CliError(f"{path}: cannot write: the folder {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb", buffering=_BUFFER) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    with atomic_output(path) as out:
        out.write(text.encode("utf-8"))
