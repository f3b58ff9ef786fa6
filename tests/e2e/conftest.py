"""Fixtures of the end-to-end tests: ``world``, a running stack (``serve`` + a worker) and a World in it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from plugin.localstack.processes import free_port
from tests.e2e.stack import Stack, World, open_world, stack_env
from tests.realparts import LabelStudioServer


@pytest.fixture
def world(
    label_studio: LabelStudioServer, redis_url: str, s3: Any, bucket: str, tmp_path: Path
) -> Iterator[World]:
    """``customlabels serve`` and one ``customlabels worker`` on the session's Label Studio, Redis and
    S3 (a fresh bucket), and a World to make a project in (deleted after the test)."""
    port = free_port()
    env = stack_env(
        ls_url=label_studio.url, ls_token=label_studio.token, redis_url=redis_url, s3_endpoint=s3.endpoint_url,
        bucket=bucket, CUSTOMLABELS_SERVICE_URL=f"http://127.0.0.1:{port}",
    )  # fmt: skip
    with open_world(label_studio, s3.client, bucket, tmp_path, env, port) as w:
        yield w


StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(
    label_studio: LabelStudioServer, redis_url: str, s3: Any, bucket: str, tmp_path: Path
) -> Iterator[StackFactory]:
    """Starts ``customlabels serve`` and a worker on the session's Label Studio, Redis and S3 (a fresh
    bucket), with extra environment variables given as keyword arguments; stopped after the test."""
    started: list[Stack] = []

    def make(**extra_env: str) -> Stack:
        port = free_port()
        env = stack_env(
            ls_url=label_studio.url, ls_token=label_studio.token, redis_url=redis_url,
            s3_endpoint=s3.endpoint_url, bucket=bucket, CUSTOMLABELS_SERVICE_URL=f"http://127.0.0.1:{port}",
            **extra_env,
        )  # fmt: skip
        stack = Stack(env=env, workdir=tmp_path, port=port)
        started.append(stack)
        stack.start_serve()
        stack.start_worker()
        return stack

    try:
        yield make
    finally:
        for stack in started:
            stack.stop()
