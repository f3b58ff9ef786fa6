"""The home's private files: the generated-once secrets and Label Studio's settings file."""

from __future__ import annotations

import json
from pathlib import Path

from plugin.localstack.layout import Layout
from plugin.localstack.private_files import (
    LS_ENV_DEFAULTS,
    load_ls_env,
    load_secrets,
    parse_env_file,
    ssrf_allows_loopback,
)


def test_secrets_are_made_once_and_private(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert load_secrets(layout, create=False) is None
    made = load_secrets(layout, create=True)
    assert made is not None
    assert layout.secrets.stat().st_mode & 0o777 == 0o600
    assert 6 <= len(made.token) <= 40 and len(made.webhook_secret) >= 16 and len(made.password) >= 12
    assert load_secrets(layout, create=True) == made
    assert made.password not in repr(made) and made.token not in repr(made)
    assert len(made.api_access_key_id) == 20 and len(made.api_secret_access_key) >= 40
    assert made.api_secret_access_key not in repr(made)


def test_a_home_from_before_the_endpoint_key_pair_gains_one(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    made = load_secrets(layout, create=True)
    assert made is not None
    raw = json.loads(layout.secrets.read_text())
    del raw["api_access_key_id"], raw["api_secret_access_key"]
    layout.secrets.write_text(json.dumps(raw))
    again = load_secrets(layout, create=True)
    assert again is not None and again.token == made.token and again.api_access_key_id.startswith("AKCL")
    assert layout.secrets.stat().st_mode & 0o777 == 0o600 and load_secrets(layout, create=False) == again


def test_label_studio_env_file(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert load_ls_env(layout, create=False) is None
    settings = load_ls_env(layout, create=True)
    assert settings == LS_ENV_DEFAULTS
    assert layout.ls_env.stat().st_mode & 0o777 == 0o600
    assert ssrf_allows_loopback(settings)
    parsed = parse_env_file("# c\n\nexport A=1\nB = 'two words'\nC=\"x\"\nnot a setting\nD=\n")
    assert parsed == {"A": "1", "B": "two words", "C": "x", "D": ""}
    assert not ssrf_allows_loopback({})
    assert not ssrf_allows_loopback({"SSRF_PROTECTION_ENABLED": "true", "USE_DEFAULT_BANNED_SUBNETS": "1"})
    assert ssrf_allows_loopback({"SSRF_PROTECTION_ENABLED": "true", "USE_DEFAULT_BANNED_SUBNETS": "False"})
