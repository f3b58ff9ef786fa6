"""The stack's record, ``state.json`` in its home: what ``up`` started (pid and start time of each
process), the process that supervises them, the crashes it saw and what it did about each, where each
part listens, and the demo project; ``down`` and ``doctor`` read it.

Readers take what they know and ignore the rest: a record written before crashes were kept reads with
none, and one written before a detached stack had a supervisor reads with ``supervisor`` null.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from plugin.localstack.layout import Layout
from plugin.localstack.plan import Plan
from plugin.localstack.private_files import write_private
from plugin.localstack.processes import Proc, say
from sync_service.config import DEFAULTS


def utc_now() -> str:
    """The time now as the stack's records write it (``2026-01-31T12:00:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exit_in_words(code: int | None) -> str:
    """A process's exit code (a ``Popen.returncode``: negative for a signal), in words."""
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


KEPT_CRASHES = 20
"""Crashes kept per part in the record (the oldest go first)."""


@dataclass(frozen=True)
class Crash:
    """A part of the stack that ended without being asked to, and what the supervisor did about it."""

    at: str
    pid: int
    exit_code: int | None  # None when the process was not ours to wait for (started by a detached `up`)
    restart_in: float | None  # seconds until the restart; None: crashed too often, left stopped

    def to_json(self) -> dict[str, Any]:
        """The state-file record."""
        return {"at": self.at, "pid": self.pid, "exit_code": self.exit_code, "restart_in": self.restart_in}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Crash:
        """Read a state-file record."""
        code, delay = raw.get("exit_code"), raw.get("restart_in")
        return cls(
            at=str(raw.get("at", "")),
            pid=int(raw.get("pid", 0)),
            exit_code=int(code) if code is not None else None,
            restart_in=float(delay) if delay is not None else None,
        )

    @property
    def how(self) -> str:
        """How the process ended, in words (``killed by SIGKILL``, ``exit code 3``)."""
        return exit_in_words(self.exit_code)

    @property
    def given_up(self) -> bool:
        """Whether the supervisor left the part stopped after this crash."""
        return self.restart_in is None


@dataclass
class StackRecord:
    """``state.json``: what ``up`` started and where it listens (no secrets)."""

    home: str
    urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, Proc] = field(default_factory=dict)
    supervisor: Proc | None = None
    detached: bool = False
    started_at: str = ""
    bucket: str = DEFAULTS.bucket
    prefix: str = DEFAULTS.prefix
    redis_started: bool = False
    s3_embedded: bool = True
    demo: dict[str, Any] | None = None
    crashes: dict[str, list[Crash]] = field(default_factory=dict)

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
            "crashes": {name: [c.to_json() for c in crashes] for name, crashes in self.crashes.items()},
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> StackRecord:
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
            bucket=str(raw.get("bucket", DEFAULTS.bucket)),
            prefix=str(raw.get("prefix", DEFAULTS.prefix)),
            redis_started=bool(raw.get("redis_started", False)),
            s3_embedded=bool(raw.get("s3_embedded", True)),
            demo=raw.get("demo"),
            crashes={
                str(name): [Crash.from_json(c) for c in crashes]
                for name, crashes in (raw.get("crashes") or {}).items()
            },
        )

    def alive(self) -> dict[str, bool]:
        """Which recorded processes still run."""
        return {name: proc.alive for name, proc in self.processes.items()}

    def add_crash(self, name: str, crash: Crash) -> None:
        """Keep ``crash`` of part ``name`` (the last :data:`KEPT_CRASHES` of each part)."""
        self.crashes[name] = [*self.crashes.get(name, []), crash][-KEPT_CRASHES:]

    def given_up(self) -> list[str]:
        """The parts the supervisor left stopped after too many crashes."""
        return [name for name, crashes in self.crashes.items() if crashes and crashes[-1].given_up]


def plan_of_record(plan: Plan, record: StackRecord) -> Plan:
    """The plan of the running stack: its ports and URLs win over flags and variables."""

    def port(url: str | None, default: int) -> int:
        parsed = urlparse(url or "")
        return parsed.port or default

    return replace(
        plan,
        ls_port=port(record.urls.get("label_studio"), plan.ls_port),
        service_port=port(record.urls.get("service"), plan.service_port),
        s3_port=port(record.urls.get("s3"), plan.s3_port) if record.s3_embedded else plan.s3_port,
        external_s3=None if record.s3_embedded else record.urls.get("s3"),
        redis_url=record.urls.get("redis", plan.redis_url),
        bucket=record.bucket,
        prefix=record.prefix,
    )


def read_record(layout: Layout) -> StackRecord | None:
    """The state file, or None when there is none (or it cannot be read)."""
    try:
        return StackRecord.from_json(json.loads(layout.state.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        say(f"ignoring unreadable {layout.state}: {exc}")
        return None


def write_record(layout: Layout, record: StackRecord) -> None:
    """Replace the state file (mode 0600)."""
    write_private(layout.state, json.dumps(record.to_json(), indent=2) + "\n")
