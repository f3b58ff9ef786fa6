"""One S3 client per process (sync_service/edges/s3.py): made once, made again after a fork."""

from __future__ import annotations

import os

import pytest

from sync_service.edges import s3
from tests.builders import service_settings


def test_the_same_settings_share_one_client_and_another_endpoint_gets_its_own() -> None:
    settings = service_settings(s3_endpoint="http://127.0.0.1:1")
    assert s3.client_for(settings) is s3.client_for(settings)
    other = service_settings(s3_endpoint="http://127.0.0.1:2")
    assert s3.client_for(other) is not s3.client_for(settings)
    assert s3.client_for(service_settings(s3_endpoint="http://127.0.0.1:1", s3_region="eu-west-1")) is not (
        s3.client_for(settings)
    )


def test_a_forked_process_makes_its_own_client(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = service_settings(s3_endpoint="http://127.0.0.1:1")
    parent = s3.client_for(settings)
    child_pid = os.getpid() + 1
    monkeypatch.setattr(s3.os, "getpid", lambda: child_pid)  # what a fork changes for the cache
    child = s3.client_for(settings)
    assert child is not parent
    assert s3.client_for(settings) is child
