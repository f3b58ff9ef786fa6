"""``customlabels up``, ``down`` and ``doctor``: the whole stack on loopback with one command.

``up`` starts, each as its own process on 127.0.0.1:

========================  ===============================  =================================================
part                      default                          data
========================  ===============================  =================================================
S3-compatible store       s3rver on port 9000 (npm)        ``<home>/s3/`` (one file per object)
Redis                     the one answering on             nothing kept (queues, locks, caches only)
                          ``CUSTOMLABELS_REDIS_URL``, else
                          a ``redis-server`` we start
Label Studio              port 8080, its own virtualenv    ``<home>/label-studio/`` (SQLite, media)
sync service (gunicorn)   port 5000                        -
sync worker (RQ)          -                                -
========================  ===============================  =================================================

``<home>`` is ``$CUSTOMLABELS_HOME`` or ``./.customlabels`` in the working directory. It holds the
generated-once login (``secrets.json``, mode 0600), Label Studio's settings (``label-studio.env``, read at
every start), the logs (``logs/``) and ``state.json``: what this ``up`` started (pid and start time of
each process), so that ``down`` and Ctrl-C stop exactly those and nothing else (never a Redis we found
running). With ``CUSTOMLABELS_S3_ENDPOINT`` set (MinIO, AWS) no store is started and that endpoint is
used, with the usual ``AWS_*`` credentials.

The embedded store is s3rver (npm package, installed on first use with ``npm ci`` from the lock file in
``plugin/s3store/`` into ``~/.cache/customlabels/``): unlike moto's server it keeps every object in files,
so the images and manifests survive ``down``, Ctrl-C and even ``kill -9``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from converters.labelconfig import DEFAULT_BOXES_NAME, DEFAULT_CHOICES_NAME, DEFAULT_IMAGE_NAME
from plugin import services
from plugin.progress import Progress
from sync_service.config import load_settings

HOME_VARIABLE = "CUSTOMLABELS_HOME"
DEFAULT_HOME = ".customlabels"
DEFAULT_LS_PORT = 8080
DEFAULT_SERVICE_PORT = 5000
DEFAULT_S3_PORT = 9000
DEFAULT_BUCKET = "customlabels"
DEFAULT_PREFIX = "customlabels"
DEFAULT_REGION = "us-east-1"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
ADMIN_EMAIL = "admin@customlabels.local"
S3STORE_KEY = "S3RVER"
"""s3rver's one key pair (access key and secret are both this); the store listens on loopback only."""
S3STORE_VARIABLE = "CUSTOMLABELS_S3STORE_DIR"
SAMPLES = Path(__file__).parent / "samples"
S3STORE_FILES = Path(__file__).parent / "s3store"
LS_START_TIMEOUT = 300.0
DEFAULT_LS_WORKERS = 2
"""Label Studio's gunicorn processes under ``up`` (``CUSTOMLABELS_LS_WORKERS``; 0 runs its development
server): two let an annotator's save and the worker's reads run at once, on two cores (~270 MB each)."""
MAX_LS_WORKERS = 16
READY_TIMEOUT = 90.0
ORDER = ("s3", "redis", "label_studio", "service", "worker")
"""Start order; ``down`` stops in the reverse order."""

LS_ENV_DEFAULTS = {
    "SSRF_PROTECTION_ENABLED": "false",
    "USE_DEFAULT_BANNED_SUBNETS": "false",
    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
    "LATEST_VERSION_CHECK": "false",
    "COLLECT_ANALYTICS": "false",
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
}
"""What ``label-studio.env`` holds when first written. The SSRF settings let Label Studio call the
service's webhook and the store on loopback; the legacy token must be on when the organization is
first created; nothing calls out."""

_LS_ENV_HEADER = """\
# Settings of the Label Studio server that `customlabels up` starts, read at every start (KEY=VALUE).
# Label Studio reads LABEL_STUDIO_<X>, then HEARTEX_<X>, then plain <X>. `customlabels doctor` checks
# that loopback webhooks and a loopback S3 endpoint stay allowed (SSRF_PROTECTION_ENABLED=false or
# USE_DEFAULT_BANNED_SUBNETS=false). The admin login lives in secrets.json, not here.
"""

_CORS = """\
<CORSConfiguration>
  <CORSRule>
    <AllowedOrigin>*</AllowedOrigin>
    <AllowedMethod>GET</AllowedMethod>
    <AllowedMethod>HEAD</AllowedMethod>
    <AllowedHeader>*</AllowedHeader>
    <ExposeHeader>ETag</ExposeHeader>
    <MaxAgeSeconds>3000</MaxAgeSeconds>
  </CORSRule>
</CORSConfiguration>
"""
"""The bucket's CORS rules: Label Studio's image tag loads presigned URLs from the store's origin."""


class StackError(RuntimeError):
    """``up``, ``down`` or ``doctor`` cannot go on; the message says what to do."""


def _say(message: str) -> None:
    print(f"customlabels: {message}", file=sys.stderr, flush=True)


# --- where things live ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """The files of one local stack under its home directory."""

    home: Path

    @property
    def label_studio(self) -> Path:
        """Label Studio's data dir (SQLite database, uploaded media, its generated ``.env``)."""
        return self.home / "label-studio"

    @property
    def s3(self) -> Path:
        """The embedded store's objects."""
        return self.home / "s3"

    @property
    def redis(self) -> Path:
        """Working directory of a Redis we start (it keeps nothing on disk)."""
        return self.home / "redis"

    @property
    def logs(self) -> Path:
        """One log per process."""
        return self.home / "logs"

    @property
    def secrets(self) -> Path:
        """The generated-once admin login, API token and webhook secret (mode 0600)."""
        return self.home / "secrets.json"

    @property
    def ls_env(self) -> Path:
        """Label Studio's environment settings, read at every start."""
        return self.home / "label-studio.env"

    @property
    def state(self) -> Path:
        """What is running: processes, URLs, the demo project."""
        return self.home / "state.json"

    @property
    def demo(self) -> Path:
        """The demo project once made (so a demo the user deleted is not made again)."""
        return self.home / "demo.json"

    @property
    def lock(self) -> Path:
        """Held by ``up`` while it runs and by ``down`` while it stops things."""
        return self.home / ".lock"

    def log(self, name: str) -> Path:
        """The log file of the part ``name``."""
        return self.logs / f"{name.replace('_', '-')}.log"


def resolve_home(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """``--home``, else ``$CUSTOMLABELS_HOME``, else ``./.customlabels``; made absolute."""
    env = os.environ if env is None else env
    raw = explicit or env.get(HOME_VARIABLE, "").strip() or DEFAULT_HOME
    return Path(raw).expanduser().resolve()


# --- secrets and Label Studio's env file ---------------------------------------------------------------


@dataclass(frozen=True)
class Secrets:
    """Generated at the first ``up`` of a home and kept: Label Studio keeps the first admin it made."""

    username: str
    password: str
    token: str
    webhook_secret: str

    def __repr__(self) -> str:
        return f"Secrets(username={self.username!r}, ...)"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the start (never readable by others), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def load_secrets(layout: Layout, *, create: bool) -> Secrets | None:
    """The home's secrets; made (mode 0600) when missing and ``create``; None when missing otherwise."""
    if layout.secrets.exists():
        raw = json.loads(layout.secrets.read_text())
        return Secrets(
            username=str(raw["username"]),
            password=str(raw["password"]),
            token=str(raw["token"]),
            webhook_secret=str(raw["webhook_secret"]),
        )
    if not create:
        return None
    made = Secrets(
        username=ADMIN_EMAIL,
        password=secrets.token_urlsafe(12),
        token=secrets.token_hex(20),  # 40 characters: the most a legacy token may have
        webhook_secret=secrets.token_urlsafe(32),
    )
    body = {
        "username": made.username,
        "password": made.password,
        "token": made.token,
        "webhook_secret": made.webhook_secret,
    }
    _write_private(layout.secrets, json.dumps(body, indent=2) + "\n")
    return made


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines, optional ``export`` and quotes) -> a dict."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def load_ls_env(layout: Layout, *, create: bool) -> dict[str, str] | None:
    """Label Studio's settings from ``label-studio.env`` (written with the defaults when missing)."""
    if not layout.ls_env.exists():
        if not create:
            return None
        body = "".join(f"{key}={value}\n" for key, value in LS_ENV_DEFAULTS.items())
        _write_private(layout.ls_env, _LS_ENV_HEADER + body)
    return parse_env_file(layout.ls_env.read_text())


def ssrf_allows_loopback(settings: Mapping[str, str]) -> bool:
    """Whether Label Studio with these settings may call loopback URLs (webhooks, a local S3)."""

    def off(name: str) -> bool:
        return settings.get(name, "").strip().lower() in ("false", "0", "no", "off")

    return off("SSRF_PROTECTION_ENABLED") or off("USE_DEFAULT_BANNED_SUBNETS")


# --- the plan: ports, URLs, S3 and Redis -----------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Where each part of the stack listens and keeps its data."""

    layout: Layout
    ls_port: int = DEFAULT_LS_PORT
    service_port: int = DEFAULT_SERVICE_PORT
    s3_port: int = DEFAULT_S3_PORT
    redis_url: str = DEFAULT_REDIS_URL
    external_s3: str | None = None
    bucket: str = DEFAULT_BUCKET
    prefix: str = DEFAULT_PREFIX
    region: str = DEFAULT_REGION
    ls_version: str = services.DEFAULT_LS_VERSION
    ls_workers: int = DEFAULT_LS_WORKERS

    @property
    def ls_url(self) -> str:
        """Label Studio's base URL."""
        return f"http://{services.LOOPBACK}:{self.ls_port}"

    @property
    def service_url(self) -> str:
        """The sync service's base URL (also where Label Studio's webhooks go)."""
        return f"http://{services.LOOPBACK}:{self.service_port}"

    @property
    def embedded_s3(self) -> bool:
        """Whether ``up`` runs its own S3 store (no ``CUSTOMLABELS_S3_ENDPOINT``)."""
        return self.external_s3 is None

    @property
    def s3_endpoint(self) -> str:
        """The S3 endpoint every part uses."""
        return self.external_s3 or f"http://{services.LOOPBACK}:{self.s3_port}"

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
        ls_port=pick(ls_port, "CUSTOMLABELS_LS_PORT", DEFAULT_LS_PORT, "--ls-port"),
        service_port=pick(service_port, "CUSTOMLABELS_PORT", DEFAULT_SERVICE_PORT, "--port"),
        s3_port=pick(s3_port, "CUSTOMLABELS_S3_PORT", DEFAULT_S3_PORT, "--s3-port"),
        redis_url=env.get("CUSTOMLABELS_REDIS_URL", "").strip() or DEFAULT_REDIS_URL,
        external_s3=env.get("CUSTOMLABELS_S3_ENDPOINT", "").strip().rstrip("/") or None,
        bucket=env.get("CUSTOMLABELS_BUCKET", "").strip() or DEFAULT_BUCKET,
        prefix=env.get("CUSTOMLABELS_PREFIX", DEFAULT_PREFIX).strip().strip("/"),
        region=env.get("CUSTOMLABELS_S3_REGION", "").strip() or DEFAULT_REGION,
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
        if services.port_in_use(port):
            what, flag, variable = PORT_FLAGS[part]
            out.append(
                f"port {port} on {services.LOOPBACK} (for {what}) is taken by another program: stop it, "
                f"or choose another port with {flag} N (or {variable}=N)"
            )
    return out


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
        AWS_DEFAULT_REGION=plan.region,
        PYTHONUNBUFFERED="1",
    )
    return env


def s3_client(plan: Plan, env: Mapping[str, str] | None = None) -> Any:
    """A boto3 S3 client for the plan's store, with its credentials given explicitly."""
    from sync_service.edges.s3 import make_client  # noqa: PLC0415 - boto3 costs start-up time

    return make_client(
        plan.s3_endpoint,
        plan.region,
        credentials=plan.s3_credentials(env),
        connect_timeout=3,
        read_timeout=15,
    )


# --- processes we start ----------------------------------------------------------------------------------


def process_start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), None when it is gone or a zombie.

    Recorded with each pid so that a pid the system gave to another process since is never taken for
    ours. Where there is no ``/proc`` (macOS), 0 for a live process.
    """
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return 0
        return 0
    try:
        text = stat.read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class Proc:
    """A process this stack started: its pid (also its process group: each runs in its own session)."""

    name: str
    pid: int
    start: int | None
    log: str
    command: list[str]
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, name: str, popen: subprocess.Popen[bytes], log: Path, command: list[str]) -> Proc:
        """Record a process we just started."""
        return cls(name, popen.pid, process_start_time(popen.pid), str(log), command, popen)

    def to_json(self) -> dict[str, Any]:
        """The state-file record."""
        return {"pid": self.pid, "start": self.start, "log": self.log, "command": self.command}

    @classmethod
    def from_json(cls, name: str, raw: Mapping[str, Any]) -> Proc:
        """Read a state-file record."""
        start = raw.get("start")
        return cls(
            name,
            int(raw["pid"]),
            int(start) if start is not None else None,
            str(raw.get("log", "")),
            [str(x) for x in raw.get("command", [])],
        )

    @property
    def alive(self) -> bool:
        """Whether this very process still runs (same pid and same start time)."""
        if self.popen is not None and self.popen.poll() is not None:
            return False
        now = process_start_time(self.pid)
        return now is not None and (self.start is None or now == self.start)

    def stop(self, grace: float = 10.0) -> bool:
        """SIGTERM its process group, SIGKILL after ``grace`` s; True when it was running."""
        if not self.alive:
            self._reap()
            return False
        self._signal(signal.SIGTERM)
        if not self._wait(grace):
            self._signal(signal.SIGKILL)
            self._wait(5.0)
        # Children left in its group (a worker's work horse, say) go with it.
        self._signal(signal.SIGKILL)
        self._reap()
        return True

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, sig)

    def _wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.alive:
                self._reap()
                return True
            time.sleep(0.1)
        return not self.alive

    def _reap(self) -> None:
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=1)


def spawn(command: list[str], *, env: Mapping[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session with stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# --- state -------------------------------------------------------------------------------------------------


@dataclass
class State:
    """``state.json``: what ``up`` started and where it listens (no secrets)."""

    home: str
    urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, Proc] = field(default_factory=dict)
    supervisor: Proc | None = None
    detached: bool = False
    started_at: str = ""
    bucket: str = DEFAULT_BUCKET
    prefix: str = DEFAULT_PREFIX
    redis_started: bool = False
    s3_embedded: bool = True
    demo: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        return {
            "version": 1,
            "home": self.home,
            "started_at": self.started_at,
            "detached": self.detached,
            "supervisor": self.supervisor.to_json() if self.supervisor else None,
            "urls": self.urls,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "redis_started": self.redis_started,
            "s3_embedded": self.s3_embedded,
            "demo": self.demo,
            "processes": {name: proc.to_json() for name, proc in self.processes.items()},
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> State:
        """Read the file's content."""
        supervisor = raw.get("supervisor")
        return cls(
            home=str(raw.get("home", "")),
            urls={str(k): str(v) for k, v in (raw.get("urls") or {}).items()},
            processes={
                str(name): Proc.from_json(str(name), rec)
                for name, rec in (raw.get("processes") or {}).items()
            },
            supervisor=Proc.from_json("supervisor", supervisor) if supervisor else None,
            detached=bool(raw.get("detached", False)),
            started_at=str(raw.get("started_at", "")),
            bucket=str(raw.get("bucket", DEFAULT_BUCKET)),
            prefix=str(raw.get("prefix", DEFAULT_PREFIX)),
            redis_started=bool(raw.get("redis_started", False)),
            s3_embedded=bool(raw.get("s3_embedded", True)),
            demo=raw.get("demo"),
        )

    def alive(self) -> dict[str, bool]:
        """Which recorded processes still run."""
        return {name: proc.alive for name, proc in self.processes.items()}


def read_state(layout: Layout) -> State | None:
    """The state file, or None when there is none (or it cannot be read)."""
    try:
        return State.from_json(json.loads(layout.state.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _say(f"ignoring unreadable {layout.state}: {exc}")
        return None


def write_state(layout: Layout, state: State) -> None:
    """Replace the state file (mode 0600)."""
    _write_private(layout.state, json.dumps(state.to_json(), indent=2) + "\n")


@contextlib.contextmanager
def home_lock(layout: Layout, *, wait: float = 0.0) -> Iterator[bool]:
    """Hold the home's lock; yields False when another process holds it past ``wait`` seconds."""
    layout.home.mkdir(parents=True, exist_ok=True)
    with layout.lock.open("a") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.2)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- the embedded S3 store (s3rver) ----------------------------------------------------------------------


def _s3store_hash() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((S3STORE_FILES / name).read_bytes())
    return digest.hexdigest()[:12]


def s3store_dir() -> Path:
    """Where the store's npm packages are installed: ``$CUSTOMLABELS_S3STORE_DIR`` or a cache dir."""
    configured = os.environ.get(S3STORE_VARIABLE, "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "customlabels" / f"s3store-{_s3store_hash()}"


def s3store_script(directory: Path) -> Path:
    """The store's entry point inside its install dir."""
    return directory / "node_modules" / "s3rver" / "bin" / "s3rver.js"


def s3store_version(directory: Path) -> str | None:
    """The installed s3rver version (None when it is not installed)."""
    try:
        raw = json.loads((directory / "node_modules" / "s3rver" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = raw.get("version")
    return str(version) if version else None


def node_binary() -> str | None:
    """The ``node`` on PATH, if any."""
    return shutil.which("node")


def ensure_s3store(progress: Progress | None = None) -> Path:
    """Install the store (``npm ci`` from our lock file) unless it is installed; return its dir."""
    directory = s3store_dir()
    stamp = directory / ".customlabels-installed"
    if stamp.exists() and s3store_script(directory).exists():
        return directory
    npm = shutil.which("npm")
    if node_binary() is None or npm is None:
        raise StackError(
            "the embedded S3 store (s3rver) needs Node.js and npm: install them (Debian: apt-get install "
            "nodejs npm), or point CUSTOMLABELS_S3_ENDPOINT at an S3 endpoint (MinIO, AWS)"
        )
    lock_path = directory.with_name(directory.name + ".lock")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if stamp.exists() and s3store_script(directory).exists():
                return directory
            directory.mkdir(parents=True, exist_ok=True)
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(S3STORE_FILES / name, directory / name)
            if progress is not None:
                progress.note(f"installing the S3 store (npm package s3rver) into {directory} ...")
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--omit=dev"],
                cwd=directory,
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            if done.returncode != 0 or not s3store_script(directory).exists():
                raise StackError(
                    f"npm ci in {directory} failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
                )
            stamp.write_text(f"s3rver {s3store_version(directory)}\n")
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return directory


def start_s3store(
    plan: Plan, directory: Path, *, timeout: float = 30.0
) -> tuple[subprocess.Popen[bytes], list[str]]:
    """Start s3rver on the plan's port with its objects under ``<home>/s3``; wait until it answers."""
    node = node_binary()
    if node is None:
        raise StackError("node not found: the embedded S3 store needs Node.js")
    layout = plan.layout
    layout.s3.mkdir(parents=True, exist_ok=True)
    cors = layout.home / "s3-cors.xml"
    cors.write_text(_CORS)
    command = [
        node,
        str(s3store_script(directory)),
        "--directory",
        str(layout.s3),
        "--address",
        services.LOOPBACK,
        "--port",
        str(plan.s3_port),
        "--silent",
        "--no-vhost-buckets",
        "--configure-bucket",
        plan.bucket,
        str(cors),
    ]
    log = layout.log("s3")
    popen = spawn(command, env=_node_env(), log=log, cwd=layout.home)
    deadline = time.monotonic() + timeout
    while True:
        if popen.poll() is not None:
            raise StackError(
                f"the S3 store exited with code {popen.returncode}:\n{services.log_tail(log, 20)}"
            )
        try:
            services.http_get(f"{plan.s3_endpoint}/", timeout=1)
        except OSError:
            if time.monotonic() > deadline:
                Proc.of("s3", popen, log, command).stop(3)
                raise StackError(
                    f"the S3 store did not answer on {plan.s3_endpoint}:\n{services.log_tail(log, 20)}"
                ) from None
            time.sleep(0.1)
        else:
            return popen, command


def _node_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["NODE_ENV"] = "production"
    return env


def ensure_bucket(plan: Plan) -> None:
    """Make sure the bucket exists (created on the embedded store or a MinIO when missing)."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - botocore costs start-up time

    client = s3_client(plan)
    try:
        client.head_bucket(Bucket=plan.bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise StackError(f"S3 bucket {plan.bucket} at {plan.s3_endpoint}: {exc}") from exc
    except BotoCoreError as exc:
        raise StackError(f"S3 at {plan.s3_endpoint} does not answer: {exc}") from exc
    else:
        return
    try:
        client.create_bucket(Bucket=plan.bucket)
    except (BotoCoreError, ClientError) as exc:
        raise StackError(
            f"could not create the S3 bucket {plan.bucket} at {plan.s3_endpoint}: {exc}"
        ) from exc


# --- Redis -----------------------------------------------------------------------------------------------


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


REDIS_OWNER_KEY = "customlabels:up:owner"
"""Names the home whose stack uses this Redis database (the service's keys are not per stack)."""


def redis_owner(url: str) -> dict[str, Any] | None:
    """The ``up`` home recorded as using the database at ``url`` (None when none is, or it is away)."""
    import redis  # noqa: PLC0415 - redis-py costs start-up time

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=3)
    try:
        raw = client.get(REDIS_OWNER_KEY)
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()
    try:
        owner = json.loads(raw) if raw else None
    except ValueError:
        return None
    return owner if isinstance(owner, dict) else None


def claim_redis(plan: Plan) -> int:
    """Take the Redis database for this home; return how many cached keys of another stack were dropped.

    The service keeps its caches under ``cl:`` keyed by Label Studio project id, which is 1 in every
    fresh Label Studio: two homes on one database would read each other's project records. So a
    database last used by another home has its ``cl:`` keys dropped (they are caches, rebuilt from S3
    and Label Studio), and one in use by another home's running stack is refused.
    """
    import redis  # noqa: PLC0415 - redis-py costs start-up time

    me = str(plan.layout.home)
    owner = redis_owner(plan.redis_url)
    if owner is not None and owner.get("home") == me:
        return 0
    if owner is not None and owner.get("home"):
        other = read_state(Layout(Path(str(owner["home"]))))
        if other is not None and other.processes and all(other.alive().values()):
            raise StackError(
                f"the Redis database {plan.redis_url} is in use by the customlabels stack in {owner['home']}: "
                "stop it (`customlabels down --home ...`) or give this one its own database, e.g. "
                "CUSTOMLABELS_REDIS_URL=redis://127.0.0.1:6379/1"
            )
    client = redis.Redis.from_url(plan.redis_url, socket_connect_timeout=2, socket_timeout=10)
    try:
        dropped = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match="cl:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                dropped += int(client.delete(*batch))
                batch.clear()
        if batch:
            dropped += int(client.delete(*batch))
        client.set(REDIS_OWNER_KEY, json.dumps({"home": me, "since": _now()}))
    finally:
        client.close()
    return dropped


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


def rq_worker_pids(url: str, queue: str) -> list[int]:
    """Pids of the RQ workers listening on ``queue`` (empty when Redis does not answer)."""
    import redis  # noqa: PLC0415 - redis-py costs start-up time
    from rq import Queue, Worker  # noqa: PLC0415 - rq costs start-up time

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=3)
    try:
        return [int(w.pid or 0) for w in Worker.all(connection=client, queue=Queue(queue, connection=client))]
    except (redis.RedisError, OSError):
        return []
    finally:
        client.close()


# --- the service and its worker ---------------------------------------------------------------------------


def customlabels_command(*args: str) -> list[str]:
    """``customlabels ARGS`` with this interpreter (works without the console script on PATH)."""
    return [sys.executable, "-m", "plugin.cli", *args]


def wait_ready(url: str, popen: subprocess.Popen[bytes], log: Path, timeout: float = READY_TIMEOUT) -> None:
    """Wait until the service's ``/readyz`` answers 200 (Redis, S3 and Label Studio reachable)."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise StackError(
                f"the sync service exited with code {popen.returncode}:\n{services.log_tail(log, 30)}"
            )
        try:
            status, body = services.http_get(f"{url}/readyz", timeout=5)
            if status == 200:
                return
            last = f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.25)
    raise StackError(f"the sync service at {url} is not ready: {last}\n{services.log_tail(log, 30)}")


def wait_worker(
    url: str, queue: str, popen: subprocess.Popen[bytes], log: Path, timeout: float = 60.0
) -> None:
    """Wait until the worker process has registered on the queue."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise StackError(f"the worker exited with code {popen.returncode}:\n{services.log_tail(log, 30)}")
        if popen.pid in rq_worker_pids(url, queue):
            return
        time.sleep(0.2)
    raise StackError(f"the worker did not register on queue {queue!r}:\n{services.log_tail(log, 30)}")


# --- the demo project -----------------------------------------------------------------------------------


def demo_definition() -> dict[str, Any]:
    """``plugin/samples/demo/demo.json``: the demo's title, labels and images."""
    raw: dict[str, Any] = json.loads((SAMPLES / "demo" / "demo.json").read_text())
    return raw


def demo_task(image: Mapping[str, Any], source_ref: str) -> dict[str, Any]:
    """The Label Studio task of one demo image, with its annotation when it has labels.

    Boxes are given in pixels of the displayed image (after EXIF orientation), as the browser shows
    it; Label Studio stores percent of that.
    """
    width, height = (int(v) for v in image["size"])
    results: list[dict[str, Any]] = []
    if image.get("label"):
        results.append(
            {
                "id": "c0",
                "from_name": DEFAULT_CHOICES_NAME,
                "to_name": DEFAULT_IMAGE_NAME,
                "type": "choices",
                "value": {"choices": [image["label"]]},
            }
        )
    for index, (label, left, top, box_w, box_h) in enumerate(image.get("boxes") or ()):
        results.append(
            {
                "id": f"b{index}",
                "from_name": DEFAULT_BOXES_NAME,
                "to_name": DEFAULT_IMAGE_NAME,
                "type": "rectanglelabels",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {
                    "x": 100.0 * left / width,
                    "y": 100.0 * top / height,
                    "width": 100.0 * box_w / width,
                    "height": 100.0 * box_h / height,
                    "rotation": 0,
                    "rectanglelabels": [label],
                },
            }
        )
    task: dict[str, Any] = {"data": {"image": source_ref, "dataset": image["dataset"]}}
    if results:
        task["annotations"] = [{"result": results}]
    return task


def _ls_json(plan: Plan, token: str, path: str) -> tuple[int, Any]:
    status, body = services.http_get(f"{plan.ls_url}{path}", token=token, timeout=30)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def ensure_demo(plan: Plan, secrets_: Secrets, settings: Any) -> dict[str, Any]:
    """Make the demo project once per home: project, storage, webhook, tabs, images in S3 and tasks.

    Later runs find it through ``demo.json`` and make nothing (a demo the user deleted stays deleted).
    """
    from sync_service.domain.bootstrap import create_project  # noqa: PLC0415 - label-studio-sdk costs start-up time
    from sync_service.domain.projects import Projects  # noqa: PLC0415 - boto3 costs start-up time
    from sync_service.edges.s3 import Storage  # noqa: PLC0415 - boto3 costs start-up time

    layout = plan.layout
    if layout.demo.exists():
        demo: dict[str, Any] = json.loads(layout.demo.read_text())
        status, _ = _ls_json(plan, secrets_.token, f"/api/projects/{int(demo['project'])}")
        demo["exists"] = status == 200
        return demo
    definition = demo_definition()
    import redis  # noqa: PLC0415 - redis-py costs start-up time

    client = redis.Redis.from_url(plan.redis_url)
    try:
        storage = Storage(s3_client(plan), plan.bucket)
        projects = Projects(client, storage, plan.prefix)
        made = create_project(
            settings,
            projects,
            title=str(definition["title"]),
            template="both",
            labels=list(definition["labels"]),
            box_labels=list(definition["box_labels"]),
            s3_credentials=plan.s3_credentials(),
        )
        pid = made.info.label_studio_project_id
        folder = projects.key(made.info, "")
        tasks = []
        for image in definition["images"]:
            key = f"{folder}images/{image['file']}"
            storage.put_bytes(key, (SAMPLES / "demo" / image["file"]).read_bytes(), content_type="image/jpeg")
            tasks.append(demo_task(image, f"s3://{plan.bucket}/{key}"))
        status, project = _ls_json(plan, secrets_.token, f"/api/projects/{pid}")
        if status != 200:
            raise StackError(f"Label Studio does not show the demo project {pid} (HTTP {status})")
        if not int((project or {}).get("task_number") or 0):
            sdk = _sdk(plan, secrets_)
            sdk.projects.import_tasks(id=pid, request=tasks, return_task_ids=True)
    finally:
        client.close()
    counts = {"train": 0, "test": 0}
    for image in definition["images"]:
        counts[str(image["dataset"])] += 1
    demo = {
        "project": pid,
        "title": made.info.title,
        "s3": f"s3://{plan.bucket}/{folder}",
        "tasks": counts,
        "created_at": _now(),
    }
    layout.demo.write_text(json.dumps(demo, indent=2) + "\n")
    demo["exists"] = True
    return demo


def _sdk(plan: Plan, secrets_: Secrets) -> Any:
    from label_studio_sdk import LabelStudio  # noqa: PLC0415 - label-studio-sdk costs start-up time

    make: Any = LabelStudio  # its __init__ is untyped
    return make(base_url=plan.ls_url, api_key=secrets_.token, max_retries=0)


def our_projects(plan: Plan) -> list[dict[str, Any]]:
    """``project.json`` of every project under the prefix in the bucket (read from S3 only)."""
    client = s3_client(plan)
    base = f"{plan.prefix}/" if plan.prefix else ""
    out = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=plan.bucket, Prefix=base, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            try:
                body = client.get_object(Bucket=plan.bucket, Key=f"{common['Prefix']}project.json")["Body"]
                out.append(json.loads(body.read()))
            except client.exceptions.NoSuchKey:
                continue
    return out


def project_links(plan: Plan, secrets_: Secrets) -> list[dict[str, Any]]:
    """For each project of ours: its S3 storages' endpoints and its webhooks' URLs in Label Studio."""
    from sync_service.domain.bootstrap import WEBHOOK_PATH  # noqa: PLC0415 - label-studio-sdk costs start-up time

    out = []
    for info in our_projects(plan):
        pid = int(info["label_studio_project_id"])
        status, storages = _ls_json(plan, secrets_.token, f"/api/storages/s3?project={pid}")
        if status == 404:
            continue
        _, hooks = _ls_json(plan, secrets_.token, f"/api/webhooks/?project={pid}")
        out.append(
            {
                "project": pid,
                "title": info.get("title"),
                "storages": [
                    {"id": s.get("id"), "endpoint": s.get("s3_endpoint") or None}
                    for s in storages or ()
                    if isinstance(s, dict) and s.get("bucket") == plan.bucket
                ],
                "webhooks": [
                    {"id": h.get("id"), "url": h.get("url")}
                    for h in hooks or ()
                    if isinstance(h, dict) and str(h.get("url", "")).endswith(WEBHOOK_PATH)
                ],
            }
        )
    return out


def repoint_projects(plan: Plan, secrets_: Secrets) -> int:
    """Point every project's S3 storage and webhook at this stack (ports may differ from last time).

    Label Studio keeps the endpoint and the webhook URL it was given; a stack started on other ports
    would leave them pointing at nothing. Returns how many were changed.
    """
    from sync_service.domain.bootstrap import WEBHOOK_PATH  # noqa: PLC0415 - label-studio-sdk costs start-up time

    webhook = plan.service_url + WEBHOOK_PATH
    changed = 0
    sdk = None
    for link in project_links(plan, secrets_):
        for storage in link["storages"]:
            if storage["endpoint"] != plan.s3_endpoint:
                sdk = sdk or _sdk(plan, secrets_)
                sdk.import_storage.s3.update(id=int(storage["id"]), s3endpoint=plan.s3_endpoint)
                changed += 1
        for hook in link["webhooks"]:
            if hook["url"] != webhook:
                sdk = sdk or _sdk(plan, secrets_)
                sdk.webhooks.update(id=int(hook["id"]), url=webhook)
                changed += 1
    return changed


# --- up ----------------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Stopped(Exception):
    """SIGTERM or SIGHUP arrived: stop like Ctrl-C."""


def _raise_stopped(signum: int, frame: Any) -> None:
    raise _Stopped(signal.Signals(signum).name)


class Stack:
    """The processes one ``up`` started, recorded in the state file as they start."""

    def __init__(self, plan: Plan, *, detached: bool) -> None:
        self.plan = plan
        me = os.getpid()
        self.state = State(
            home=str(plan.layout.home),
            supervisor=None if detached else Proc("supervisor", me, process_start_time(me), "", sys.argv),
            detached=detached,
            started_at=_now(),
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

    def save(self) -> None:
        """Write the state file."""
        write_state(self.plan.layout, self.state)

    def add(self, name: str, popen: subprocess.Popen[bytes], log: Path, command: list[str]) -> None:
        """Record a process we started."""
        self.state.processes[name] = Proc.of(name, popen, log, command)
        self.save()

    def stop(self, *, quiet: bool = False) -> list[str]:
        """Stop everything this stack started (last started first); remove the state file.

        A second Ctrl-C while stopping does not interrupt the stopping (which would leave processes).
        """
        with _shielded():
            return self._stop(quiet=quiet)

    def _stop(self, *, quiet: bool) -> list[str]:
        stopped = []
        for name in reversed(ORDER):
            proc = self.state.processes.get(name)
            if proc is None:
                continue
            if proc.stop(grace=15.0 if name == "label_studio" else 10.0):
                stopped.append(name)
                if not quiet:
                    _say(f"stopped {name.replace('_', ' ')} (pid {proc.pid})")
        self.state.processes.clear()
        with contextlib.suppress(FileNotFoundError):
            self.plan.layout.state.unlink()
        return stopped

    def dead(self) -> list[Proc]:
        """Processes that ended."""
        return [proc for proc in self.state.processes.values() if not proc.alive]


def bring_up(
    stack: Stack, secrets_: Secrets, ls_settings: Mapping[str, str], *, demo: bool, progress: Progress
) -> None:
    """Start every part in order, recording each; raise on the first that fails."""
    plan = stack.plan
    layout = plan.layout

    progress.step(f"Label Studio {plan.ls_version}: its environment")
    with progress.paused():
        env_dir = services.ensure_label_studio_env(plan.ls_version)

    if plan.embedded_s3:
        progress.step(f"S3 store on port {plan.s3_port} (files in {layout.s3})")
        directory = ensure_s3store(progress)
        popen, command = start_s3store(plan, directory)
        stack.add("s3", popen, layout.log("s3"), command)
    else:
        progress.step(f"S3 at {plan.s3_endpoint}")
    ensure_bucket(plan)

    progress.step("Redis")
    if services.redis_available(plan.redis_url):
        progress.note(f"using the Redis that answers at {plan.redis_url} (not ours to stop)")
    else:
        port = redis_port_to_start(plan.redis_url)
        server = services.start_redis(port, layout.redis)
        db = urlparse(plan.redis_url).path.lstrip("/") or "0"
        stack.state.redis_started = True
        stack.state.urls["redis"] = f"redis://{services.LOOPBACK}:{port}/{db}"
        stack.add("redis", server.process, server.log_path, ["redis-server", "--port", str(port)])
        plan = _replace_redis(plan, stack.state.urls["redis"])
        stack.plan = plan
    dropped = claim_redis(plan)
    if dropped:
        progress.note(f"dropped {dropped} cached keys another customlabels stack left in {plan.redis_url}")

    first = not (layout.label_studio / "label_studio.sqlite3").exists()
    progress.step(
        f"Label Studio on port {plan.ls_port}"
        + (" (first start migrates its database: ~30 s)" if first else "")
    )
    server_ls = services.start_label_studio(
        layout.label_studio,
        plan.ls_port,
        username=secrets_.username,
        password=secrets_.password,
        token=secrets_.token,
        log_path=layout.log("label_studio"),
        env_dir=env_dir,
        version=plan.ls_version,
        timeout=LS_START_TIMEOUT,
        extra_env=ls_settings,
        workers=plan.ls_workers,
    )
    stack.add("label_studio", server_ls.process, layout.log("label_studio"), server_ls.command)

    progress.step(f"sync service on port {plan.service_port} and a worker")
    env = service_env(plan, secrets_)
    settings = load_settings(env)
    serve_cmd = customlabels_command("serve", "--port", str(plan.service_port), "--workers", "1")
    serve = spawn(serve_cmd, env=env, log=layout.log("service"), cwd=layout.home)
    stack.add("service", serve, layout.log("service"), serve_cmd)
    worker_cmd = customlabels_command("worker")
    worker = spawn(worker_cmd, env=env, log=layout.log("worker"), cwd=layout.home)
    stack.add("worker", worker, layout.log("worker"), worker_cmd)
    wait_ready(plan.service_url, serve, layout.log("service"))
    wait_worker(plan.redis_url, settings.queue, worker, layout.log("worker"))

    progress.step("projects" + (" and the demo project" if demo else ""))
    changed = repoint_projects(plan, secrets_)
    if changed:
        progress.note(f"pointed {changed} storage(s)/webhook(s) at this stack's ports")
    if demo:
        stack.state.demo = ensure_demo(plan, secrets_, settings)
    stack.save()


def _replace_redis(plan: Plan, url: str) -> Plan:
    return replace(plan, redis_url=url)


def summary(state: State, secrets_: Secrets | None, *, status: str) -> dict[str, Any]:
    """What ``up`` prints (as JSON with ``--json``)."""
    layout = Layout(Path(state.home))
    demo = state.demo
    out: dict[str, Any] = {
        "status": status,
        "home": state.home,
        "detached": state.detached,
        "label_studio": {
            "url": state.urls.get("label_studio"),
            "username": secrets_.username if secrets_ else None,
            "password": secrets_.password if secrets_ else None,
            "token": secrets_.token if secrets_ else None,
            "data": str(layout.label_studio),
        },
        "service": {"url": state.urls.get("service")},
        "s3": {
            "endpoint": state.urls.get("s3"),
            "bucket": state.bucket,
            "prefix": state.prefix,
            "embedded": state.s3_embedded,
            "access_key": S3STORE_KEY if state.s3_embedded else None,
            "secret_key": S3STORE_KEY if state.s3_embedded else None,
            "data": str(layout.s3) if state.s3_embedded else None,
        },
        "redis": {"url": state.urls.get("redis"), "started": state.redis_started},
        "demo": demo,
        "logs": str(layout.logs),
        "pids": {name: proc.pid for name, proc in state.processes.items()},
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


def cmd_up(args: argparse.Namespace) -> int:
    """``customlabels up``."""
    try:
        home = resolve_home(args.home)
        plan = make_plan(home, ls_port=args.ls_port, service_port=args.port, s3_port=args.s3_port)
    except StackError as exc:
        return _fail(args, str(exc))
    layout = plan.layout
    layout.home.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        layout.home.chmod(0o700)
    with home_lock(layout) as locked:
        if not locked:
            state = read_state(layout)
            if state is not None and all(state.alive().values()) and state.processes:
                return _report(
                    args, summary(state, load_secrets(layout, create=False), status="already running")
                )
            return _fail(args, f"another `customlabels up` or `down` is working on {layout.home}")
        return _up_locked(args, plan)


def _up_locked(args: argparse.Namespace, plan: Plan) -> int:
    layout = plan.layout
    previous = read_state(layout)
    if previous is not None:
        alive = previous.alive()
        if alive and all(alive.values()):
            return _report(
                args, summary(previous, load_secrets(layout, create=False), status="already running")
            )
        left = [name for name, up in alive.items() if up]
        if left:
            _say(
                f"a previous stack in {layout.home} is partly running ({', '.join(left)}): stopping it first"
            )
        _stop_state(previous, quiet=False)
    problems = taken_ports(plan)
    if problems:
        return _fail(args, "\n".join(problems))
    try:
        secrets_ = load_secrets(layout, create=True)
        ls_settings = load_ls_env(layout, create=True)
    except (OSError, ValueError, KeyError) as exc:
        return _fail(args, f"cannot read the settings in {layout.home}: {exc}")
    assert secrets_ is not None and ls_settings is not None
    layout.logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(plan, detached=args.detach)
    stack.save()
    handlers = _install_stop_handlers()
    # With --json, plain progress lines (stdout holds the JSON; a redrawn bar would garble captured stderr).
    progress = Progress(6, enabled=True, tty=False if args.json else None)
    try:
        bring_up(stack, secrets_, ls_settings, demo=not args.no_demo, progress=progress)
        progress.finish(f"ready in {time.monotonic() - progress.started:.0f} s")
    except (KeyboardInterrupt, _Stopped):
        progress.close()
        _say("interrupted: stopping what was started")
        stack.stop()
        return 130
    except Exception as exc:  # noqa: BLE001 - whatever failed, stop what was started
        progress.close()
        _say("could not start; stopping what was started")
        stack.stop()
        return _fail(args, _describe(exc))
    finally:
        _restore_handlers(handlers)
    info = summary(stack.state, secrets_, status="started")
    _report(args, info)
    if args.detach:
        return 0
    return _supervise(stack, args)


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc)
    return text if isinstance(exc, StackError | services.ServiceError) else f"{name}: {text}"


def _install_stop_handlers() -> dict[int, Any]:
    """Ctrl-C, SIGTERM (from ``down``) and SIGHUP (terminal closed) all stop the stack.

    SIGINT is handled even when the shell started us with it ignored (a background job).
    """
    old: dict[int, Any] = {}
    handlers: dict[int, Any] = {
        signal.SIGINT: signal.default_int_handler,
        signal.SIGTERM: _raise_stopped,
        signal.SIGHUP: _raise_stopped,
    }
    for sig, handler in handlers.items():
        with contextlib.suppress(ValueError, OSError):
            old[sig] = signal.signal(sig, handler)
    return old


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP only print a word while the block runs (main thread only)."""

    def still(signum: int, frame: Any) -> None:
        _say("still stopping; a moment")

    old: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            old[sig] = signal.signal(sig, still)
    try:
        yield
    finally:
        _restore_handlers(old)


def _restore_handlers(old: Mapping[int, Any]) -> None:
    for sig, handler in old.items():
        with contextlib.suppress(ValueError, OSError, TypeError):
            signal.signal(sig, handler)


def _supervise(stack: Stack, args: argparse.Namespace) -> int:
    """Foreground: wait until Ctrl-C, SIGTERM (``down``) or a part dies; then stop everything."""
    handlers = _install_stop_handlers()
    code = 0
    try:
        while True:
            dead = stack.dead()
            if dead:
                for proc in dead:
                    _say(
                        f"{proc.name.replace('_', ' ')} (pid {proc.pid}) exited; end of {proc.log}:\n"
                        f"{services.log_tail(Path(proc.log), 15)}"
                    )
                _say("stopping everything")
                code = 1
                break
            time.sleep(1.0)
    except (KeyboardInterrupt, _Stopped):
        _say("stopping")
    finally:
        stopped = stack.stop()
        _restore_handlers(handlers)
    if args.json:
        print(json.dumps({"status": "stopped", "stopped": stopped}), flush=True)
    else:
        _say("stopped; the data stays in " + str(stack.plan.layout.home))
    return code


def _report(args: argparse.Namespace, info: Mapping[str, Any]) -> int:
    if args.json:
        print(json.dumps(info), flush=True)
    else:
        print_summary(info)
    return 0


def _fail(args: argparse.Namespace, message: str, code: int = 1) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"status": "error", "error": message}), flush=True)
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


# --- down --------------------------------------------------------------------------------------------------


def _stop_state(state: State, *, quiet: bool) -> list[str]:
    stopped = []
    for name in reversed(ORDER):
        proc = state.processes.get(name)
        if proc is not None and proc.stop(grace=15.0 if name == "label_studio" else 10.0):
            stopped.append(name)
            if not quiet:
                _say(f"stopped {name.replace('_', ' ')} (pid {proc.pid})")
    return stopped


def cmd_down(args: argparse.Namespace) -> int:
    """``customlabels down``: stop what ``up`` started in this home (its data stays)."""
    layout = Layout(resolve_home(args.home))
    state = read_state(layout)
    stopped: list[str] = []
    if state is None:
        return _down_report(args, layout, stopped, "nothing is running from this home")
    supervisor = state.supervisor
    if supervisor is not None and supervisor.alive and supervisor.pid != os.getpid():
        # A foreground `up`: it stops its own processes on SIGTERM and removes the state file.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(supervisor.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while supervisor.alive and time.monotonic() < deadline:
            time.sleep(0.2)
        stopped = [name for name, up in state.alive().items() if not up]
    with home_lock(layout, wait=30) as locked:
        if not locked:
            return _fail(args, f"another `customlabels up` or `down` holds {layout.lock}")
        current = read_state(layout) or state
        stopped += _stop_state(current, quiet=True)
        with contextlib.suppress(FileNotFoundError):
            layout.state.unlink()
    return _down_report(args, layout, sorted(set(stopped), key=ORDER.index), "stopped")


def _down_report(args: argparse.Namespace, layout: Layout, stopped: list[str], status: str) -> int:
    if args.json:
        print(json.dumps({"status": status, "stopped": stopped, "home": str(layout.home)}), flush=True)
    elif stopped:
        print(f"stopped {', '.join(s.replace('_', ' ') for s in stopped)}; the data stays in {layout.home}")
    else:
        print(f"{status} ({layout.home})")
    return 0


# --- parsers -----------------------------------------------------------------------------------------------


def home_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--home`` (the stack's home directory) to a command of the local stack."""
    parser.add_argument(
        "--home", metavar="DIR", help="data dir (default: $CUSTOMLABELS_HOME or ./.customlabels)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")


def port_flags(parser: argparse.ArgumentParser) -> None:
    """Add the ports of the stack's parts to a command of the local stack."""
    parser.add_argument(
        "--ls-port", type=int, metavar="N", help="Label Studio's port (default 8080; CUSTOMLABELS_LS_PORT)"
    )
    parser.add_argument(
        "--port", type=int, metavar="N", help="the sync service's port (default 5000; CUSTOMLABELS_PORT)"
    )
    parser.add_argument(
        "--s3-port", type=int, metavar="N", help="the S3 store's port (default 9000; CUSTOMLABELS_S3_PORT)"
    )


def add_parsers(sub: Any) -> None:
    """Add ``up`` and ``down`` to ``customlabels``' subparsers."""
    p = sub.add_parser(
        "up", help="start Label Studio, S3, Redis, the sync service and a worker on this machine"
    )
    home_flag(p)
    port_flags(p)
    p.add_argument(
        "-d", "--detach", action="store_true", help="return once everything is ready (stop with `down`)"
    )
    p.add_argument("--no-demo", action="store_true", help="do not make the demo project")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop what `customlabels up` started (the data stays)")
    home_flag(p)
    p.set_defaults(func=cmd_down)
