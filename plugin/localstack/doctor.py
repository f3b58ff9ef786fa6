"""``customlabels doctor``: check each part of the local stack and say what to fix.

Reads what ``customlabels up`` recorded in its home (``state.json``: ports and processes), then checks,
each on its own: the secrets file's mode, the processes, Label Studio (installed version, read by
importing it in its own environment; the settings it runs with, read from the running process or
``label-studio.env``: loopback webhooks and S3 allowed, legacy token on; ``/health``; the token), Redis
(version) and an RQ worker on the queue, S3 (the store's install, the bucket), the service's
``/readyz``, that every project's storage and webhook point at this stack, and how much Label Studio's
``export/`` folder holds. Exit code 0 when no check fails, 1 otherwise; ``--json`` prints ``{"ok": ...,
"checks": [{"name", "status", "detail", "fix"}]}``.

``doctor --prune-exports [--older-than HOURS]`` runs no check: it deletes the files Label Studio leaves
in ``<its data dir>/export/`` (two per export request, never read again, never deleted by it; the sync
service asks for an export at every publish), only those named as Label Studio names them and older
than HOURS (default 1), and says how many and how many bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin.localstack.commands import home_flag, port_flags
from plugin.localstack.demo import project_links
from plugin.localstack.errors import StackError
from plugin.localstack.http_calls import json_get
from plugin.localstack.label_studio import installed_label_studio_version, label_studio_env
from plugin.localstack.layout import Layout, resolve_home
from plugin.localstack.plan import Plan, make_plan
from plugin.localstack.private_files import (
    LS_ENV_DEFAULTS,
    Secrets,
    load_ls_env,
    load_secrets,
    ssrf_allows_loopback,
)
from plugin.localstack.record import StackRecord, plan_of_record, read_record
from plugin.localstack.redis_db import redis_owner, rq_worker_pids
from plugin.localstack.redis_server import redis_version
from plugin.localstack.s3_store import node_binary, s3_client, s3store_dir, s3store_version
from sync_service.errors import LabelStudioError

# --- checks ------------------------------------------------------------------------------------------------


@dataclass
class Check:
    """One finding of ``doctor``."""

    name: str
    status: str  # "ok" | "warn" | "fail"
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        """As printed with ``--json``."""
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def _proc_environ(pid: int) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return out


def diagnose(layout: Layout, plan: Plan, record: StackRecord | None) -> list[Check]:
    """Every check of ``doctor``, in order."""
    checks: list[Check] = []
    up_hint = "run `customlabels up`"
    if not layout.home.exists():
        return [Check("home", "fail", f"{layout.home} does not exist", up_hint)]
    secrets_ = load_secrets(layout, create=False)
    if secrets_ is None:
        checks.append(Check("secrets", "fail", f"{layout.secrets} is missing", up_hint + " (it makes one)"))
    else:
        mode = layout.secrets.stat().st_mode & 0o777
        checks.append(
            Check("secrets", "ok", f"{layout.secrets} (mode {mode:o})")
            if mode & 0o077 == 0
            else Check(
                "secrets",
                "fail",
                f"{layout.secrets} is readable by others (mode {mode:o})",
                f"chmod 600 {layout.secrets}",
            )
        )

    checks += check_processes(layout, record)
    checks += _check_label_studio(layout, plan, record, secrets_)
    checks += _check_redis(plan, record)
    checks += _check_s3(plan)
    checks.append(_check_service(plan))
    if secrets_ is not None:
        checks.append(_check_links(plan, secrets_))
    if layout.label_studio.is_dir():
        checks.append(check_exports(export_dir(layout)))
    return checks


def check_processes(layout: Layout, record: StackRecord | None) -> list[Check]:
    """The processes ``up`` recorded, the restarts of each after a crash, and their supervisor."""
    up_hint = "run `customlabels up`"
    if record is None:
        return [Check("processes", "fail", f"nothing started by `customlabels up` in {layout.home}", up_hint)]
    checks = []
    alive = record.alive()
    given_up = record.given_up()
    dead = [name for name, up in alive.items() if not up]
    if dead:
        logs = ", ".join(record.processes[name].log for name in dead)
        watched = record.supervisor is not None and record.supervisor.alive
        states = [
            f"{name} (left stopped after {len(record.crashes[name])} crashes)"
            if name in given_up
            else f"{name} (being restarted)"
            if watched
            else name
            for name in dead
        ]
        checks.append(
            Check(
                "processes",
                "fail",
                f"exited: {', '.join(states)}",
                f"read {logs}; then `customlabels down && customlabels up`",
            )
        )
    else:
        pids = ", ".join(f"{name} {proc.pid}" for name, proc in record.processes.items())
        checks.append(Check("processes", "ok", f"running: {pids}"))
    if record.crashes:
        parts = []
        for name, crashes in record.crashes.items():
            last = crashes[-1]
            then = "left stopped" if last.given_up else "restarted"
            parts.append(f"{name} {len(crashes)} (last at {last.at}, {last.how}, {then})")
        logs = ", ".join(str(layout.log(name)) for name in record.crashes)
        checks.append(
            Check(
                "restarts",
                "fail" if given_up else "warn",
                "crashed and restarted: " + "; ".join(parts),
                f"read {logs}",
            )
        )
    supervisor = record.supervisor
    if record.processes and (supervisor is None or not supervisor.alive):
        checks.append(
            Check(
                "supervisor",
                "warn",
                "nothing watches the stack: a part that crashes stays down"
                + (f" (supervisor pid {supervisor.pid} is gone)" if supervisor is not None else ""),
                "`customlabels down && customlabels up`",
            )
        )
    elif supervisor is not None:
        checks.append(Check("supervisor", "ok", f"pid {supervisor.pid} restarts a part that crashes"))
    return checks


def _check_label_studio(
    layout: Layout, plan: Plan, record: StackRecord | None, secrets_: Secrets | None
) -> list[Check]:
    checks = []
    env_dir = label_studio_env(plan.ls_version)
    installed = installed_label_studio_version(env_dir)
    if installed is None:
        checks.append(
            Check(
                "label studio install",
                "fail",
                f"no Label Studio in {env_dir}",
                "run `customlabels up` (installs it)",
            )
        )
    elif installed != plan.ls_version:
        checks.append(
            Check(
                "label studio install",
                "warn",
                f"{env_dir} holds {installed}, tested with {plan.ls_version}",
                f"remove {env_dir} and run `customlabels up`",
            )
        )
    else:
        checks.append(Check("label studio install", "ok", f"label-studio {installed} in {env_dir}"))

    file_settings = load_ls_env(layout, create=False)
    effective = {**LS_ENV_DEFAULTS, **(file_settings or {})}
    source = str(layout.ls_env) if file_settings is not None else "defaults"
    proc = record.processes.get("label_studio") if record else None
    if proc is not None and proc.alive:
        running = _proc_environ(proc.pid)
        if running is not None:
            effective, source = running, f"the running server (pid {proc.pid})"
    problems = []
    if not ssrf_allows_loopback(effective):
        problems.append("SSRF protection blocks loopback webhooks and the loopback S3 endpoint")
    if effective.get("LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN", "").lower() != "true":
        problems.append("the legacy API token is off")
    if problems:
        checks.append(
            Check(
                "label studio settings",
                "fail",
                f"{source}: " + "; ".join(problems),
                f"set SSRF_PROTECTION_ENABLED=false (or USE_DEFAULT_BANNED_SUBNETS=false) and "
                f"LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true in {layout.ls_env}, then "
                "`customlabels down && customlabels up`",
            )
        )
    else:
        checks.append(Check("label studio settings", "ok", f"{source}: loopback allowed, legacy token on"))

    from sync_service.edges.labelstudio import LabelStudio  # noqa: PLC0415 - httpx costs start-up time

    ls = LabelStudio(plan.ls_url, secrets_.token if secrets_ is not None else "", timeout=10, attempts=1)
    try:
        ls.health()
    except LabelStudioError as exc:
        if exc.status is None:
            checks.append(
                Check(
                    "label studio", "fail", f"{plan.ls_url} does not answer: {exc}", "run `customlabels up`"
                )
            )
        else:
            checks.append(
                Check(
                    "label studio",
                    "fail",
                    f"{plan.ls_url}/health: HTTP {exc.status}",
                    f"read {layout.log('label_studio')}",
                )
            )
        return checks
    try:
        release = ls.version().get("release")
    except LabelStudioError:
        release = None
    checks.append(Check("label studio", "ok", f"{plan.ls_url} is up (release {release or '?'})"))
    if secrets_ is not None:
        try:
            ls.check_token()
            checks.append(Check("label studio token", "ok", "the API token in secrets.json works"))
        except LabelStudioError as exc:
            checks.append(
                Check(
                    "label studio token",
                    "fail",
                    f"HTTP {exc.status}: {(exc.detail or str(exc))[:200]}",
                    f"the token in {layout.secrets} is not the one Label Studio's database knows: restore the "
                    f"secrets.json of {layout.label_studio}, or remove both to start over",
                )
            )
    return checks


def _check_redis(plan: Plan, record: StackRecord | None) -> list[Check]:
    version = redis_version(plan.redis_url)
    if version is None:
        return [
            Check(
                "redis", "fail", f"no Redis answers at {plan.redis_url}", "run `customlabels up` (starts one)"
            )
        ]
    ours = "started by up" if record is not None and record.redis_started else "not started by up"
    checks = [Check("redis", "ok", f"Redis {version} at {plan.redis_url} ({ours})")]
    owner = redis_owner(plan.redis_url)
    if owner is not None and owner.get("home") != str(plan.layout.home):
        checks.append(
            Check(
                "redis database",
                "fail",
                f"{plan.redis_url} is now used by the customlabels stack in {owner.get('home')}",
                "give each home its own database (CUSTOMLABELS_REDIS_URL=redis://127.0.0.1:6379/N), "
                "then `customlabels down && customlabels up`",
            )
        )
    queue = os.environ.get("CUSTOMLABELS_QUEUE", "").strip() or "customlabels"
    pids = rq_worker_pids(plan.redis_url, queue)
    if pids:
        checks.append(
            Check(
                "worker", "ok", f"{len(pids)} worker(s) on queue {queue!r} (pid {', '.join(map(str, pids))})"
            )
        )
    else:
        checks.append(
            Check(
                "worker",
                "fail",
                f"no worker listens on queue {queue!r}",
                "run `customlabels up` (or `customlabels worker`)",
            )
        )
    return checks


def _check_s3(plan: Plan) -> list[Check]:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - botocore costs start-up time

    checks = []
    if plan.embedded_s3:
        directory = s3store_dir()
        version = s3store_version(directory)
        node = node_binary()
        if version is None or node is None:
            checks.append(
                Check(
                    "s3 store install",
                    "fail",
                    f"s3rver is not installed in {directory}" if node else "node not found",
                    "run `customlabels up` (installs it; needs Node.js and npm)",
                )
            )
        else:
            checks.append(Check("s3 store install", "ok", f"s3rver {version} in {directory}"))
    try:
        s3_client(plan).head_bucket(Bucket=plan.bucket)
        checks.append(Check("s3", "ok", f"bucket {plan.bucket} at {plan.s3_endpoint}"))
    except ClientError as exc:
        checks.append(
            Check(
                "s3",
                "fail",
                f"bucket {plan.bucket} at {plan.s3_endpoint}: {exc}",
                "check CUSTOMLABELS_BUCKET and the AWS_* credentials, or run `customlabels up`",
            )
        )
    except BotoCoreError as exc:
        checks.append(
            Check("s3", "fail", f"{plan.s3_endpoint} does not answer: {exc}", "run `customlabels up`")
        )
    return checks


def _check_service(plan: Plan) -> Check:
    status, body = json_get(f"{plan.service_url}/readyz")
    if status == 0:
        return Check("service", "fail", f"{plan.service_url} does not answer", "run `customlabels up`")
    if status == 200:
        return Check("service", "ok", f"{plan.service_url}/readyz: ready")
    failing = (
        [name for name, ok in ((body or {}).get("checks") or {}).items() if not ok]
        if isinstance(body, dict)
        else []
    )
    return Check(
        "service",
        "fail",
        f"{plan.service_url}/readyz: HTTP {status}, not reachable from it: {', '.join(failing) or '?'}",
        f"read {plan.layout.log('service')}",
    )


def _check_links(plan: Plan, secrets_: Secrets) -> Check:
    from sync_service.domain.bootstrap import WEBHOOK_PATH  # noqa: PLC0415 - boto3 and httpx cost start-up time

    webhook = plan.service_url + WEBHOOK_PATH
    try:
        links = project_links(plan, secrets_)
    except Exception as exc:  # noqa: BLE001 - S3 or Label Studio down: reported by their own checks
        return Check("projects", "warn", f"could not list the projects: {type(exc).__name__}: {exc}")
    wrong = []
    for link in links:
        if not link["storages"]:
            wrong.append(f"project {link['project']} has no S3 storage on bucket {plan.bucket}")
        wrong += [
            f"project {link['project']} storage {s['id']} uses {s['endpoint']}"
            for s in link["storages"]
            if s["endpoint"] != plan.s3_endpoint
        ]
        if not link["webhooks"]:
            wrong.append(f"project {link['project']} has no webhook to the service")
        wrong += [
            f"project {link['project']} webhook {h['id']} goes to {h['url']}"
            for h in link["webhooks"]
            if h["url"] != webhook
        ]
    if wrong:
        return Check(
            "projects",
            "fail",
            "; ".join(wrong[:5]),
            "`customlabels up` points storages and webhooks at its ports; or run `customlabels project create` again",
        )
    return Check(
        "projects", "ok", f"{len(links)} project(s): storages on {plan.s3_endpoint}, webhooks to {webhook}"
    )


# --- Label Studio's export files ---------------------------------------------------------------------------

EXPORT_NAME = re.compile(
    r"project-[0-9]+-at-[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9a-f]{8}(-info)?\.json"
)
"""The names Label Studio gives the two files of an export request (``data_export/models.py``:
``project-<id>-at-<%Y-%m-%d-%H-%M>-<md5[:8]>.json`` and the same with ``-info``)."""
EXPORTS_WARN_FILES = 1_000
"""``doctor`` warns when the export folder holds more files than this."""
EXPORTS_WARN_BYTES = 500 * 1000 * 1000
"""... or more bytes than this (500 MB)."""
DEFAULT_PRUNE_HOURS = 1.0
"""``--prune-exports`` keeps the files younger than this (an export may still be written or read)."""


def export_dir(layout: Layout) -> Path:
    """Where Label Studio writes a copy of every export (``EXPORT_DIR``: its data dir's ``export/``)."""
    return layout.label_studio / "export"


def _files(folder: Path) -> list[tuple[str, os.stat_result]]:
    """The regular files directly in ``folder`` (links and folders are not), with their stat."""
    try:
        with os.scandir(folder) as entries:
            return [
                (entry.name, entry.stat(follow_symlinks=False))
                for entry in entries
                if entry.is_file(follow_symlinks=False)
            ]
    except FileNotFoundError:
        return []


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def check_exports(folder: Path) -> Check:
    """How many files and bytes the export folder holds; a warning above :data:`EXPORTS_WARN_FILES` files
    or :data:`EXPORTS_WARN_BYTES` bytes."""
    files = _files(folder)
    count, size = len(files), sum(stat.st_size for _, stat in files)
    detail = f"{folder}: {count:,} file(s), {_megabytes(size)}"
    if count > EXPORTS_WARN_FILES or size > EXPORTS_WARN_BYTES:
        return Check(
            "label studio exports",
            "warn",
            detail
            + " (Label Studio keeps a copy of every export; the sync service exports at every publish)",
            f"`customlabels doctor --prune-exports` deletes Label Studio's export files older than "
            f"{DEFAULT_PRUNE_HOURS:g} hour (--older-than HOURS); run it from cron on a long-running install",
        )
    return Check("label studio exports", "ok", detail)


@dataclass(frozen=True)
class Pruned:
    """What :func:`prune_exports` did."""

    folder: Path
    removed: int
    removed_bytes: int
    kept: int  # export files younger than the limit
    failed: tuple[str, ...]  # "<name>: <error>" for files that could not be deleted

    def to_json(self) -> dict[str, Any]:
        """As printed with ``--json``."""
        return {
            "folder": str(self.folder),
            "removed": self.removed,
            "removed_bytes": self.removed_bytes,
            "kept": self.kept,
            "failed": list(self.failed),
        }


def prune_exports(folder: Path, *, older_than_hours: float, now: float | None = None) -> Pruned:
    """Delete Label Studio's export files (:data:`EXPORT_NAME`) in ``folder`` last modified more than
    ``older_than_hours`` before ``now`` (default: the current time); nothing else is touched."""
    limit = (time.time() if now is None else now) - older_than_hours * 3600
    removed = removed_bytes = kept = 0
    failed = []
    for name, stat in _files(folder):
        if EXPORT_NAME.fullmatch(name) is None:
            continue
        if stat.st_mtime >= limit:
            kept += 1
            continue
        try:
            (folder / name).unlink()
        except FileNotFoundError:
            continue  # gone meanwhile
        except OSError as exc:
            failed.append(f"{name}: {exc.strerror or exc}")
            continue
        removed += 1
        removed_bytes += stat.st_size
    return Pruned(folder, removed, removed_bytes, kept, tuple(failed))


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a number of hours, 0 or more (got {text!r})")
    return value


def add_parser(sub: Any) -> None:
    """Add ``doctor`` to ``customlabels``' subparsers (``--home``, ``--json`` and the ports as ``up``'s)."""
    parser = sub.add_parser("doctor", help="check each part of the local stack and say what to fix")
    home_flag(parser)
    port_flags(parser)
    parser.add_argument(
        "--prune-exports",
        action="store_true",
        help="check nothing; delete Label Studio's export files (project-<id>-at-<date>-<md5>[-info].json "
        "in <home>/label-studio/export/) older than --older-than",
    )
    parser.add_argument(
        "--older-than",
        type=_hours,
        metavar="HOURS",
        help=f"with --prune-exports: keep the files younger than this (default {DEFAULT_PRUNE_HOURS:g})",
    )
    parser.set_defaults(func=cmd_doctor)


def _cmd_prune_exports(layout: Layout, args: argparse.Namespace) -> int:
    hours = DEFAULT_PRUNE_HOURS if args.older_than is None else args.older_than
    pruned = prune_exports(export_dir(layout), older_than_hours=hours)
    ok = not pruned.failed
    if args.json:
        print(json.dumps({"ok": ok, "home": str(layout.home), "older_than_hours": hours, **pruned.to_json()}))
        return 0 if ok else 1
    print(
        f"removed {pruned.removed:,} export file(s), {_megabytes(pruned.removed_bytes)}, older than {hours:g} "
        f"hour(s) from {pruned.folder}; kept {pruned.kept:,} younger"
    )
    for failure in pruned.failed:
        print(f"error: could not delete {failure}", file=sys.stderr)
    return 0 if ok else 1


def cmd_doctor(args: argparse.Namespace) -> int:
    """``customlabels doctor``: check each part; exit 0 when all is well, 1 otherwise. With
    ``--prune-exports``: delete old export files; exit 0, or 1 when one could not be deleted."""
    layout = Layout(resolve_home(args.home))
    if args.prune_exports:
        return _cmd_prune_exports(layout, args)
    if args.older_than is not None:
        return _usage_error(args, "--older-than goes with --prune-exports")
    record = read_record(layout)
    try:
        plan = make_plan(layout.home, ls_port=args.ls_port, service_port=args.port, s3_port=args.s3_port)
    except StackError as exc:
        return _usage_error(args, str(exc))
    if record is not None:
        plan = plan_of_record(plan, record)
    checks = diagnose(layout, plan, record)
    ok = all(check.status != "fail" for check in checks)
    if args.json:
        print(json.dumps({"ok": ok, "home": str(layout.home), "checks": [c.to_json() for c in checks]}))
    else:
        marks = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
        for check in checks:
            print(f"[{marks[check.status]}] {check.name}: {check.detail}")
            if check.status != "ok" and check.fix:
                print(f"       fix: {check.fix}")
        print("all is well" if ok else "some checks failed: see the fixes above")
    return 0 if ok else 1


def _usage_error(args: argparse.Namespace, message: str) -> int:
    if args.json:
        print(json.dumps({"ok": False, "error": message}))
    print(f"error: {message}", file=sys.stderr)
    return 2
