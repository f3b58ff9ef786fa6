"""Keeping a local stack running: a part that crashes is started again after a pause, and a part that
keeps crashing is left stopped, while Label Studio stays up for the annotator.

Who supervises: a foreground ``up`` watches its own parts until Ctrl-C; ``up --detach`` leaves a small
process of ours in the background (``python -m plugin.localstack.supervisor HOME``, log in
``logs/supervisor.log``) that does the same and is recorded in ``state.json`` as ``supervisor``, so that
``down`` stops it (SIGTERM: it stops every part it watches, as a foreground ``up`` does). A record
written before detached stacks had a supervisor still reads (``supervisor`` null): ``down`` then stops the
recorded parts itself, as before.

What a crash does (:class:`Backoff`): every part ``up`` started is started again, with the same
command, port and data, after 1 s, then 2, 4, 8 s for the next crashes (at most 60 s); a crash older
than ten minutes no longer counts. The fifth crash within ten minutes leaves that part stopped: a part
that fails at once forever is tried five times in about 15 s, not in a tight loop; the rest of the stack
keeps running, ``doctor`` fails naming the part and its log, and ``down && up`` starts over. Each crash
(its time, pid, exit code, and the pause before the restart or that it was left stopped) is logged on
standard error and kept in ``state.json``, where ``doctor`` shows it.

Why every part, not only the service and the worker: each one's state survives its process. Label
Studio keeps everything in its SQLite database (a restart gives the annotator back the UI with nothing
lost); the S3 store keeps every object in files; the Redis that ``up`` starts holds only queues, locks
and caches (pending events are lost with it, and the worker's reconcile catches up; its database is
claimed again for this home). Stopping the whole stack, as ``up`` did, is the one answer that loses the
annotator's session for certain. A Redis or S3 endpoint that ``up`` found running is not ours: it is not
watched (``doctor`` says when it does not answer).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from plugin.localstack.errors import ServerStartError, StackError
from plugin.localstack.layout import Layout
from plugin.localstack.plan import make_plan
from plugin.localstack.private_files import load_ls_env, load_secrets
from plugin.localstack.processes import Proc, log_tail, process_start_time, say, spawn
from plugin.localstack.record import Crash, StackRecord, exit_in_words, plan_of_record, read_record, utc_now
from plugin.localstack.stack import ORDER, Parts, Stack
from plugin.localstack.stop_signals import Stopped, install_stop_handlers, restore_handlers

SUPERVISOR_START_TIMEOUT = 30.0
SUPERVISOR_STOP_TIMEOUT = 60.0


@dataclass(frozen=True)
class Backoff:
    """When a crashed part is started again (seconds), and after how many crashes it is left stopped."""

    first: float = 1.0
    longest: float = 60.0
    crashes: int = 5
    """This many crashes of one part within ``window`` leave it stopped."""
    window: float = 600.0

    def delay(self, recent: int) -> float:
        """The pause before restarting a part that crashed ``recent`` times within the window (1 s,
        doubling, at most ``longest``)."""
        return float(min(self.longest, self.first * 2 ** max(0, recent - 1)))


def _name(part: str) -> str:
    return part.replace("_", " ")


class Supervisor:
    """Watches the parts of one stack; each :meth:`tick` notes the crashes and restarts what is due."""

    def __init__(
        self,
        stack: Stack,
        start: Callable[[str], None],
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stack = stack
        self.start = start
        self.backoff = backoff or Backoff()
        self.clock = clock
        self._recent: dict[str, list[float]] = {}
        self._due: dict[str, float] = {}
        self.left_stopped: set[str] = set(stack.record.given_up())

    def tick(self) -> None:
        """Note the parts that ended since the last tick; start again those whose pause is over."""
        now = self.clock()
        for name in ORDER:  # Redis and the store before the service and worker that need them
            proc = self.stack.record.processes.get(name)
            if proc is None or name in self.left_stopped:
                continue
            if name in self._due:
                if now >= self._due[name]:
                    self._restart(name, proc)
            elif not proc.alive:
                self._crashed(name, proc, now)

    def _crashed(self, name: str, proc: Proc, now: float) -> None:
        code = proc.popen.returncode if proc.popen is not None else None
        proc.end_leftovers()
        recent = [t for t in self._recent.get(name, []) if now - t < self.backoff.window] + [now]
        self._recent[name] = recent
        tail = log_tail(Path(proc.log), 15)
        if len(recent) >= self.backoff.crashes:
            delay = None
            self.left_stopped.add(name)
            say(
                f"{_name(name)} (pid {proc.pid}) exited ({exit_in_words(code)}), its {len(recent)}th crash in "
                f"{self.backoff.window / 60:.0f} min: left stopped (the rest keeps running; fix it, then "
                f"`customlabels down && customlabels up`); end of {proc.log}:\n{tail}"
            )
        else:
            delay = self.backoff.delay(len(recent))
            self._due[name] = now + delay
            say(
                f"{_name(name)} (pid {proc.pid}) exited ({exit_in_words(code)}); starting it again in {delay:.0f} s; "
                f"end of {proc.log}:\n{tail}"
            )
        self.stack.record.add_crash(name, Crash(utc_now(), proc.pid, code, delay))
        self.stack.save()

    def _restart(self, name: str, proc: Proc) -> None:
        del self._due[name]
        try:
            self.start(name)
        except (StackError, ServerStartError, OSError, ValueError) as exc:
            say(f"could not start {_name(name)} again: {exc}")
            self._crashed(name, proc, self.clock())  # a start that fails counts as a crash
            return
        say(f"started {_name(name)} again (pid {self.stack.record.processes[name].pid})")


def supervise(
    stack: Stack, parts: Parts, *, backoff: Backoff | None = None, interval: float = 1.0
) -> list[str]:
    """Watch the stack, restarting what crashes, until Ctrl-C, SIGTERM (``down``) or SIGHUP; then stop
    every part and remove the record. Returns the parts stopped."""
    parts.progress = None  # `up`'s progress display is over: a restart reports through say()
    handlers = install_stop_handlers()
    watcher = Supervisor(stack, parts.start, backoff=backoff)
    try:
        while True:
            watcher.tick()
            time.sleep(interval)
    except (KeyboardInterrupt, Stopped):
        say("stopping")
    finally:
        stopped = stack.stop()
        restore_handlers(handlers)
    return stopped


def supervisor_command(home: Path) -> list[str]:
    """The command of a detached stack's supervisor."""
    return [sys.executable, "-m", "plugin.localstack.supervisor", str(home)]


def start_supervisor(stack: Stack) -> Proc:
    """Leave a supervisor of ``stack`` in the background (``up --detach``); return once it has recorded
    itself in ``state.json`` (from then on it alone writes the record)."""
    layout = stack.plan.layout
    command = supervisor_command(layout.home)
    log = layout.log("supervisor")
    popen = spawn(command, env=os.environ, log=log, cwd=layout.home)
    deadline = time.monotonic() + SUPERVISOR_START_TIMEOUT
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise StackError(f"the supervisor exited with code {popen.returncode}:\n{log_tail(log, 20)}")
        record = read_record(layout)
        if record is not None and record.supervisor is not None and record.supervisor.pid == popen.pid:
            stack.record.supervisor = record.supervisor
            return record.supervisor
        time.sleep(0.1)
    Proc.of("supervisor", popen, log, command).stop(3)
    raise StackError(
        f"the supervisor did not start in {SUPERVISOR_START_TIMEOUT:.0f} s:\n{log_tail(log, 20)}"
    )


def stop_supervisor(record: StackRecord, *, timeout: float = SUPERVISOR_STOP_TIMEOUT) -> bool:
    """Ask the process supervising ``record`` (a foreground ``up`` or a detached supervisor) to stop the
    stack (SIGTERM) and wait until it is gone; False when there was none to ask (or it is us)."""
    supervisor = record.supervisor
    if supervisor is None or not supervisor.alive or supervisor.pid == os.getpid():
        return False
    try:
        os.kill(supervisor.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + timeout
    while supervisor.alive and time.monotonic() < deadline:
        time.sleep(0.2)
    return True


def run_detached(home: Path) -> int:
    """The detached supervisor: take over the stack recorded in ``home`` and watch it until ``down``."""
    layout = Layout(home)
    record = read_record(layout)
    secrets_ = load_secrets(layout, create=False)
    ls_settings = load_ls_env(layout, create=False)
    if record is None or secrets_ is None or ls_settings is None:
        say(f"no stack recorded in {home}: nothing to supervise")
        return 1
    try:
        plan = plan_of_record(make_plan(home), record)
    except StackError as exc:
        say(str(exc))
        return 1
    stack = Stack.of_record(plan, record)
    me = os.getpid()
    stack.record.supervisor = Proc(
        "supervisor", me, process_start_time(me), str(layout.log("supervisor")), sys.argv
    )
    stack.save()
    say(f"supervising the stack in {home} (pid {me})")
    stopped = supervise(stack, Parts(stack, secrets_, ls_settings, progress=None))
    say(f"stopped {', '.join(_name(s) for s in stopped) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_detached(Path(sys.argv[1])))
