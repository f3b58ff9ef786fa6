"""A tiny progress display for long commands: a redrawn bar on a terminal, plain lines elsewhere.

On a terminal (``stream.isatty()``) one line is redrawn in place a few times a second::

    [######------------]  2/6  starting Label Studio (first start migrates its database)  14 s

Elsewhere (a pipe, a log file, CI) each step prints one line when it starts and the end prints the
total time, so logs stay readable::

    customlabels: [2/6] starting Label Studio (first start migrates its database)

``note()`` prints a message above the bar; ``paused()`` stops redrawing while another program writes
to the same terminal (pip's output, for one).

:class:`ItemProgress` is its sibling for counted work (images uploaded, tasks imported): named stages,
each with items done out of a total when one is known. On a terminal its bar is redrawn at most every
:data:`REDRAW_SECONDS` with the count, the rate and the time left::

    [#####---------------] uploading images  1,200/5,000  24%  240/s  ETA 16 s

Elsewhere it prints a line when a stage starts, at most one every :data:`LINE_SECONDS` while it runs,
and one when it ends::

    customlabels: uploading images 0/5,000
    customlabels: uploading images 1,200/5,000 (24%, 240/s, ETA 16 s)
    customlabels: uploading images 5,000/5,000 in 21 s

Both write to standard error only: standard output is the command's result (``--json``).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TextIO

BAR_WIDTH = 20
REDRAW_SECONDS = 0.25
LINE_SECONDS = 5.0  # least time between two plain progress lines of one stage (not on a terminal)


class _Display:
    """What both displays share: clearing the redrawn line, printing a plain line, writing safely."""

    stream: TextIO
    prefix: str
    tty: bool
    _drawn: bool

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


class Progress(_Display):
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


class ItemProgress(_Display):
    """Counted work in named stages, shown on ``stream`` (default stderr); call it as
    ``progress(stage, done, total)`` (``total`` None when unknown, as while listing).

    A call with a new ``stage`` ends the one before (its final line) and starts that one. ``tty``
    defaults to ``stream.isatty()``; ``enabled=False`` shows nothing (``--quiet``). ``clock`` (seconds,
    default :func:`time.monotonic`) is injectable for tests. On a terminal a thread redraws the bar when
    its text changes between calls (the seconds of a long step), so a slow stage never looks stuck.
    Thread-safe.
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        prefix: str = "customlabels",
        tty: bool | None = None,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        redraw_seconds: float = REDRAW_SECONDS,
        line_seconds: float = LINE_SECONDS,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.prefix = prefix
        self.enabled = enabled
        self.tty = (tty if tty is not None else _isatty(self.stream)) and enabled
        self.clock = clock
        self.redraw_seconds = redraw_seconds
        self.line_seconds = line_seconds
        self.stage: str | None = None
        self.done = 0
        self.total: int | None = None
        self.detail = ""
        self.started = clock()
        self.stage_started = self.started
        self._first_done = 0  # ``done`` when the stage started: the rate counts from there
        self._shown = float("-inf")  # when the bar was last drawn or the last plain line written
        self._drawn = False
        self._text = ""  # the bar as last drawn
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- public -------------------------------------------------------------------------------------

    def __call__(self, stage: str, done: int, total: int | None = None, *, detail: str = "") -> None:
        """``done`` items of ``total`` in ``stage``; ``detail`` is extra text (``3 pending events``)."""
        with self._lock:
            now = self.clock()
            if stage != self.stage:
                self._end_stage(now)
                self.stage, self.stage_started, self._first_done = stage, now, done
                self.done, self.total, self.detail = done, total, detail
                self._show(now, force=True)
                return
            self.done, self.detail = done, detail
            if total is not None:
                self.total = total
            complete = self.total is not None and done >= self.total
            if self.tty:
                self._show(now, force=complete)  # the full bar, at once
            elif not complete:  # a plain line for the end comes when the stage ends
                self._show(now, force=False)

    def note(self, message: str) -> None:
        """Print ``message`` on its own line (above the bar on a terminal)."""
        with self._lock:
            if not self.enabled:
                return
            self._clear()
            self._line(message)
            if self.tty and self.stage is not None:
                self._draw(self.clock())

    def finish(self, message: str | None = None) -> None:
        """End the current stage (its final line), clear the bar and print ``message`` if given."""
        self._stop_thread()
        with self._lock:
            self._end_stage(self.clock())
            self.stage = None
            if self.enabled and message is not None:
                self._line(message)

    def close(self) -> None:
        """Clear the bar, printing nothing more (an error follows)."""
        self._stop_thread()
        with self._lock:
            self._clear()
            self.stage = None

    def __enter__(self) -> ItemProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.finish()
        else:
            self.close()

    # --- text ---------------------------------------------------------------------------------------

    def count(self) -> str:
        """``1,200/5,000``, ``1,200`` without a total, or empty for a stage that counts nothing."""
        if self.total is not None:
            return f"{self.done:,}/{self.total:,}"
        return f"{self.done:,}" if self.done else ""

    def rate(self, now: float) -> float | None:
        """Items a second since the stage started; None until a second has passed or an item is done."""
        elapsed = now - self.stage_started
        moved = self.done - self._first_done
        return moved / elapsed if elapsed >= 1.0 and moved > 0 else None

    def eta(self, now: float) -> float | None:
        """Seconds left at the stage's average rate; None when there is no total or no rate yet."""
        rate = self.rate(now)
        if rate is None or self.total is None:
            return None
        return max(self.total - self.done, 0) / rate

    def render(self, now: float | None = None) -> str:
        """The bar's text (without the carriage return)."""
        now = self.clock() if now is None else now
        bar = ""
        if self.total is not None:
            filled = round(BAR_WIDTH * min(self.done / self.total, 1.0)) if self.total else BAR_WIDTH
            bar = "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "] "
        parts = [self.stage or "", self.count(), *self._figures(now, elapsed=True)]
        return bar + "  ".join(p for p in parts if p)

    def render_line(self, now: float | None = None) -> str:
        """The plain line of a stage under way: ``uploading images 1,200/5,000 (24%, 240/s, ETA 16 s)``."""
        now = self.clock() if now is None else now
        head = " ".join(p for p in (self.stage or "", self.count()) if p)
        figures = self._figures(now, elapsed=now - self.stage_started >= 1.0)
        return f"{head} ({', '.join(figures)})" if figures else head

    def render_end(self, now: float | None = None) -> str:
        """The final line of a stage: ``uploading images 5,000/5,000 in 21 s``."""
        now = self.clock() if now is None else now
        head = " ".join(p for p in (self.stage or "", self.count()) if p)
        took = f"in {_seconds(now - self.stage_started)}"
        return f"{head} {took}" if self.count() else f"{head}: done {took}"

    def _figures(self, now: float, *, elapsed: bool) -> list[str]:
        """Percent, detail, rate, then the time left (or, without it, the time so far if ``elapsed``)."""
        out = []
        if self.total:
            out.append(f"{min(self.done / self.total, 1.0):.0%}")
        if self.detail:
            out.append(self.detail)
        rate = self.rate(now)
        if rate is not None:
            out.append(f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.1f}/s")
        eta = self.eta(now)
        if eta is not None and self.total is not None and self.done < self.total:
            out.append(f"ETA {_seconds(eta)}")
        elif elapsed:
            out.append(_seconds(now - self.stage_started))
        return out

    # --- drawing ------------------------------------------------------------------------------------

    def _show(self, now: float, *, force: bool) -> None:
        if not self.enabled:
            return
        wait = self.redraw_seconds if self.tty else self.line_seconds
        if not force and now - self._shown < wait:
            return
        self._shown = now
        if self.tty:
            self._draw(now)
            self._ensure_thread()
        else:
            self._line(self.render_line(now))

    def _end_stage(self, now: float) -> None:
        if self.stage is None or not self.enabled:
            return
        self._clear()
        self._line(self.render_end(now))

    def _draw(self, now: float) -> None:
        self._text = self.render(now)
        self._write("\r\x1b[2K" + self._text)
        self._drawn = True

    def _ensure_thread(self) -> None:
        """Start the redrawing thread (the lock held)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._tick, daemon=True, name="item-progress")
            self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.redraw_seconds):
            with self._lock:
                if self._drawn and self.stage is not None and self.render() != self._text:
                    self._draw(self.clock())

    def _stop_thread(self) -> None:
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1)


def _seconds(value: float) -> str:
    """``14 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    whole = round(value)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
