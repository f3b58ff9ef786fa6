"""A tiny progress display for long commands: a redrawn bar on a terminal, plain lines elsewhere.

On a terminal (``stream.isatty()``) one line is redrawn in place a few times a second::

    [######------------]  2/6  starting Label Studio (first start migrates its database)  14 s

Elsewhere (a pipe, a log file, CI) each step prints one line when it starts and the end prints the
total time, so logs stay readable::

    customlabels: [2/6] starting Label Studio (first start migrates its database)

``note()`` prints a message above the bar; ``paused()`` stops redrawing while another program writes
to the same terminal (pip's output, for one).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import TextIO

BAR_WIDTH = 20
REDRAW_SECONDS = 0.25


class Progress:
    """Steps ``1..total`` of one long operation, shown on ``stream`` (default stderr)."""

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        prefix: str = "customlabels",
        tty: bool | None = None,
        enabled: bool = True,
    ) -> None:
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.prefix = prefix
        self.enabled = enabled
        self.tty = (tty if tty is not None else _isatty(self.stream)) and enabled
        self.current = 0
        self.text = ""
        self.started = time.monotonic()
        self.step_started = self.started
        self._lock = threading.Lock()
        self._paused = 0
        self._drawn = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- public -------------------------------------------------------------------------------------

    def step(self, text: str) -> None:
        """Begin the next step, described by ``text``."""
        with self._lock:
            self.current = min(self.current + 1, self.total)
            self.text = text
            self.step_started = time.monotonic()
            if not self.enabled:
                return
            if self.tty:
                self._draw()
                self._ensure_thread()
            else:
                self._line(f"[{self.current}/{self.total}] {text}")

    def note(self, message: str) -> None:
        """Print ``message`` on its own line (above the bar on a terminal)."""
        with self._lock:
            if not self.enabled:
                return
            self._clear()
            self._line(message)
            if self.tty and self.current and not self._paused:
                self._draw()

    def finish(self, message: str | None = None) -> None:
        """End the display; print ``message`` (default: the total time)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
            self._thread = None
        with self._lock:
            if not self.enabled:
                return
            self._clear()
            elapsed = time.monotonic() - self.started
            self._line(message if message is not None else f"done in {elapsed:.0f} s")

    def close(self) -> None:
        """Stop redrawing and clear the bar, printing nothing more."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
            self._thread = None
        with self._lock:
            self._clear()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop redrawing (and clear the bar) while another program writes to the terminal."""
        with self._lock:
            self._paused += 1
            self._clear()
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1
                if self.tty and self.current and not self._paused:
                    self._draw()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- drawing ------------------------------------------------------------------------------------

    def render(self, now: float | None = None) -> str:
        """The bar's text for the current step (without the carriage return)."""
        now = time.monotonic() if now is None else now
        filled = round(BAR_WIDTH * (self.current - 1) / self.total) if self.current else 0
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        width = len(str(self.total))
        return f"[{bar}] {self.current:>{width}}/{self.total}  {self.text}  {now - self.step_started:.0f} s"

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._redraw, daemon=True, name="progress")
            self._thread.start()

    def _redraw(self) -> None:
        while not self._stop.wait(REDRAW_SECONDS):
            with self._lock:
                if not self._paused:
                    self._draw()

    def _draw(self) -> None:
        if self._paused:
            return
        self._write("\r\x1b[2K" + self.render())
        self._drawn = True

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self._write("\r\x1b[2K")
            self._drawn = False

    def _line(self, text: str) -> None:
        self._write(f"{self.prefix}: {text}\n" if self.prefix else f"{text}\n")

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
