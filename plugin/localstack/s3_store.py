"""The stack's S3: the embedded store (s3rver, an npm package installed on first use with ``npm ci``
from the lock file in ``plugin/s3store/``; it keeps every object in files under ``<home>/s3/``), the
bucket, and a boto3 client of the plan's endpoint.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plugin.localstack.errors import StackError
from plugin.localstack.http_calls import http_get
from plugin.localstack.plan import Plan
from plugin.localstack.processes import LOOPBACK, Proc, log_tail, spawn
from plugin.progress import Progress

S3STORE_VARIABLE = "CUSTOMLABELS_S3STORE_DIR"
S3STORE_FILES = Path(__file__).parent.parent / "s3store"

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
        LOOPBACK,
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
            raise StackError(f"the S3 store exited with code {popen.returncode}:\n{log_tail(log, 20)}")
        try:
            http_get(f"{plan.s3_endpoint}/", timeout=1)
        except OSError:
            if time.monotonic() > deadline:
                Proc.of("s3", popen, log, command).stop(3)
                raise StackError(
                    f"the S3 store did not answer on {plan.s3_endpoint}:\n{log_tail(log, 20)}"
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
