"""A Redis server on loopback: whether one answers, its version, and starting a ``redis-server`` of our
own (no persistence) when none does."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import urlparse

from plugin.localstack.errors import ServerStartError, StackError
from plugin.localstack.processes import LOOPBACK, log_tail, port_in_use, stop_group


def redis_available(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING at ``url`` (e.g. ``redis://127.0.0.1:6379/0``)."""
    import redis  # noqa: PLC0415 - keeps this module light to import

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@dataclass
class RedisProcess:
    """A ``redis-server`` we started (no persistence). ``stop()`` ends it."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the server; kill it if it is still there after ``grace`` seconds."""
        stop_group(self.process, grace)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_redis(
    port: int, directory: Path, *, binary: str = "redis-server", timeout: float = 10.0
) -> RedisProcess:
    """Start ``redis-server`` on ``127.0.0.1:port`` without persistence (``--save "" --appendonly no``),
    working in ``directory`` (its log: ``redis.log`` there); waits until it answers PING."""
    if port_in_use(port):
        raise ServerStartError(f"port {port} on {LOOPBACK} is already in use")
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "redis.log"
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        LOOPBACK,
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        str(directory),
        "--logfile",
        str(log_path),
    ]
    try:
        process = subprocess.Popen(
            command,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except FileNotFoundError as error:
        raise ServerStartError(
            f"{binary} not found: install Redis (Debian: apt-get install redis-server)"
        ) from error
    server = RedisProcess(url=f"redis://{LOOPBACK}:{port}/0", port=port, process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    while not redis_available(server.url, timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise ServerStartError(f"redis-server on port {port} did not start:\n{log_tail(log_path)}")
        time.sleep(0.05)
    return server


def redis_port_to_start(url: str) -> int:
    """The loopback port to start a Redis on for ``url``; raises when the URL is not on this machine."""
    parsed = urlparse(url)
    if parsed.scheme != "redis" or parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise StackError(
            f"no Redis answers at {url}, and it is not on this machine's loopback: start it, or unset "
            "CUSTOMLABELS_REDIS_URL to use (or start) one on 127.0.0.1:6379"
        )
    if parsed.password:
        raise StackError(f"no Redis answers at {url} (a password-protected Redis is not started by up)")
    return parsed.port or 6379


def redis_version(url: str) -> str | None:
    """The Redis server's version (None when it does not answer)."""
    import redis  # noqa: PLC0415 - redis-py costs start-up time

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        info = client.info("server")
        return str(info.get("redis_version")) if isinstance(info, dict) else None
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()
