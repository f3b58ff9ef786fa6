"""One stack's life: ``bring_up`` starts each part in order (the store, Redis, Label Studio, the sync
service and its worker, then the demo) and records each in ``state.json`` as it starts; ``Parts`` starts
one part (the supervisor uses it again after a crash); ``Stack.stop`` and ``stop_recorded`` stop
exactly what was recorded, last started first; ``summary`` says where everything is.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from plugin.localstack.demo import ensure_demo, repoint_projects
from plugin.localstack.errors import StackError
from plugin.localstack.http_calls import http_get
from plugin.localstack.label_studio import ensure_label_studio_env, start_label_studio
from plugin.localstack.layout import HOME_VARIABLE, Layout
from plugin.localstack.plan import S3STORE_KEY, Plan
from plugin.localstack.private_files import Secrets
from plugin.localstack.processes import LOOPBACK, Proc, log_tail, process_start_time, say, spawn
from plugin.localstack.record import StackRecord, utc_now, write_record
from plugin.localstack.redis_db import claim_redis, rq_worker_pids
from plugin.localstack.redis_server import redis_available, redis_port_to_start, start_redis
from plugin.localstack.s3_store import ensure_bucket, ensure_s3store, start_s3store
from plugin.localstack.stop_signals import shielded
from plugin.progress import Progress
from sync_service.config import load_settings, redact_url

LS_START_TIMEOUT = 300.0
READY_TIMEOUT = 90.0
ORDER = ("s3", "redis", "label_studio", "service", "worker")
"""Start order; ``down`` stops in the reverse order."""


def service_env(plan: Plan, secrets_: Secrets, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of ``customlabels serve`` and ``customlabels worker`` for this plan.

    Starts from ``base`` (our environment) so tuning variables such as ``CUSTOMLABELS_DEBOUNCE_SECONDS``
    pass; every setting that names a part of the stack is set here. With the embedded store every
    ``AWS_*`` variable is replaced by the store's key pair (a real AWS profile must not leak in).
    """
    base = os.environ if base is None else base
    env = dict(base)
    if plan.embedded_s3:
        env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=S3STORE_KEY, AWS_SECRET_ACCESS_KEY=S3STORE_KEY)
    env.pop(HOME_VARIABLE, None)
    env.update(
        CUSTOMLABELS_LS_URL=plan.ls_url,
        CUSTOMLABELS_LS_API_KEY=secrets_.token,
        CUSTOMLABELS_REDIS_URL=plan.redis_url,
        CUSTOMLABELS_S3_ENDPOINT=plan.s3_endpoint,
        CUSTOMLABELS_S3_REGION=plan.region,
        CUSTOMLABELS_BUCKET=plan.bucket,
        CUSTOMLABELS_PREFIX=plan.prefix,
        CUSTOMLABELS_WEBHOOK_SECRET=secrets_.webhook_secret,
        CUSTOMLABELS_SERVICE_URL=plan.service_url,
        CUSTOMLABELS_API_ACCESS_KEY_ID=secrets_.api_access_key_id,
        CUSTOMLABELS_API_SECRET_ACCESS_KEY=secrets_.api_secret_access_key,
        AWS_DEFAULT_REGION=plan.region,
        PYTHONUNBUFFERED="1",
    )
    return env


def customlabels_command(*args: str) -> list[str]:
    """``customlabels ARGS`` with this interpreter (works without the console script on PATH)."""
    return [sys.executable, "-m", "plugin.cli", *args]


def wait_ready(url: str, popen: subprocess.Popen[bytes], log: Path, timeout: float = READY_TIMEOUT) -> None:
    """Wait until the service's ``/readyz`` answers 200 (Redis, S3 and Label Studio reachable)."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise StackError(f"the sync service exited with code {popen.returncode}:\n{log_tail(log, 30)}")
        try:
            status, body = http_get(f"{url}/readyz", timeout=5)
            if status == 200:
                return
            last = f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.25)
    raise StackError(f"the sync service at {url} is not ready: {last}\n{log_tail(log, 30)}")


def wait_worker(
    url: str, queue: str, popen: subprocess.Popen[bytes], log: Path, timeout: float = 60.0
) -> None:
    """Wait until the worker process has registered on the queue."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise StackError(f"the worker exited with code {popen.returncode}:\n{log_tail(log, 30)}")
        if popen.pid in rq_worker_pids(url, queue):
            return
        time.sleep(0.2)
    raise StackError(f"the worker did not register on queue {queue!r}:\n{log_tail(log, 30)}")


class Stack:
    """The processes one ``up`` started, recorded in the state file as they start."""

    def __init__(self, plan: Plan, *, detached: bool) -> None:
        self.plan = plan
        me = os.getpid()
        self.record = StackRecord(
            home=str(plan.layout.home),
            supervisor=None if detached else Proc("supervisor", me, process_start_time(me), "", sys.argv),
            detached=detached,
            started_at=utc_now(),
            bucket=plan.bucket,
            prefix=plan.prefix,
            s3_embedded=plan.embedded_s3,
            urls={
                "label_studio": plan.ls_url,
                "service": plan.service_url,
                "s3": plan.s3_endpoint,
                "redis": plan.redis_url,
            },
        )

    @classmethod
    def of_record(cls, plan: Plan, record: StackRecord) -> Stack:
        """The stack a record names (its supervisor taking it over after ``up --detach`` returned)."""
        stack = cls(plan, detached=record.detached)
        stack.record = record
        return stack

    def save(self) -> None:
        """Write the state file."""
        write_record(self.plan.layout, self.record)

    def add(self, name: str, popen: subprocess.Popen[bytes], log: Path, command: list[str]) -> None:
        """Record a process we started."""
        self.record.processes[name] = Proc.of(name, popen, log, command)
        self.save()

    def stop(self, *, quiet: bool = False) -> list[str]:
        """Stop everything this stack started (last started first); remove the state file.

        A second Ctrl-C while stopping does not interrupt the stopping (which would leave processes).
        """
        with shielded():
            return self._stop(quiet=quiet)

    def _stop(self, *, quiet: bool) -> list[str]:
        stopped = stop_recorded(self.record, quiet=quiet)
        self.record.processes.clear()
        with contextlib.suppress(FileNotFoundError):
            self.plan.layout.state.unlink()
        return stopped


class Parts:
    """How to start each part of one stack, recording it: ``bring_up`` starts them in order, and the
    supervisor starts one again after it crashed (with the same command, ports and data)."""

    def __init__(
        self, stack: Stack, secrets_: Secrets, ls_settings: Mapping[str, str], *, progress: Progress | None
    ) -> None:
        self.stack = stack
        self.secrets = secrets_
        self.ls_settings = ls_settings
        self.progress = progress
        self._ls_env: Path | None = None

    def label_studio_env(self) -> Path:
        """Label Studio's own environment (installed on first use)."""
        if self._ls_env is None:
            self._ls_env = ensure_label_studio_env(self.stack.plan.ls_version)
        return self._ls_env

    def start(self, name: str) -> None:
        """Start part ``name`` (one of :data:`ORDER`) and record it; raise when it does not come up."""
        {
            "s3": self.start_s3,
            "redis": self.start_redis,
            "label_studio": self.start_label_studio,
            "service": self.start_service,
            "worker": self.start_worker,
        }[name]()

    def start_s3(self) -> None:
        """The embedded S3 store (s3rver), once it answers."""
        plan = self.stack.plan
        popen, command = start_s3store(plan, ensure_s3store(self.progress))
        self.stack.add("s3", popen, plan.layout.log("s3"), command)

    def start_redis(self) -> None:
        """A ``redis-server`` on the port of the plan's Redis URL, once it answers; then claim its database."""
        plan = self.stack.plan
        port = redis_port_to_start(plan.redis_url)
        server = start_redis(port, plan.layout.redis)
        db = urlparse(plan.redis_url).path.lstrip("/") or "0"
        self.stack.record.redis_started = True
        self.stack.record.urls["redis"] = f"redis://{LOOPBACK}:{port}/{db}"
        self.stack.plan = plan = _replace_redis(plan, self.stack.record.urls["redis"])
        self.stack.add("redis", server.process, server.log_path, ["redis-server", "--port", str(port)])
        self.claim_redis()

    def claim_redis(self) -> None:
        """Record this home as the user of the plan's Redis database."""
        dropped = claim_redis(self.stack.plan)
        if dropped and self.progress is not None:
            self.progress.note(
                f"dropped {dropped} cached keys another customlabels stack left in {self.stack.plan.redis_url}"
            )

    def start_label_studio(self) -> None:
        """Label Studio, once it serves and the token works."""
        plan, layout = self.stack.plan, self.stack.plan.layout
        server = start_label_studio(
            layout.label_studio,
            plan.ls_port,
            username=self.secrets.username,
            password=self.secrets.password,
            token=self.secrets.token,
            log_path=layout.log("label_studio"),
            env_dir=self.label_studio_env(),
            version=plan.ls_version,
            timeout=LS_START_TIMEOUT,
            extra_env=self.ls_settings,
            workers=plan.ls_workers,
        )
        self.stack.add("label_studio", server.process, layout.log("label_studio"), server.command)

    def service_env(self) -> dict[str, str]:
        """The environment of the sync service and its worker."""
        return service_env(self.stack.plan, self.secrets)

    def start_service(self) -> None:
        """The sync service (not waiting until it is ready: see :func:`wait_ready`)."""
        command = customlabels_command("serve", "--port", str(self.stack.plan.service_port), "--workers", "1")
        self._spawn("service", command)

    def start_worker(self) -> None:
        """The sync worker (not waiting until it registers: see :func:`wait_worker`)."""
        self._spawn("worker", customlabels_command("worker"))

    def _spawn(self, name: str, command: list[str]) -> None:
        layout = self.stack.plan.layout
        popen = spawn(command, env=self.service_env(), log=layout.log(name), cwd=layout.home)
        self.stack.add(name, popen, layout.log(name), command)


def bring_up(
    stack: Stack, secrets_: Secrets, ls_settings: Mapping[str, str], *, demo: bool, progress: Progress
) -> Parts:
    """Start every part in order, recording each; raise on the first that fails. Returns how to start
    each part again (for the supervisor)."""
    parts = Parts(stack, secrets_, ls_settings, progress=progress)
    plan = stack.plan
    layout = plan.layout

    progress.step(f"Label Studio {plan.ls_version}: its environment")
    with progress.paused():
        parts.label_studio_env()

    if plan.embedded_s3:
        progress.step(f"S3 store on port {plan.s3_port} (files in {layout.s3})")
        parts.start_s3()
    else:
        progress.step(f"S3 at {plan.s3_endpoint}")
    ensure_bucket(plan)

    progress.step("Redis")
    if redis_available(plan.redis_url):
        progress.note(f"using the Redis that answers at {plan.redis_url} (not ours to stop)")
        parts.claim_redis()
    else:
        parts.start_redis()
    plan = stack.plan

    first = not (layout.label_studio / "label_studio.sqlite3").exists()
    progress.step(
        f"Label Studio on port {plan.ls_port}"
        + (" (first start migrates its database: ~30 s)" if first else "")
    )
    parts.start_label_studio()

    progress.step(f"sync service on port {plan.service_port} and a worker")
    settings = load_settings(parts.service_env())
    parts.start_service()
    parts.start_worker()
    service, worker = stack.record.processes["service"], stack.record.processes["worker"]
    assert service.popen is not None and worker.popen is not None
    wait_ready(plan.service_url, service.popen, layout.log("service"))
    wait_worker(plan.redis_url, settings.queue, worker.popen, layout.log("worker"))

    progress.step("projects" + (" and the demo project" if demo else ""))
    changed = repoint_projects(plan, secrets_)
    if changed:
        progress.note(f"pointed {changed} storage(s)/webhook(s) at this stack's ports")
    if demo:
        stack.record.demo = ensure_demo(plan, secrets_, settings)
    stack.save()
    return parts


def _replace_redis(plan: Plan, url: str) -> Plan:
    return replace(plan, redis_url=url)


def summary(record: StackRecord, secrets_: Secrets | None, *, status: str) -> dict[str, Any]:
    """What ``up`` prints (as JSON with ``--json``)."""
    layout = Layout(Path(record.home))
    demo = record.demo
    out: dict[str, Any] = {
        "status": status,
        "home": record.home,
        "detached": record.detached,
        "label_studio": {
            "url": record.urls.get("label_studio"),
            "username": secrets_.username if secrets_ else None,
            "password": secrets_.password if secrets_ else None,
            "token": secrets_.token if secrets_ else None,
            "data": str(layout.label_studio),
        },
        "service": {
            "url": record.urls.get("service"),
            "api_access_key_id": secrets_.api_access_key_id if secrets_ else None,
            "api_secret_access_key": secrets_.api_secret_access_key if secrets_ else None,
        },
        "s3": {
            "endpoint": record.urls.get("s3"),
            "bucket": record.bucket,
            "prefix": record.prefix,
            "embedded": record.s3_embedded,
            "access_key": S3STORE_KEY if record.s3_embedded else None,
            "secret_key": S3STORE_KEY if record.s3_embedded else None,
            "data": str(layout.s3) if record.s3_embedded else None,
        },
        "redis": {
            "url": redact_url(str(record.urls.get("redis") or "")) or None,
            "started": record.redis_started,
        },
        "demo": demo,
        "logs": str(layout.logs),
        "pids": {name: proc.pid for name, proc in record.processes.items()},
    }
    return out


def print_summary(info: Mapping[str, Any]) -> None:
    """The human-readable form of :func:`summary`."""
    ls, s3, redis_, demo = info["label_studio"], info["s3"], info["redis"], info.get("demo")
    head = "already running" if info["status"] == "already running" else "up"
    lines = [
        f"customlabels is {head} (data in {info['home']})",
        "",
        f"  Label Studio   {ls['url']}",
        f"                 login {ls['username']}  password {ls['password']}",
        f"                 API token {ls['token']}",
        f"  Sync service   {info['service']['url']}   (health: {info['service']['url']}/readyz)",
        f"                 Rekognition API key {info['service']['api_access_key_id']} / "
        f"{info['service']['api_secret_access_key']}  (SigV4; console: sign in with Label Studio)",
    ]
    if s3["embedded"]:
        lines.append(
            f"  S3 store       {s3['endpoint']}   bucket {s3['bucket']}, key {s3['access_key']} / "
            f"{s3['secret_key']}  (s3rver; files in {s3['data']})"
        )
    else:
        lines.append(f"  S3             {s3['endpoint']}   bucket {s3['bucket']}")
    lines.append(
        f"  Redis          {redis_['url']}"
        + ("" if redis_["started"] else "   (already running; not ours to stop)")
    )
    if demo:
        if demo.get("exists", True):
            tasks = demo.get("tasks") or {}
            lines.append(
                f"  Demo project   {demo['title']!r}  {ls['url']}/projects/{demo['project']}/  "
                f"({tasks.get('train', 0)} train, {tasks.get('test', 0)} test)"
            )
            lines.append(f"                 manifests in {demo['s3']}train.manifest and test.manifest")
        else:
            lines.append(f"  Demo project   {demo['title']!r} was deleted in Label Studio (not made again)")
    lines.append(f"  Logs           {info['logs']}")
    lines.append("")
    if info["detached"]:
        lines.append("Stop it with `customlabels down`; check it with `customlabels doctor`.")
    else:
        lines.append("Stop it with Ctrl-C (or `customlabels down` from another terminal).")
    print("\n".join(lines), flush=True)


def stop_recorded(record: StackRecord, *, quiet: bool) -> list[str]:
    """Stop every process ``record`` names, last started first; return the names of those that ran."""
    stopped = []
    for name in reversed(ORDER):
        proc = record.processes.get(name)
        if proc is not None and proc.stop(grace=15.0 if name == "label_studio" else 10.0):
            stopped.append(name)
            if not quiet:
                say(f"stopped {name.replace('_', ' ')} (pid {proc.pid})")
    return stopped
