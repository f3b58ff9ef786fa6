"""The stack's record, ``state.json`` in its home: what ``up`` started (pid and start time of each
process), where each part listens, and the demo project; ``down`` and ``doctor`` read it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from plugin.localstack.layout import Layout
from plugin.localstack.private_files import write_private
from plugin.localstack.processes import Proc, say
from sync_service.config import DEFAULTS


def utc_now() -> str:
    """The time now as the stack's records write it (``2026-01-31T12:00:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        )

    def alive(self) -> dict[str, bool]:
        """Which recorded processes still run."""
        return {name: proc.alive for name, proc in self.processes.items()}


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
