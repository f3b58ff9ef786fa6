"""The supervisor of a local stack: a crashed part is started again after a growing pause, one that keeps
crashing is left stopped (never restarted in a tight loop), each crash is kept in the record, ``doctor``
shows them; and the stop path goes on when nobody reads the output any more."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugin.localstack.doctor import check_processes
from plugin.localstack.layout import Layout
from plugin.localstack.plan import make_plan
from plugin.localstack.processes import Proc, process_start_time
from plugin.localstack.record import Crash, StackRecord, read_record
from plugin.localstack.stack import Stack, stop_recorded
from plugin.localstack.supervisor import Backoff, Supervisor


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakePart:
    """Starts the part as ``command`` and records it, as ``Parts.start`` does; remembers when."""

    def __init__(self, stack: Stack, clock: Clock, command: list[str]) -> None:
        self.stack, self.clock, self.command = stack, clock, command
        self.started: list[float] = []
        self.popens: list[subprocess.Popen[bytes]] = []

    def __call__(self, name: str) -> None:
        popen = subprocess.Popen(self.command, start_new_session=True)
        if self.command[0] == "sh":
            popen.wait(10)  # it crashes at once; wait so that the next tick sees it, whatever the load
        self.popens.append(popen)
        self.started.append(self.clock.now)
        self.stack.add(name, popen, self.stack.plan.layout.log(name), self.command)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    made = Stack(make_plan(tmp_path, env={}), detached=False)
    yield made
    made.stop(quiet=True)


def _run(supervisor: Supervisor, clock: Clock, until: float, step: float = 0.25) -> None:
    while clock.now < until:
        supervisor.tick()
        clock.now += step


def test_a_part_that_crashes_at_once_forever_is_tried_five_times_with_growing_pauses_then_left_stopped(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    start = FakePart(stack, clock, ["sh", "-c", "exit 3"])
    start("worker")
    supervisor = Supervisor(stack, start, clock=clock)

    _run(supervisor, clock, until=600)

    assert len(start.started) == 5  # the first start and four restarts, in ten simulated minutes
    pauses = [b - a for a, b in zip(start.started, start.started[1:], strict=False)]
    assert all(pause >= delay for pause, delay in zip(pauses, [1, 2, 4, 8], strict=True)), pauses
    assert supervisor.left_stopped == {"worker"}
    saved = read_record(stack.plan.layout)
    assert saved is not None
    crashes = saved.crashes["worker"]
    assert [c.restart_in for c in crashes] == [1, 2, 4, 8, None]
    assert all(c.exit_code == 3 for c in crashes) and saved.given_up() == ["worker"]
    err = capsys.readouterr().err
    assert "starting it again in 1 s" in err and "left stopped" in err and "exit code 3" in err


def test_a_crash_older_than_the_window_no_longer_counts(stack: Stack) -> None:
    clock = Clock()
    start = FakePart(stack, clock, ["sleep", "600"])
    start("service")
    supervisor = Supervisor(stack, start, backoff=Backoff(window=60), clock=clock)
    for crash_at in (10, 20, 30, 200, 400):  # three close together, then two far apart
        _run(supervisor, clock, until=crash_at)
        start.popens[-1].kill()
        start.popens[-1].wait(10)
        _run(supervisor, clock, until=crash_at + 30)
    record = stack.record
    assert [c.restart_in for c in record.crashes["service"]] == [1, 2, 4, 1, 1]
    assert stack.record.processes["service"].alive and len(start.started) == 6
    assert not supervisor.left_stopped


def test_the_pause_doubles_up_to_its_longest() -> None:
    backoff = Backoff(first=1, longest=60)
    assert [backoff.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_a_part_that_fails_to_start_again_counts_as_a_crash(stack: Stack) -> None:
    clock = Clock()
    start = FakePart(stack, clock, ["sh", "-c", "exit 1"])
    start("label_studio")

    def cannot_start(name: str) -> None:
        raise OSError("port taken")

    supervisor = Supervisor(stack, cannot_start, clock=clock)
    _run(supervisor, clock, until=100)
    assert [c.restart_in for c in stack.record.crashes["label_studio"]] == [1, 2, 4, 8, None]


def test_a_restart_is_recorded_and_doctor_lists_it(stack: Stack) -> None:
    clock = Clock()
    start = FakePart(stack, clock, ["sleep", "600"])
    start("worker")
    first = stack.record.processes["worker"].pid
    supervisor = Supervisor(stack, start, clock=clock)
    start.popens[-1].kill()
    start.popens[-1].wait(10)
    _run(supervisor, clock, until=5)

    saved = read_record(stack.plan.layout)
    assert saved is not None and saved.processes["worker"].pid != first and saved.processes["worker"].alive
    assert saved.crashes["worker"][0].pid == first
    checks = {c.name: c for c in check_processes(stack.plan.layout, saved)}
    assert checks["processes"].status == "ok"
    assert checks["restarts"].status == "warn" and "worker 1 (last at" in checks["restarts"].detail
    assert "killed by SIGKILL" in checks["restarts"].detail and "restarted" in checks["restarts"].detail
    assert checks["supervisor"].status == "ok"  # this test's process is the foreground `up`


def test_doctor_fails_on_a_part_left_stopped_and_warns_when_nothing_supervises(tmp_path: Path) -> None:
    record = StackRecord(
        home=str(tmp_path),
        processes={"worker": Proc("worker", 2**22 + 1, 1, "w.log", [])},  # no such process
        crashes={
            "worker": [Crash("2026-01-01T00:00:00Z", 7, 1, 1.0), Crash("2026-01-01T00:00:01Z", 8, 1, None)]
        },
    )
    checks = {c.name: c for c in check_processes(Layout(tmp_path), record)}
    assert (
        checks["processes"].status == "fail" and "left stopped after 2 crashes" in checks["processes"].detail
    )
    assert checks["restarts"].status == "fail" and "left stopped" in checks["restarts"].detail
    assert checks["supervisor"].status == "warn"


def test_a_record_without_crashes_or_supervisor_still_reads(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    old = {"version": 1, "home": str(tmp_path), "detached": True, "supervisor": None,
           "processes": {"worker": {"pid": 5, "start": 1, "log": "w", "command": []}}}  # fmt: skip
    layout.state.write_text(json.dumps(old))
    record = read_record(layout)
    assert (
        record is not None and record.crashes == {} and record.supervisor is None and record.given_up() == []
    )
    record.add_crash("worker", Crash("2026-01-01T00:00:00Z", 5, None, 1.0))
    again = StackRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again.crashes == record.crashes and again.processes["worker"].pid == 5


class ClosedPipe(io.TextIOBase):
    """Standard error whose reader is gone."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no file descriptor")


def test_stopping_goes_on_when_nobody_reads_standard_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    popens = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(3)]
    record = StackRecord(
        home=str(tmp_path),
        processes={
            name: Proc.of(name, popen, tmp_path / name, [])
            for name, popen in zip(("s3", "label_studio", "worker"), popens, strict=True)
        },
    )
    monkeypatch.setattr(sys, "stderr", ClosedPipe())
    try:
        assert sorted(stop_recorded(record, quiet=False)) == ["label_studio", "s3", "worker"]
    finally:
        for popen in popens:
            popen.kill()
            popen.wait(5)
    assert all(process_start_time(p.pid) is None for p in popens)


def test_a_process_whose_output_pipe_closed_says_nothing_more_and_exits_cleanly() -> None:
    read, write = os.pipe()
    os.close(read)  # the reader (tee, say) is gone
    code = (
        "from plugin.localstack.processes import say\n"
        "say('first'); say('second')\n"
        "open('/dev/null', 'w').write('done')\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], stderr=write, stdout=write, timeout=60, check=False
        )
    finally:
        os.close(write)
    assert done.returncode == 0  # not 120 ("Exception ignored ... BrokenPipeError" at exit), not a traceback
