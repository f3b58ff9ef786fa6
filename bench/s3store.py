"""moto's S3 server as a process of its own, for the benchmarks: not a thread of the benchmark's process,
whose interpreter lock it would share with the load it measures (a real deployment's S3 is elsewhere)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from plugin.localstack.http_calls import http_get
from plugin.localstack.processes import free_port


@dataclass(frozen=True)
class MotoProcess:
    """A running moto server: its endpoint and process id."""

    url: str
    pid: int


@contextlib.contextmanager
def moto_process() -> Iterator[MotoProcess]:
    """moto's S3 server on a free 127.0.0.1 port, stopped after the block."""
    port = free_port()
    # Objects held in memory, as S3's own copies do not pass through a disk of ours: by default moto
    # spools every object over 5 MiB to a temporary file and reads it back for each part copy.
    env = {**os.environ, "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(4 << 30)}
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                http_get(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"bench: moto_server on {url} did not start") from None
                time.sleep(0.1)
        yield MotoProcess(url, server.pid)
    finally:
        server.terminate()
        server.wait(10)
