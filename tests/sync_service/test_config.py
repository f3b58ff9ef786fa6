"""Settings come from the environment; a bad one fails at start, naming its variable."""

from __future__ import annotations

import pytest

from plugin.cli import main
from sync_service.config import load_settings
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
