"""Processes the local stack starts: free ports, logs, and the record of a process we started (``Proc``:
pid plus start time, so a pid reused by another program is never signalled), started in its own session
and stopped with its whole process group.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

LOOPBACK = "127.0.0.1"


def say(message: str) -> None:
    """A line of the local stack's progress or warnings on standard error.

    Never raises: when nobody reads standard error any more (``up 2>&1 | tee log``, then Ctrl-C ends
    ``tee`` first) the line is lost and later ones are dropped, while the work they report (stopping
    every part) goes on.
    """
    try:
        print(f"customlabels: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # a closed pipe (EPIPE), or a stream already closed
        drop_output(sys.stderr)


def drop_output(stream: TextIO) -> None:
    """Send what is still written to ``stream`` (standard output or error) nowhere: its reader is gone.

    The interpreter flushes the stream again at exit; with the unwritten text still buffered it would
    fail again, print "Exception ignored ... BrokenPipeError" and exit with code 120.
    """
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)


LISTEN_PORTS_FROM = 20000
"""The lowest port :func:`free_port` picks (below it lie most services' well-known ports)."""
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def _ephemeral_low() -> int | None:
    """The first port of the range the OS gives outgoing connections (Linux), None when unknown."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _can_bind(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` right now (another process may still bind it), not one handed out by
    this process before.

    Picked at random between :data:`LISTEN_PORTS_FROM` and the OS's range for outgoing connections
    where there is room: a port of that range (what binding port 0 gives) can become the local port of
    any outgoing connection on the machine before the server it was picked for binds it, which then
    fails with "Address already in use"."""
    low = _ephemeral_low()
    if low is not None and low - LISTEN_PORTS_FROM >= 1000:
        for _ in range(200):
            port = random.randrange(LISTEN_PORTS_FROM, low)
            if port not in _handed_out and _can_bind(host, port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        picked: int = sock.getsockname()[1]
    _handed_out.add(picked)
    return picked


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """Terminate a process started in its own session (its whole group), then kill it after ``grace``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)
    # Children that outlived the leader (same group) go too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def process_start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), None when it is gone or a zombie.

    Recorded with each pid so that a pid the system gave to another process since is never taken for
    ours. Where there is no ``/proc`` (macOS), 0 for a live process.
    """
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return 0
        return 0
    try:
        text = stat.read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class Proc:
    """A process this stack started: its pid (also its process group: each runs in its own session)."""

    name: str
    pid: int
    start: int | None
    log: str
    command: list[str]
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, name: str, popen: subprocess.Popen[bytes], log: Path, command: list[str]) -> Proc:
        """Record a process we just started."""
        return cls(name, popen.pid, process_start_time(popen.pid), str(log), command, popen)

    def to_json(self) -> dict[str, Any]:
        """The state-file record."""
        return {"pid": self.pid, "start": self.start, "log": self.log, "command": self.command}

    @classmethod
    def from_json(cls, name: str, raw: Mapping[str, Any]) -> Proc:
        """Read a state-file record."""
        start = raw.get("start")
        return cls(
            name,
            int(raw["pid"]),
            int(start) if start is not None else None,
            str(raw.get("log", "")),
            [str(x) for x in raw.get("command", [])],
        )

    @property
    def alive(self) -> bool:
        """Whether this very process still runs (same pid and same start time)."""
        if self.popen is not None and self.popen.poll() is not None:
            return False
        now = process_start_time(self.pid)
        return now is not None and (self.start is None or now == self.start)

    def stop(self, grace: float = 10.0) -> bool:
        """SIGTERM its process group, SIGKILL after ``grace`` s; True when it was running."""
        if not self.alive:
            self._reap()
            return False
        self._signal(signal.SIGTERM)
        if not self._wait(grace):
            self._signal(signal.SIGKILL)
            self._wait(5.0)
        # Children left in its group (a worker's work horse, say) go with it.
        self._signal(signal.SIGKILL)
        self._reap()
        return True

    def end_leftovers(self) -> None:
        """Kill what is left in the group of this process after it ended (a gunicorn master's workers
        still holding its port, say), so that it can be started again."""
        self._reap()
        if process_start_time(self.pid) is not None:
            return  # the pid is alive again: another program's now, not ours to signal
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, sig)

    def _wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.alive:
                self._reap()
                return True
            time.sleep(0.1)
        return not self.alive

    def _reap(self) -> None:
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=1)


def spawn(command: list[str], *, env: Mapping[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session with stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
