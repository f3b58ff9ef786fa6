"""What the jobs' tests share: the service's settings, Redis and S3 (moto's server) of a test's own."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from redis import Redis

from sync_service.config import Settings
from sync_service.edges.s3 import Storage, client_for
from tests import realparts
from tests.builders import service_settings


@dataclass
class ServiceParts:
    """Settings for the real Redis and S3 of a test (nothing answers at Label Studio's URL)."""

    settings: Settings
    redis: Redis
    storage: Storage


@pytest.fixture
def service_parts(
    redis_url: str, s3: realparts.S3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> ServiceParts:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    settings = service_settings(
        redis_url=redis_url, s3_endpoint=s3.endpoint_url, s3_region=s3.region, bucket=bucket
    )
    redis = Redis.from_url(redis_url)
    return ServiceParts(settings, redis, Storage(client_for(settings), bucket))
