"""The sync service and its worker as real processes (``customlabels serve`` / ``customlabels worker``)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from plugin import services

CUSTOMLABELS = str(Path(sys.executable).with_name("customlabels"))
SECRET = "e2e-webhook-secret-0123456789abcdef"


def jpeg(
    width: int, height: int, *, orientation: int = 1, color: tuple[int, int, int] = (200, 80, 40)
) -> bytes:
    """A JPEG of ``width`` x ``height`` stored pixels, with an EXIF orientation tag unless it is 1."""
    image = Image.new("RGB", (width, height), color)
    buffer = io.BytesIO()
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(buffer, "JPEG", exif=exif.tobytes())
    else:
        image.save(buffer, "JPEG")
    return buffer.getvalue()


@dataclass
class Stack:
    """``serve`` and ``worker`` processes sharing one environment; logs under ``workdir``."""

    env: dict[str, str]
    workdir: Path
    port: int
    serve: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        out = open(self.workdir / log, "ab")  # noqa: SIM115 (the process owns it)
        return subprocess.Popen(
            [CUSTOMLABELS, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start_serve(self) -> None:
        """Start the service and wait until it answers /healthz."""
        self.serve = self._spawn("serve", "--port", str(self.port), "--workers", "1", log="serve.log")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.serve.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"the service did not start:\n{services.log_tail(self.workdir / 'serve.log')}")

    def start_worker(self) -> None:
        """Start one worker process."""
        self.workers.append(self._spawn("worker", log="worker.log"))

    def kill_workers(self) -> None:
        """Stop every worker at once (SIGKILL: as if the machine lost it)."""
        for process in self.workers:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        self.workers.clear()

    def stop(self) -> None:
        """Stop everything this stack started."""
        for process in [*self.workers, *([self.serve] if self.serve else [])]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
        self.workers.clear()
        self.serve = None

    def logs(self) -> str:
        """The tails of the service's and the worker's logs (for failure messages)."""
        return "\n".join(
            f"--- {name}\n{services.log_tail(self.workdir / name, 60)}"
            for name in ("serve.log", "worker.log")
            if (self.workdir / name).exists()
        )


def stack_env(
    *, ls_url: str, ls_token: str, redis_url: str, s3_endpoint: str, bucket: str, **extra: Any
) -> dict[str, str]:
    """The environment of ``serve`` and ``worker`` for these parts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMLABELS_", "AWS_", "LABEL_STUDIO"))}
    env.update(
        CUSTOMLABELS_LS_URL=ls_url,
        CUSTOMLABELS_LS_API_KEY=ls_token,
        CUSTOMLABELS_REDIS_URL=redis_url,
        CUSTOMLABELS_S3_ENDPOINT=s3_endpoint,
        CUSTOMLABELS_BUCKET=bucket,
        CUSTOMLABELS_PREFIX="customlabels",
        CUSTOMLABELS_WEBHOOK_SECRET=SECRET,
        CUSTOMLABELS_DEBOUNCE_SECONDS="0.2",
        CUSTOMLABELS_RECONCILE_SECONDS="3600",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env
