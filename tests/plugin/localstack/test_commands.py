"""``up`` and ``down`` on the command line: refusing a taken port, stopping only what was recorded."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from plugin.cli import main
from plugin.localstack.layout import Layout
from plugin.localstack.processes import Proc, free_port
from plugin.localstack.record import StackRecord, write_record


def test_up_refuses_a_taken_port_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        code = main(["up", "--home", str(home), "--json", "--port", str(port), "--ls-port",
                     str(free_port()), "--s3-port", str(free_port())])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out)["status"] == "error" and f"port {port}" in err and "--port N" in err
    assert not (home / "state.json").exists() and not (home / "secrets.json").exists()


def test_down_stops_only_what_the_state_file_names(
    sleeper: subprocess.Popen[bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)  # e.g. a Redis we found running
    try:
        layout = Layout(tmp_path)
        state = StackRecord(
            home=str(tmp_path), processes={"worker": Proc.of("worker", sleeper, tmp_path / "w", [])}
        )
        write_record(layout, state)
        assert layout.state.stat().st_mode & 0o777 == 0o600
        assert main(["down", "--home", str(tmp_path), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["stopped"] == ["worker"]
        assert sleeper.wait(5) is not None and other.poll() is None
        assert not layout.state.exists()
        assert main(["down", "--home", str(tmp_path), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {
            "status": "nothing is running from this home", "stopped": [], "home": str(tmp_path)
        }  # fmt: skip
    finally:
        other.kill()
        other.wait(5)
