"""Settings come from the environment; a bad one fails at start, naming its variable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values
from redis import Redis

from plugin.cli import main
from sync_service import config
from sync_service.config import DEFAULTS, Settings, Variable, declarations, load_settings
from sync_service.domain.context import make_context
from sync_service.errors import ConfigError

GOOD = {
    "CUSTOMLABELS_LS_API_KEY": "token",
    "CUSTOMLABELS_BUCKET": "my-bucket",
    "CUSTOMLABELS_WEBHOOK_SECRET": "s" * 32,
}


def test_defaults_are_documented_values() -> None:
    s = load_settings(GOOD)
    assert s.ls_url == "http://127.0.0.1:8080"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.s3_endpoint is None  # empty means AWS
    assert s.prefix == "customlabels"
    assert s.debounce_seconds == 0.25
    assert s.ls_export_concurrency == 2
    assert s.worker_nice == 10
    assert s.manifest_memory_mib == 128
    assert load_settings({**GOOD, "CUSTOMLABELS_WORKER_NICE": "0"}).worker_nice == 0
    assert load_settings({**GOOD, "CUSTOMLABELS_LS_EXPORT_CONCURRENCY": "4"}).ls_export_concurrency == 4


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"CUSTOMLABELS_LS_API_KEY": ""}, "CUSTOMLABELS_LS_API_KEY"),
        ({"CUSTOMLABELS_BUCKET": "Bad_Bucket"}, "CUSTOMLABELS_BUCKET"),
        ({"CUSTOMLABELS_WEBHOOK_SECRET": "short"}, "CUSTOMLABELS_WEBHOOK_SECRET"),
        ({"CUSTOMLABELS_LS_URL": "localhost:8080"}, "CUSTOMLABELS_LS_URL"),
        ({"CUSTOMLABELS_REDIS_URL": "http://x"}, "CUSTOMLABELS_REDIS_URL"),
        ({"CUSTOMLABELS_S3_ENDPOINT": "not a url"}, "CUSTOMLABELS_S3_ENDPOINT"),
        ({"CUSTOMLABELS_DEBOUNCE_SECONDS": "soon"}, "CUSTOMLABELS_DEBOUNCE_SECONDS"),
        ({"CUSTOMLABELS_LS_EXPORT_CONCURRENCY": "0"}, "CUSTOMLABELS_LS_EXPORT_CONCURRENCY"),
        ({"CUSTOMLABELS_LS_EXPORT_CONCURRENCY": "2.5"}, "CUSTOMLABELS_LS_EXPORT_CONCURRENCY"),
        ({"CUSTOMLABELS_WORKER_NICE": "20"}, "CUSTOMLABELS_WORKER_NICE"),
        ({"CUSTOMLABELS_WORKER_NICE": "-5"}, "CUSTOMLABELS_WORKER_NICE"),
        ({"CUSTOMLABELS_MANIFEST_MEMORY_MIB": "-1"}, "CUSTOMLABELS_MANIFEST_MEMORY_MIB"),
        ({"CUSTOMLABELS_PREFIX": "a/../b"}, "CUSTOMLABELS_PREFIX"),
        ({"CUSTOMLABELS_API_ACCESS_KEY_ID": "AKID"}, "CUSTOMLABELS_API_SECRET_ACCESS_KEY"),
        ({"CUSTOMLABELS_API_SECRET_ACCESS_KEY": "s" * 40}, "CUSTOMLABELS_API_ACCESS_KEY_ID"),
        (
            {"CUSTOMLABELS_API_ACCESS_KEY_ID": "AKID", "CUSTOMLABELS_API_SECRET_ACCESS_KEY": "short"},
            "CUSTOMLABELS_API_SECRET_ACCESS_KEY",
        ),
        (
            {"CUSTOMLABELS_API_ACCESS_KEY_ID": "AK/ID", "CUSTOMLABELS_API_SECRET_ACCESS_KEY": "s" * 40},
            "CUSTOMLABELS_API_ACCESS_KEY_ID",
        ),
        ({"CUSTOMLABELS_API_ACCOUNT_ID": "12345"}, "CUSTOMLABELS_API_ACCOUNT_ID"),
    ],
)
def test_a_bad_setting_names_its_variable(change: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({**GOOD, **change})
    assert info.value.variable == variable
    assert str(info.value).startswith(variable)


def test_the_rekognition_endpoint_is_off_unless_both_keys_are_set() -> None:
    s = load_settings(GOOD)
    assert (s.api_access_key_id, s.api_secret_access_key, s.api_account_id) == (None, None, "123456789012")
    keyed = {"CUSTOMLABELS_API_ACCESS_KEY_ID": "AKID", "CUSTOMLABELS_API_SECRET_ACCESS_KEY": "k" * 40}
    s = load_settings({**GOOD, **keyed, "CUSTOMLABELS_API_ACCOUNT_ID": "111122223333"})
    assert (s.api_access_key_id, s.api_secret_access_key, s.api_account_id) == (
        "AKID",
        "k" * 40,
        "111122223333",
    )


def test_secrets_stay_out_of_the_repr() -> None:
    s = load_settings(
        {
            **GOOD,
            "CUSTOMLABELS_REDIS_URL": "redis://:hunter2@127.0.0.1:6379/0",
            "CUSTOMLABELS_API_ACCESS_KEY_ID": "AKID",
            "CUSTOMLABELS_API_SECRET_ACCESS_KEY": "k" * 40,
        }
    )
    text = repr(s)
    assert "k" * 40 not in text
    assert "hunter2" not in text
    assert "token" not in text
    assert "s" * 32 not in text


def test_the_command_exits_2_naming_the_missing_setting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in GOOD:
        monkeypatch.delenv(name, raising=False)
    assert main(["worker"]) == 2
    assert "CUSTOMLABELS_" in capsys.readouterr().err


# --- one declaration per setting: the docs, the examples and the local stack's defaults follow it --------

ROOT = Path(__file__).resolve().parents[2]


def _shown_default(setting: Field[Any], variable: Variable) -> str:
    if variable.shown:
        return variable.shown
    if setting.default is MISSING:
        return "(required)"
    value = setting.default
    return f"``{value:g}``" if isinstance(value, float) else f"``{value}``"


def declared_table() -> str:
    """The settings table as the declarations say it, in the docstring's reST quoting."""
    rows = [
        f"| ``{variable.name}`` | {_shown_default(setting, variable)} | {variable.meaning} |"
        for setting, variable in declarations()
    ]
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows])


def test_the_module_docstring_table_is_the_declarations() -> None:
    assert config.__doc__ is not None
    assert declared_table() in config.__doc__


def test_the_readme_table_is_the_declarations() -> None:
    readme = (ROOT / "README.md").read_text()
    assert declared_table().replace("``", "`") in readme


def test_every_variable_is_declared_once_and_every_field_has_one() -> None:
    declared = list(declarations())
    assert [s.name for s, _ in declared] == [f.name for f in fields(Settings)]
    names = [v.name for _, v in declared]
    assert len(set(names)) == len(names) == 23
    assert all(name.startswith("CUSTOMLABELS_") for name in names)


def _value_as_read(variable: Variable, raw: str) -> Any:
    base = {**GOOD, variable.name: raw}
    setting = next(s for s, v in declarations() if v is variable)
    return getattr(load_settings(base), setting.name)


def test_the_docker_env_example_agrees_with_the_declarations() -> None:
    example = dotenv_values(ROOT / "docker" / ".env.example")
    ours = {k: v or "" for k, v in example.items() if k.startswith("CUSTOMLABELS_")}
    declared = {v.name: (s, v) for s, v in declarations()}
    assert set(ours) <= set(declared), "docker/.env.example sets a variable the config does not declare"
    for name, raw in ours.items():
        setting, variable = declared[name]
        if setting.default is not MISSING:
            assert _value_as_read(variable, raw) == setting.default, name
        elif variable.example is not None:
            assert raw == variable.example, name
    assert "CUSTOMLABELS_BUCKET" in ours and "CUSTOMLABELS_WEBHOOK_SECRET" in ours


def test_the_compose_file_falls_back_to_the_declared_defaults() -> None:
    text = (ROOT / "docker" / "docker-compose.yml").read_text()
    fallbacks = re.findall(r"\$\{(CUSTOMLABELS_[A-Z0-9_]+):-([^}]*)\}", text)
    assert fallbacks
    declared = {v.name: (s, v) for s, v in declarations()}
    for name, raw in fallbacks:
        setting, variable = declared[name]
        want = variable.example if setting.default is MISSING else setting.default
        assert _value_as_read(variable, raw) == want, name


def test_the_defaults_the_local_stack_builds_on_are_the_declared_ones() -> None:
    s = load_settings(GOOD)
    assert (DEFAULTS.ls_url, DEFAULTS.service_url, DEFAULTS.redis_url) == (
        s.ls_url,
        s.service_url,
        s.redis_url,
    )
    assert (DEFAULTS.s3_region, DEFAULTS.prefix) == (s.s3_region, s.prefix)
    assert DEFAULTS.bucket == "customlabels"  # the bucket the local stack makes; the service has none
    assert (DEFAULTS.ls_port, DEFAULTS.service_port) == (8080, 5000)


def test_settings_made_in_code_take_the_same_defaults_as_read_ones() -> None:
    made = Settings(ls_api_key="token", bucket="my-bucket", webhook_secret="s" * 32)
    assert made == load_settings(GOOD)


def test_a_blank_value_is_unset_but_a_blank_prefix_means_none() -> None:
    blank = {name: "  " for name in ("CUSTOMLABELS_LS_URL", "CUSTOMLABELS_S3_ENDPOINT", "CUSTOMLABELS_QUEUE")}
    s = load_settings({**GOOD, **blank, "CUSTOMLABELS_DEBOUNCE_SECONDS": "", "CUSTOMLABELS_PREFIX": " "})
    assert (s.ls_url, s.s3_endpoint, s.queue, s.debounce_seconds) == (
        "http://127.0.0.1:8080",
        None,
        "customlabels",
        0.25,
    )
    assert s.prefix == ""
    assert load_settings({**GOOD, "CUSTOMLABELS_PREFIX": "/a/b/"}).prefix == "a/b"
    assert load_settings({**GOOD, "CUSTOMLABELS_LS_URL": " http://ls:8080/ "}).ls_url == "http://ls:8080"


def test_only_the_given_mapping_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """environs reads ``os.environ`` first; ``load_settings(env)`` must not (tests and tools pass dicts)."""
    monkeypatch.setenv("CUSTOMLABELS_QUEUE", "from-the-process")
    monkeypatch.setenv("CUSTOMLABELS_LS_API_KEY", "from-the-process")
    assert load_settings(GOOD).queue == "customlabels"
    with pytest.raises(ConfigError, match="CUSTOMLABELS_LS_API_KEY"):
        load_settings({k: v for k, v in GOOD.items() if k != "CUSTOMLABELS_LS_API_KEY"})
    monkeypatch.setenv("CUSTOMLABELS_BUCKET", "my-bucket")
    monkeypatch.setenv("CUSTOMLABELS_WEBHOOK_SECRET", "s" * 32)
    assert load_settings().queue == "from-the-process"  # no mapping: the process environment


def test_a_bad_secret_is_named_but_never_quoted() -> None:
    secret = "x" * 15  # one short of the minimum
    for name in ("CUSTOMLABELS_WEBHOOK_SECRET", "CUSTOMLABELS_API_SECRET_ACCESS_KEY"):
        change = {name: secret, "CUSTOMLABELS_API_ACCESS_KEY_ID": "AKID"}
        with pytest.raises(ConfigError) as info:
            load_settings({**GOOD, **change})
        assert info.value.variable == name and secret not in str(info.value)


def test_importing_the_settings_costs_no_environs_or_marshmallow() -> None:
    """Every ``customlabels`` command imports the config; environs comes in only when settings are read."""
    probe = (
        "import sys, sync_service.config as c; "
        "assert not {'environs', 'marshmallow'} & set(sys.modules), 'imported at start'"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_every_wrong_setting_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"CUSTOMLABELS_DEBOUNCE_SECONDS": "soon"})
    text = str(refused.value)
    for name in (
        "CUSTOMLABELS_LS_API_KEY",
        "CUSTOMLABELS_BUCKET",
        "CUSTOMLABELS_WEBHOOK_SECRET",
        "CUSTOMLABELS_DEBOUNCE_SECONDS",
    ):
        assert name in text
    assert refused.value.variable == "CUSTOMLABELS_LS_API_KEY"  # the first, in declaration order


def test_the_worker_keeps_as_many_manifest_bytes_as_set() -> None:
    settings = load_settings({**GOOD, "CUSTOMLABELS_MANIFEST_MEMORY_MIB": "64"})
    context = make_context(settings, redis=Redis())  # nothing is contacted until used
    assert context.storage.recent_bytes == 64 * 1024 * 1024
