"""Label Studio as a local process: its own virtual environment (installed once per machine; its pins
clash with ours) and its server, started on loopback and spoken to only over HTTP.

Used by ``customlabels up`` and by the end-to-end tests. Nothing here imports Label Studio's server
modules.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

from plugin.localstack.errors import ServerStartError
from plugin.localstack.processes import LOOPBACK, log_tail, port_in_use, say, stop_group
from sync_service.errors import LabelStudioError

DEFAULT_LS_VERSION = "1.23.2"
"""The Label Studio server version the product is tested with."""

GUNICORN_REQUIREMENT = "gunicorn>=22,<28"
"""Installed beside Label Studio to serve it with several processes (``start_label_studio(workers=N)``)."""

LS_ENV_VARIABLE = "CUSTOMLABELS_LS_ENV"
"""Environment variable naming Label Studio's virtual environment (overrides the default path)."""

_PASSED_THROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
)
"""The only variables of our environment Label Studio sees. Label Studio reads each of its settings as
``LABEL_STUDIO_<X>``, then ``HEARTEX_<X>``, then plain ``<X>``, so a stray ``USERNAME``, ``PASSWORD``,
``PORT``, ``HOST`` (or ``VIRTUAL_ENV``, ``PYTHONPATH``, ``AWS_*``...) of ours would change it: the
environment is built from this allow-list instead of inherited."""

_LS_SETTINGS = {
    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
    "SSRF_PROTECTION_ENABLED": "false",
    "USE_DEFAULT_BANNED_SUBNETS": "false",
    "LATEST_VERSION_CHECK": "false",
    "COLLECT_ANALYTICS": "false",
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    "PYTHONUNBUFFERED": "1",
}
"""Settings every Label Studio we start gets: the legacy token works (it must be on when the
organization is first created), loopback webhooks and a loopback S3 endpoint are allowed, no calls out."""


# --- Label Studio's environment ---------------------------------------------------------------------


def label_studio_env(version: str = DEFAULT_LS_VERSION) -> Path:
    """The path of Label Studio's virtual environment.

    ``$CUSTOMLABELS_LS_ENV`` when set, else ``~/.cache/customlabels/label-studio-<version>``.
    """
    configured = os.environ.get(LS_ENV_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "customlabels" / f"label-studio-{version}"


def _stamp(env_dir: Path, version: str) -> Path:
    return env_dir / f".customlabels-installed-label-studio-{version}"


def _installed(env_dir: Path, stamp: Path) -> bool:
    # An environment installed before gunicorn was added to it has the stamp of an older content.
    return (
        stamp.exists()
        and GUNICORN_REQUIREMENT in stamp.read_text()
        and (env_dir / "bin" / "label-studio").exists()
        and (env_dir / "bin" / "gunicorn").exists()
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another process installing Label Studio (lock {path})...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def installed_label_studio_version(env_dir: Path) -> str | None:
    """The version of the ``label_studio`` package in ``env_dir`` (None when it is not importable).

    Read by importing the package, never with ``label-studio --version`` (which migrates a database and
    starts a server).
    """
    python = env_dir / "bin" / "python"
    if not python.exists():
        return None
    result = subprocess.run(
        [str(python), "-c", "import label_studio; print(label_studio.__version__)"],
        capture_output=True,
        text=True,
        check=False,
        env=_clean_env({}),
        cwd=env_dir,
        timeout=120,
    )
    return (result.stdout.strip() or None) if result.returncode == 0 else None


def ensure_label_studio_env(
    version: str = DEFAULT_LS_VERSION,
    env_dir: Path | None = None,
    *,
    python: str = "python3",
) -> Path:
    """Make sure Label Studio ``version`` is installed in its own virtual environment; returns its path.

    Creates the environment with ``python -m venv`` and runs ``pip install label-studio==<version>``
    (and gunicorn, to serve it with several processes) unless a stamp written after a successful install
    is there (an environment whose stamp is missing or older, e.g. an interrupted install or one made
    before gunicorn was added, is completed by pip).
    A file lock next to the environment keeps two processes from installing at once. Progress goes to
    stderr; pip's output too.
    """
    env_dir = env_dir if env_dir is not None else label_studio_env(version)
    stamp = _stamp(env_dir, version)
    if _installed(env_dir, stamp):
        return env_dir
    with _file_lock(env_dir.with_name(env_dir.name + ".lock")):
        if _installed(env_dir, stamp):
            return env_dir  # installed by the process we waited for
        started = time.monotonic()
        if not (env_dir / "bin" / "python").exists():
            say(f"creating Label Studio's virtual environment {env_dir} ...")
            subprocess.run([python, "-m", "venv", str(env_dir)], check=True, stdout=sys.stderr)
        say(f"installing label-studio=={version} into {env_dir} (about 1.2 GB; takes a few minutes) ...")
        requirements = [f"label-studio=={version}", GUNICORN_REQUIREMENT]
        pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", *requirements]
        result = subprocess.run(pip, check=False, stdout=sys.stderr, stderr=sys.stderr)
        if result.returncode != 0:
            raise ServerStartError(f"pip install {' '.join(requirements)} failed (exit {result.returncode})")
        found = installed_label_studio_version(env_dir)
        if found != version:
            raise ServerStartError(f"{env_dir} holds label_studio {found!r}, expected {version}")
        stamp.write_text(f"label-studio=={version}\n{GUNICORN_REQUIREMENT}\n")
        say(f"Label Studio {version} ready in {time.monotonic() - started:.0f} s")
    return env_dir


# --- Label Studio ------------------------------------------------------------------------------------


def _clean_env(settings: Mapping[str, str]) -> dict[str, str]:
    env = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
    proxied = any(name in env for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"))
    if proxied:  # loopback (webhooks, a local S3) never goes through a proxy
        for name in ("NO_PROXY", "no_proxy"):
            hosts = [h for h in env.get(name, "").split(",") if h]
            env[name] = ",".join([*hosts, "127.0.0.1", "localhost"])
    env.update(settings)
    return env


@dataclass
class LabelStudioProcess:
    """A Label Studio server we started. ``stop()`` ends its process group."""

    command: list[str]
    url: str
    token: str
    username: str
    password: str
    process: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log."""
        return log_tail(self.log_path, lines)

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the server's process group; kill it if it is still there after ``grace`` seconds."""
        stop_group(self.process, grace)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_label_studio(
    data_dir: Path,
    port: int,
    *,
    username: str,
    password: str,
    token: str,
    log_path: Path,
    env_dir: Path | None = None,
    version: str = DEFAULT_LS_VERSION,
    timeout: float = 180.0,
    extra_env: Mapping[str, str] | None = None,
    workers: int = 0,
) -> LabelStudioProcess:
    """Start Label Studio on ``127.0.0.1:port`` with its data in ``data_dir``; wait until it serves.

    ``workers=0`` runs ``label-studio start``: Label Studio's own development server, one process whose
    threads share one core. ``workers=N`` runs ``label-studio init`` (migrations, the admin) and then
    Label Studio's WSGI application under gunicorn with ``N`` single-threaded processes, the way its
    Docker image serves it under uWSGI (two processes per core there): reads and writes of several
    clients then run on every core.

    The admin ``username`` (an e-mail), ``password`` and legacy API ``token`` (6 to 40 characters) are
    created at the first start of a data dir; later starts keep the first ones. The server runs from
    ``data_dir`` as working directory (a ``./mydata`` folder in the working directory would switch on
    local-file serving) with an environment built from scratch (see ``_PASSED_THROUGH``) plus
    ``extra_env``. Returns once ``GET /health`` says UP and the token authenticates; raises
    ``ServerStartError`` with the end of the log if the server exits or ``timeout`` passes first (the first
    start on an empty data dir migrates its database: about 20 s).
    """
    if not 6 <= len(token) <= 40:
        raise ValueError("the Label Studio token must have 6 to 40 characters")
    if port_in_use(port):
        # Label Studio would silently move to the next free port; we would then talk to someone else.
        raise ServerStartError(f"port {port} on {LOOPBACK} is already in use")
    env_dir = env_dir if env_dir is not None else label_studio_env(version)
    executable = env_dir / "bin" / "label-studio"
    if not executable.exists():
        raise ServerStartError(f"{executable} not found: run ensure_label_studio_env() first")
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = _clean_env(
        {
            **_LS_SETTINGS,
            "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_USERNAME": username,
            "LABEL_STUDIO_PASSWORD": password,
            "LABEL_STUDIO_USER_TOKEN": token,
            **(extra_env or {}),
        }
    )
    if workers > 0:
        _init_label_studio(executable, data_dir, env, log_path, timeout)
        command = [
            str(env_dir / "bin" / "gunicorn"),
            "core.wsgi:application",
            f"--workers={workers}",
            f"--bind={LOOPBACK}:{port}",
            # The sync service's export windows list up to 900 ids in the query string.
            "--limit-request-line=0",
            # No worker timeout, as with the development server: a whole-project export of a big
            # project (ids too sparse for windows) may serialize for minutes.
            "--timeout=0",
            "--graceful-timeout=10",
        ]
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "core.settings.label_studio",
                "PYTHONPATH": str(_label_studio_package(env_dir)),
            }
        )
    else:
        command = [
            str(executable),
            "start",
            "--no-browser",
            "--internal-host",
            LOOPBACK,
            "-p",
            str(port),
            "--data-dir",
            str(data_dir),
        ]
    log = log_path.open("ab")
    try:
        process = subprocess.Popen(
            command,
            cwd=data_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError:
        log.close()
        raise
    server = LabelStudioProcess(
        command=command,
        url=f"http://{LOOPBACK}:{port}",
        token=token,
        username=username,
        password=password,
        process=process,
        log_path=log_path,
        data_dir=data_dir,
        _log=log,
    )
    try:
        _wait_for_label_studio(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _label_studio_package(env_dir: Path) -> Path:
    found = sorted(env_dir.glob("lib/python3*/site-packages/label_studio/core/wsgi.py"))
    if not found:
        raise ServerStartError(f"no label_studio package with core/wsgi.py under {env_dir}/lib")
    return found[-1].parent.parent


def _init_label_studio(
    executable: Path, data_dir: Path, env: Mapping[str, str], log_path: Path, timeout: float
) -> None:
    """``label-studio init``: migrate the database and make the admin and its token (both idempotent)."""
    with log_path.open("ab") as log:
        try:
            done = subprocess.run(
                [str(executable), "init", "--no-browser", "--data-dir", str(data_dir)],
                cwd=data_dir,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise _failed(f"label-studio init did not finish in {timeout:.0f} s", log_path) from exc
    if done.returncode != 0:
        raise _failed(f"label-studio init exited with code {done.returncode}", log_path)


def _failed(reason: str, log_path: Path) -> ServerStartError:
    """A start that failed, with the end of its log."""
    return ServerStartError(f"{reason}\n--- {log_path} (end) ---\n{log_tail(log_path)}")


def _wait_for_label_studio(server: LabelStudioProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    stage = "GET /health"
    last = "no answer yet"
    port = server.url.rsplit(":", 1)[1]
    moved = f"Port {port} is in use"

    def fail(reason: str) -> ServerStartError:
        return _failed(f"Label Studio at {server.url}: {reason}", server.log_path)

    from sync_service.edges.labelstudio import LabelStudio  # noqa: PLC0415 - httpx costs start-up time

    ls = LabelStudio(server.url, server.token, timeout=10, attempts=1)
    while time.monotonic() < deadline:
        if not server.alive:
            raise fail(f"exited with code {server.process.returncode} while waiting for {stage}")
        if stage == "GET /health" and moved in server.log_tail(200):
            # Someone took the port meanwhile: Label Studio moves to the next one; ours is not there.
            raise fail(f"port {port} was taken before the server could listen")
        try:
            if stage == "GET /health":
                if ls.health().get("status") == "UP":
                    stage = "the token to authenticate (GET /api/projects)"
                    continue
                last = "GET /health did not say UP"
            else:
                ls.check_token()
                return
        except LabelStudioError as error:
            last = str(error)
        time.sleep(0.25)
    raise fail(f"not ready after {timeout:.0f} s waiting for {stage}; last answer: {last}")
