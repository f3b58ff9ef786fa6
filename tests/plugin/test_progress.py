"""The counted progress display: a throttled, redrawn bar on a terminal; plain lines, at most one every
few seconds, elsewhere; nothing with ``enabled=False``. Time comes from an injected clock."""

from __future__ import annotations

import io
import time

import pytest

from plugin.progress import ItemProgress, Progress


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    """A StringIO that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def redraws(text: str) -> list[str]:
    """The bars drawn (each starts with a carriage return and an erase-line)."""
    return [part.split("\n")[0] for part in text.split("\r\x1b[2K")[1:] if part.split("\n")[0]]


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_plain_lines_at_most_every_few_seconds_plus_start_and_end() -> None:
    clock, out = Clock(), io.StringIO()
    progress = ItemProgress(stream=out, clock=clock, line_seconds=5.0)
    assert not progress.tty  # a StringIO is no terminal
    progress("uploading images", 0, 5000)
    for done in range(1, 5001):
        clock.now = 100.0 + done / 250  # 250 images a second: 20 s in all
        progress("uploading images", done, 5000)
    progress.finish()
    got = lines(out.getvalue())
    assert got[0] == "customlabels: uploading images 0/5,000 (0%)"
    # One line every 5 s of the 20 s, not one per image.
    assert got[1:4] == [
        "customlabels: uploading images 1,250/5,000 (25%, 250/s, ETA 15 s)",
        "customlabels: uploading images 2,500/5,000 (50%, 250/s, ETA 10 s)",
        "customlabels: uploading images 3,750/5,000 (75%, 250/s, ETA 5 s)",
    ]
    assert got[4:] == ["customlabels: uploading images 5,000/5,000 in 20 s"]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_a_new_stage_ends_the_one_before_with_its_final_line() -> None:
    clock, out = Clock(), io.StringIO()
    progress = ItemProgress(stream=out, clock=clock)
    progress("listing s3://b/photos/", 0, None)
    for found in range(1, 301):
        clock.now += 0.01
        progress("listing s3://b/photos/", found, None)
    progress("publishing the manifests", 0, None)
    clock.now += 2
    progress.finish("all done")
    assert lines(out.getvalue()) == [
        "customlabels: listing s3://b/photos/",
        "customlabels: listing s3://b/photos/ 300 in 3 s",
        "customlabels: publishing the manifests",
        "customlabels: publishing the manifests: done in 2 s",
        "customlabels: all done",
    ]


def test_terminal_redraws_one_line_throttled_and_keeps_each_stage_end() -> None:
    clock, out = Clock(), FakeTerminal()
    progress = ItemProgress(stream=out, clock=clock, redraw_seconds=0.25)
    assert progress.tty
    progress("importing tasks into Label Studio", 0, 1000)
    for done in range(1, 1001):
        clock.now += 0.01  # 10 s in all: at most 4 redraws a second
        progress("importing tasks into Label Studio", done, 1000)
    drawn = redraws(out.getvalue())
    assert 35 <= len(drawn) <= 45  # not 1,001
    assert drawn[0] == "[--------------------] importing tasks into Label Studio  0/1,000  0%  0 s"
    middle = drawn[len(drawn) // 2]
    assert middle.startswith("[##########----------] importing tasks into Label Studio  5")
    assert "100/s" in middle and "ETA 5 s" in middle
    assert drawn[-1].startswith("[####################] importing tasks into Label Studio  1,000/1,000  100%")
    assert "\n" not in out.getvalue()  # a bar only, no line yet
    progress.finish()
    text = out.getvalue()
    assert text.endswith("\r\x1b[2Kcustomlabels: importing tasks into Label Studio 1,000/1,000 in 10 s\n")


def test_note_prints_above_the_bar_and_redraws_it() -> None:
    clock, out = Clock(), FakeTerminal()
    progress = ItemProgress(stream=out, clock=clock)
    progress("uploading images", 3, 10)
    progress.note("skipped a.gif: not an image")
    assert out.getvalue().endswith(
        "\r\x1b[2Kcustomlabels: skipped a.gif: not an image\n"
        "\r\x1b[2K[######--------------] uploading images  3/10  30%  0 s"
    )


def test_close_clears_the_bar_and_prints_no_end_line() -> None:
    out = FakeTerminal()
    progress = ItemProgress(stream=out, clock=Clock())
    progress("uploading images", 1, 10)
    progress.close()
    assert out.getvalue().endswith("\r\x1b[2K")
    assert "\n" not in out.getvalue()


def test_forced_plain_lines_on_a_terminal_and_silence_when_disabled() -> None:
    out = FakeTerminal()
    progress = ItemProgress(stream=out, tty=False, clock=Clock())  # --json: lines even on a terminal
    progress("copying files", 1, 4)
    progress.finish()
    assert lines(out.getvalue()) == [
        "customlabels: copying files 1/4 (25%)",
        "customlabels: copying files 1/4 in 0 s",
    ]
    quiet = FakeTerminal()
    progress = ItemProgress(stream=quiet, enabled=False, clock=Clock())  # --quiet
    progress("copying files", 1, 4)
    progress.note("a note")
    progress.finish("done")
    assert quiet.getvalue() == ""


def test_detail_and_unknown_totals_read_well() -> None:
    clock, out = Clock(), io.StringIO()
    progress = ItemProgress(stream=out, clock=clock, line_seconds=5.0)
    progress("waiting for a worker to publish", 0, None, detail="3 pending events")
    clock.now += 6
    progress("waiting for a worker to publish", 0, None, detail="1 pending events")
    assert lines(out.getvalue()) == [
        "customlabels: waiting for a worker to publish (3 pending events)",
        "customlabels: waiting for a worker to publish (1 pending events, 6 s)",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0 s"), (59, "59 s"), (61, "1 min 01 s"), (3725, "1 h 02 min")]
)
def test_long_times_are_in_minutes_and_hours(seconds: float, text: str) -> None:
    clock, out = Clock(), io.StringIO()
    progress = ItemProgress(stream=out, clock=clock)
    progress("work", 1, 2)
    clock.now += seconds
    progress.finish()
    assert lines(out.getvalue())[-1] == f"customlabels: work 1/2 in {text}"


def test_a_closed_stream_never_breaks_the_command() -> None:
    out = io.StringIO()
    out.close()
    progress = ItemProgress(stream=out, tty=False, clock=Clock())
    progress("work", 1, 2)  # ValueError from the closed stream is swallowed
    progress.finish()


def test_a_slow_step_on_a_terminal_is_redrawn_as_its_seconds_pass() -> None:
    clock, out = Clock(), FakeTerminal()
    progress = ItemProgress(stream=out, clock=clock, redraw_seconds=0.02)
    progress("publishing the manifests", 0, None)
    assert redraws(out.getvalue()) == ["publishing the manifests  0 s"]
    time.sleep(0.1)
    assert redraws(out.getvalue()) == ["publishing the manifests  0 s"]  # nothing changed: no redraw
    clock.now += 3  # no call: the thread redraws
    deadline = time.monotonic() + 5
    while redraws(out.getvalue())[-1] != "publishing the manifests  3 s" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert redraws(out.getvalue()) == ["publishing the manifests  0 s", "publishing the manifests  3 s"]
    progress.finish()
    assert out.getvalue().endswith("\r\x1b[2Kcustomlabels: publishing the manifests: done in 3 s\n")
    clock.now += 5
    time.sleep(0.1)  # the thread has stopped: nothing after the end line
    assert out.getvalue().endswith("done in 3 s\n")


def test_progress_prints_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(3, stream=out)
    progress.step("one")
    progress.note("a note")
    progress.step("two")
    progress.finish("ready")
    assert out.getvalue() == (
        "customlabels: [1/3] one\ncustomlabels: a note\ncustomlabels: [2/3] two\ncustomlabels: ready\n"
    )


def test_progress_draws_a_bar_on_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(4, stream=out, tty=True)
    progress.step("starting")
    progress.step("waiting")
    assert progress.render(now=progress.step_started + 3).startswith(
        "[#####---------------] 2/4  waiting  3 s"
    )
    with progress.paused():
        progress.note("from pip")
    progress.finish()
    text = out.getvalue()
    assert "\r\x1b[2K[" in text and "customlabels: from pip\n" in text and text.endswith("s\n")
    assert Progress(2, stream=io.StringIO(), enabled=False).tty is False
