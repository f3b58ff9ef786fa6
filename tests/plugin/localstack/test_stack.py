"""The stack's processes: the environment the service and its worker get."""

from __future__ import annotations

from pathlib import Path

from plugin.localstack.plan import make_plan
from plugin.localstack.private_files import Secrets
from plugin.localstack.stack import service_env
from sync_service.config import load_settings


def test_service_env_names_every_part_and_keeps_no_foreign_aws_credentials(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, ls_port=18080, service_port=15000, s3_port=19000, env={})
    secrets_ = Secrets("a@b.c", "pw", "t" * 40, "w" * 32)
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
    external = make_plan(tmp_path, env={"CUSTOMLABELS_S3_ENDPOINT": "http://minio:9000"})
    assert service_env(external, secrets_, base)["AWS_PROFILE"] == "prod"
