"""The stack's processes: the environment the service and its worker get."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plugin.localstack.plan import make_plan
from plugin.localstack.private_files import Secrets
from plugin.localstack.record import StackRecord
from plugin.localstack.stack import print_summary, service_env, summary
from sync_service.config import load_settings


def test_service_env_names_every_part_and_keeps_no_foreign_aws_credentials(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, ls_port=18080, service_port=15000, s3_port=19000, env={})
    secrets_ = Secrets("a@b.c", "pw", "t" * 40, "w" * 32, "AKCLTEST", "k" * 40)
    base = {
        "PATH": "/bin",
        "AWS_PROFILE": "prod",
        "AWS_SECRET_ACCESS_KEY": "real",
        "CUSTOMLABELS_DEBOUNCE_SECONDS": "0.5",
        "CUSTOMLABELS_LS_URL": "http://elsewhere:1",
        "CUSTOMLABELS_HOME": "/x",
    }
    env = service_env(plan, secrets_, base)
    assert "AWS_PROFILE" not in env and env["AWS_SECRET_ACCESS_KEY"] == "S3RVER"
    assert "CUSTOMLABELS_HOME" not in env
    settings = load_settings(env)
    assert settings.ls_url == "http://127.0.0.1:18080" and settings.ls_api_key == "t" * 40
    assert (
        settings.service_url == "http://127.0.0.1:15000" and settings.s3_endpoint == "http://127.0.0.1:19000"
    )
    assert settings.webhook_secret == "w" * 32 and settings.debounce_seconds == 0.5
    assert (settings.api_access_key_id, settings.api_secret_access_key) == ("AKCLTEST", "k" * 40)
    external = make_plan(tmp_path, env={"CUSTOMLABELS_S3_ENDPOINT": "http://minio:9000"})
    assert service_env(external, secrets_, base)["AWS_PROFILE"] == "prod"


def test_up_prints_the_endpoint_key_pair_beside_the_s3_key_and_no_redis_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets_ = Secrets("a@b.c", "pw", "t" * 40, "w" * 32, "AKCLTEST", "k" * 40)
    record = StackRecord(
        home=str(tmp_path), urls={"label_studio": "http://127.0.0.1:8080", "service": "http://127.0.0.1:5000",
        "s3": "http://127.0.0.1:9000", "redis": "redis://:hunter2-secret@127.0.0.1:6379/3"},
        bucket="customlabels", prefix="customlabels", s3_embedded=True, redis_started=False,
    )  # fmt: skip
    info = summary(record, secrets_, status="started")
    print_summary(info)
    out = capsys.readouterr().out
    assert "hunter2-secret" not in out and "hunter2-secret" not in json.dumps(info)
    assert "redis://:***@127.0.0.1:6379/3" in out
    assert "AKCLTEST" in out and "k" * 40 in out
    assert info["service"]["api_access_key_id"] == "AKCLTEST"
