"""Ordered, bounded, multi-process map for the line-parallel commands (manifest-to-ls, validate).

The per-line work of the core is pure Python, so one process tops out at one core. Lines are cut into
chunks; a small pool works on them while this process reads ahead at most ``window`` chunks, so memory
stays bounded and results come back in input order. Inputs of one chunk or less run in-process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

CHUNK = 2000


def default_workers() -> int:
    """Worker processes to use: the machine's cores, at most 4 (``CUSTOMLABELS_WORKERS`` overrides)."""
    configured = os.environ.get("CUSTOMLABELS_WORKERS")
    if configured:
        return max(1, int(configured))
    return max(1, min(os.cpu_count() or 1, 4))


def chunked(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def ordered_map(
    func: Callable[[T], R],
    chunks: Iterable[T],
    *,
    workers: int | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    window: int = 4,
) -> Iterator[tuple[T, R]]:
    """Yield ``(chunk, func(chunk))`` in input order, computing up to ``workers`` chunks at a time.

    ``initializer(*initargs)`` runs once in each worker (and here, when no pool is started), so large
    shared inputs (image facts, options) are handed over once, not with every chunk.
    """
    count = workers if workers is not None else default_workers()
    iterator = iter(chunks)
    first = list(islice(iterator, 2))
    if count <= 1 or len(first) < 2:
        if initializer is not None:
            initializer(*initargs)
        for chunk in chain(first, iterator):
            yield chunk, func(chunk)
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(count, initializer, initargs) as pool:
        pending: deque[tuple[T, Any]] = deque()
        for chunk in chain(first, iterator):
            pending.append((chunk, pool.apply_async(func, (chunk,))))
            if len(pending) >= max(window, count * 2):
                done, result = pending.popleft()
                yield done, result.get()
        while pending:
            done, result = pending.popleft()
            yield done, result.get()


def line_ranges(
    path: str, target: int = 8 << 20, *, start: int = 0, stop: int | None = None
) -> list[tuple[int, int]]:
    """Byte ranges of about ``target`` bytes covering ``path`` (or its bytes ``[start, stop)``, ``start``
    at a line start), each starting at the start of a line."""
    size = os.path.getsize(path) if stop is None else stop
    ranges: list[tuple[int, int]] = []
    with open(path, "rb") as stream:
        while start < size:
            end = start + target
            if end >= size:
                ranges.append((start, size))
                break
            stream.seek(end)
            while True:
                block = stream.read(1 << 16)
                if not block:
                    end = size
                    break
                newline = block.find(b"\n")
                if newline >= 0:
                    end = min(stream.tell() - len(block) + newline + 1, size)
                    break
            ranges.append((start, end))
            start = end
    return ranges


def map_ranges(
    func: Callable[[str, int, int], R],
    path: str,
    *,
    workers: int | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    target: int = 8 << 20,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[R]:
    """Yield ``func(path, start, end)`` for each line range of ``path`` (or of its bytes ``[start, stop)``),
    in order.

    Each worker reads its own range of the file, so no line crosses a process boundary: only results
    come back, and this process stays free to write them.
    """
    ranges = line_ranges(path, target, start=start, stop=stop)
    for _, result in ordered_map(
        _RangeCall(func, path), ranges, workers=workers, initializer=initializer, initargs=initargs
    ):
        yield result


class _RangeCall:
    """A picklable ``(start, end) -> func(path, start, end)``."""

    def __init__(self, func: Callable[[str, int, int], Any], path: str) -> None:
        self.func = func
        self.path = path

    def __call__(self, span: tuple[int, int]) -> Any:
        return self.func(self.path, span[0], span[1])
