"""The home directory: ``--home``, then ``$CUSTOMLABELS_HOME``, then ``./.customlabels``."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugin.localstack.layout import resolve_home


def test_home_is_flag_then_variable_then_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_home(None, {}) == tmp_path / ".customlabels"
    assert resolve_home(None, {"CUSTOMLABELS_HOME": str(tmp_path / "h")}) == tmp_path / "h"
    assert resolve_home(str(tmp_path / "x"), {"CUSTOMLABELS_HOME": "y"}) == tmp_path / "x"
