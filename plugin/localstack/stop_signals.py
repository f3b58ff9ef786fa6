"""How a running ``up`` is stopped: Ctrl-C, SIGTERM (from ``down``) and SIGHUP (terminal closed) all stop
the stack, and a second one while it stops only says a word."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator, Mapping
from typing import Any

from plugin.localstack.processes import say


class Stopped(Exception):
    """SIGTERM or SIGHUP arrived: stop like Ctrl-C."""


def _raise_stopped(signum: int, frame: Any) -> None:
    raise Stopped(signal.Signals(signum).name)


def install_stop_handlers() -> dict[int, Any]:
    """Ctrl-C, SIGTERM (from ``down``) and SIGHUP (terminal closed) all stop the stack.

    SIGINT is handled even when the shell started us with it ignored (a background job).
    """
    old: dict[int, Any] = {}
    handlers: dict[int, Any] = {
        signal.SIGINT: signal.default_int_handler,
        signal.SIGTERM: _raise_stopped,
        signal.SIGHUP: _raise_stopped,
    }
    for sig, handler in handlers.items():
        with contextlib.suppress(ValueError, OSError):
            old[sig] = signal.signal(sig, handler)
    return old


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP only print a word while the block runs (main thread only)."""

    def still(signum: int, frame: Any) -> None:
        say("still stopping; a moment")

    old: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            old[sig] = signal.signal(sig, still)
    try:
        yield
    finally:
        restore_handlers(old)


def restore_handlers(old: Mapping[int, Any]) -> None:
    """Put back the handlers ``install_stop_handlers`` (or ``shielded``) replaced."""
    for sig, handler in old.items():
        with contextlib.suppress(ValueError, OSError, TypeError):
            signal.signal(sig, handler)
