"""The plan: ports from flags, variables or defaults, and the port a running program holds."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from plugin.localstack.errors import StackError
from plugin.localstack.plan import make_plan, taken_ports
from plugin.localstack.processes import free_port


def test_plan_defaults_env_and_flags(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, env={})
    assert (plan.ls_port, plan.service_port, plan.s3_port) == (8080, 5000, 9000)
    assert plan.ls_url == "http://127.0.0.1:8080" and plan.service_url == "http://127.0.0.1:5000"
    assert plan.embedded_s3 and plan.s3_endpoint == "http://127.0.0.1:9000"
    assert plan.redis_url == "redis://127.0.0.1:6379/0" and plan.bucket == "customlabels"
    env = {"CUSTOMLABELS_LS_PORT": "18080", "CUSTOMLABELS_PORT": "15000", "CUSTOMLABELS_S3_PORT": "19000"}
    plan = make_plan(tmp_path, ls_port=28080, env=env)
    assert (plan.ls_port, plan.service_port, plan.s3_port) == (28080, 15000, 19000)
    with pytest.raises(StackError, match="three different ports"):
        make_plan(tmp_path, ls_port=5000, env={})
    with pytest.raises(StackError, match="CUSTOMLABELS_S3_PORT"):
        make_plan(tmp_path, env={"CUSTOMLABELS_S3_PORT": "nine"})
    external = make_plan(tmp_path, env={"CUSTOMLABELS_S3_ENDPOINT": "http://minio:9000/"})
    assert not external.embedded_s3 and external.s3_endpoint == "http://minio:9000"
    assert make_plan(tmp_path, s3_port=5000, env={"CUSTOMLABELS_S3_ENDPOINT": "http://m:1"}).s3_port == 5000
    assert make_plan(tmp_path, env={}).ls_workers == 2
    assert make_plan(tmp_path, env={"CUSTOMLABELS_LS_WORKERS": "0"}).ls_workers == 0
    with pytest.raises(StackError, match="CUSTOMLABELS_LS_WORKERS"):
        make_plan(tmp_path, env={"CUSTOMLABELS_LS_WORKERS": "many"})
    with pytest.raises(StackError, match="CUSTOMLABELS_LS_WORKERS"):
        make_plan(tmp_path, env={"CUSTOMLABELS_LS_WORKERS": "-1"})


def test_a_taken_port_is_named_with_the_flag_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        plan = make_plan(tmp_path, ls_port=port, service_port=free_port(), env={})
        (problem,) = [p for p in taken_ports(plan) if str(port) in p]
        assert "--ls-port" in problem and "CUSTOMLABELS_LS_PORT" in problem
