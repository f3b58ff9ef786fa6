"""The plan of one stack: where each part listens (ports from flags, ``CUSTOMLABELS_*`` variables or the
defaults), which S3 endpoint, bucket and Redis database it uses, and how many Label Studio processes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin.localstack.errors import StackError
from plugin.localstack.label_studio import DEFAULT_LS_VERSION
from plugin.localstack.layout import Layout
from plugin.localstack.processes import LOOPBACK, port_in_use
from sync_service.config import DEFAULTS

DEFAULT_S3_PORT = 9000
S3STORE_KEY = "S3RVER"
"""s3rver's one key pair (access key and secret are both this); the store listens on loopback only."""
DEFAULT_LS_WORKERS = 2
"""Label Studio's gunicorn processes under ``up`` (``CUSTOMLABELS_LS_WORKERS``; 0 runs its development
server): two let an annotator's save and the worker's reads run at once, on two cores (~270 MB each)."""
MAX_LS_WORKERS = 16


@dataclass(frozen=True)
class Plan:
    """Where each part of the stack listens and keeps its data."""

    layout: Layout
    ls_port: int = DEFAULTS.ls_port
    service_port: int = DEFAULTS.service_port
    s3_port: int = DEFAULT_S3_PORT
    redis_url: str = DEFAULTS.redis_url
    external_s3: str | None = None
    bucket: str = DEFAULTS.bucket
    prefix: str = DEFAULTS.prefix
    region: str = DEFAULTS.s3_region
    ls_version: str = DEFAULT_LS_VERSION
    ls_workers: int = DEFAULT_LS_WORKERS

    @property
    def ls_url(self) -> str:
        """Label Studio's base URL."""
        return f"http://{LOOPBACK}:{self.ls_port}"

    @property
    def service_url(self) -> str:
        """The sync service's base URL (also where Label Studio's webhooks go)."""
        return f"http://{LOOPBACK}:{self.service_port}"

    @property
    def embedded_s3(self) -> bool:
        """Whether ``up`` runs its own S3 store (no ``CUSTOMLABELS_S3_ENDPOINT``)."""
        return self.external_s3 is None

    @property
    def s3_endpoint(self) -> str:
        """The S3 endpoint every part uses."""
        return self.external_s3 or f"http://{LOOPBACK}:{self.s3_port}"

    def s3_credentials(self, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
        """The key pair for the store: s3rver's for the embedded one, ``AWS_*`` for another."""
        if self.embedded_s3:
            return (S3STORE_KEY, S3STORE_KEY)
        env = os.environ if env is None else env
        key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        return (key, secret) if key and secret else None


def _whole(value: Any, name: str, low: int, high: int, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise StackError(f"{name} must be {what}, got {value!r}") from None
    if not low <= number <= high:
        raise StackError(f"{name} must be {what} ({low}-{high}), got {number}")
    return number


def _port(value: Any, name: str) -> int:
    return _whole(value, name, 1, 65535, "a port number")


def _ls_workers(raw: str) -> int:
    if not raw:
        return DEFAULT_LS_WORKERS
    return _whole(raw, "CUSTOMLABELS_LS_WORKERS", 0, MAX_LS_WORKERS, "a whole number")


def make_plan(
    home: Path,
    *,
    ls_port: int | None = None,
    service_port: int | None = None,
    s3_port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Plan:
    """The plan from flags (when given), else ``CUSTOMLABELS_*`` variables, else the defaults."""
    env = os.environ if env is None else env

    def pick(flag: int | None, variable: str, default: int, what: str) -> int:
        if flag is not None:
            return _port(flag, what)
        raw = env.get(variable, "").strip()
        return _port(raw, variable) if raw else default

    plan = Plan(
        layout=Layout(home),
        ls_port=pick(ls_port, "CUSTOMLABELS_LS_PORT", DEFAULTS.ls_port, "--ls-port"),
        service_port=pick(service_port, "CUSTOMLABELS_PORT", DEFAULTS.service_port, "--port"),
        s3_port=pick(s3_port, "CUSTOMLABELS_S3_PORT", DEFAULT_S3_PORT, "--s3-port"),
        redis_url=env.get("CUSTOMLABELS_REDIS_URL", "").strip() or DEFAULTS.redis_url,
        external_s3=env.get("CUSTOMLABELS_S3_ENDPOINT", "").strip().rstrip("/") or None,
        bucket=env.get("CUSTOMLABELS_BUCKET", "").strip() or DEFAULTS.bucket,
        prefix=env.get("CUSTOMLABELS_PREFIX", DEFAULTS.prefix).strip().strip("/"),
        region=env.get("CUSTOMLABELS_S3_REGION", "").strip() or DEFAULTS.s3_region,
        ls_workers=_ls_workers(env.get("CUSTOMLABELS_LS_WORKERS", "").strip()),
    )
    ports = [plan.ls_port, plan.service_port] + ([plan.s3_port] if plan.embedded_s3 else [])
    if len(set(ports)) != len(ports):
        raise StackError(
            f"Label Studio ({plan.ls_port}), the service ({plan.service_port}) and the S3 store "
            f"({plan.s3_port}) need three different ports"
        )
    return plan


PORT_FLAGS = {
    "label_studio": ("Label Studio", "--ls-port", "CUSTOMLABELS_LS_PORT"),
    "service": ("the sync service", "--port", "CUSTOMLABELS_PORT"),
    "s3": ("the S3 store", "--s3-port", "CUSTOMLABELS_S3_PORT"),
}


def taken_ports(plan: Plan) -> list[str]:
    """A sentence for each port of the plan that something else already listens on."""
    wanted = {"label_studio": plan.ls_port, "service": plan.service_port}
    if plan.embedded_s3:
        wanted["s3"] = plan.s3_port
    out = []
    for part, port in wanted.items():
        if port_in_use(port):
            what, flag, variable = PORT_FLAGS[part]
            out.append(
                f"port {port} on {LOOPBACK} (for {what}) is taken by another program: stop it, "
                f"or choose another port with {flag} N (or {variable}=N)"
            )
    return out
