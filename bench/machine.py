"""How fast this machine is at the two things our figures lean on, measured in a second.

Machines of the same kind here differ by more than 2x, and not evenly: one ran an empty Python loop twice
as fast as the machine before it but copied large buffers at under 1 GB/s, and every benchmark that builds
objects by the hundred thousand (parsing an export, a rebuild) ran two to three times slower there. Each
benchmark prints these figures and keeps them in its results, so that two runs on different machines can
be told apart from a change in the code.
"""

from __future__ import annotations

import time
from typing import Any

_LOOP = 10_000_000
_COPY_BYTES = 256 << 20


def speed() -> dict[str, Any]:
    """``python_loop_s``: seconds of an empty 10,000,000-step Python loop (the interpreter);
    ``fresh_copy_gbs``: GB/s copying 256 MiB (beyond any CPU cache) into memory not touched before (page
    faults included, as when objects are first built); ``warm_copy_gbs``: GB/s copying it again into the
    same memory."""
    started = time.perf_counter()
    for _ in range(_LOOP):
        pass
    loop = time.perf_counter() - started
    source = b"\x01" * _COPY_BYTES  # written, so that its pages are real (bytes(n) maps zero pages)
    started = time.perf_counter()
    target = bytearray(source)
    fresh = time.perf_counter() - started
    started = time.perf_counter()
    target[:] = source
    warm = time.perf_counter() - started
    del source, target
    return {
        "python_loop_s": round(loop, 3),
        "fresh_copy_gbs": round(_COPY_BYTES / fresh / 1e9, 2),
        "warm_copy_gbs": round(_COPY_BYTES / warm / 1e9, 2),
    }


def describe(figures: dict[str, Any]) -> str:
    """One line of :func:`speed`'s figures."""
    return (
        f"machine speed: Python loop of 10M steps {figures['python_loop_s']:.2f} s; memory copy "
        f"{figures['fresh_copy_gbs']:.2f} GB/s into new memory, {figures['warm_copy_gbs']:.2f} GB/s into "
        "memory in use"
    )
