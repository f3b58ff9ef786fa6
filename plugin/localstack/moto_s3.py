"""moto's S3-compatible server in a thread of this process: the S3 endpoint of the tests and benches
(``up`` runs the s3rver store instead, which keeps its objects in files)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Self

from plugin.localstack.errors import ServerStartError
from plugin.localstack.http_calls import http_get
from plugin.localstack.processes import LOOPBACK, free_port, port_in_use


@dataclass
class S3Server:
    """A moto S3 endpoint running in a thread of this process. Credentials: anything (e.g. "testing")."""

    endpoint_url: str
    port: int
    server: Any = field(repr=False)

    def stop(self) -> None:
        """Stop the server thread."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_s3_server(port: int | None = None, *, timeout: float = 10.0) -> S3Server:
    """Start moto's S3-compatible server (``ThreadedMotoServer``) on ``127.0.0.1:port`` (a free port
    when None). Its state lives in this process's memory and is shared by all servers of the process.
    Needs ``moto[server]``.
    """
    try:
        from moto.server import ThreadedMotoServer  # noqa: PLC0415 - optional, only for a local S3
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ServerStartError(
            "a local S3 endpoint needs moto's server: pip install 'moto[server]'"
        ) from error
    port = port if port is not None else free_port()
    if port_in_use(port):
        raise ServerStartError(f"port {port} on {LOOPBACK} is already in use")
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    url = f"http://{LOOPBACK}:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            http_get(f"{url}/moto-api/", timeout=1)
            break
        except OSError as error:
            if time.monotonic() > deadline:
                server.stop()
                raise ServerStartError(f"moto server on {url} did not answer: {error}") from error
            time.sleep(0.05)
    return S3Server(endpoint_url=url, port=port, server=server)
