"""What the tests of the command line share: the bundled samples, files of JSON, running ``main``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plugin.cli import main

SAMPLES = Path(__file__).resolve().parents[3] / "plugin" / "samples"


def write_json(path: Path, obj: Any) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def write_lines(path: Path, objs: list[Any]) -> str:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return str(path)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def parsed(out: str) -> Any:
    """The whole of standard output as one JSON document (fails on anything else there)."""
    return json.loads(out)
