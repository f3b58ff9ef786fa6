"""Where one local stack keeps its files: the home directory (``--home``, ``$CUSTOMLABELS_HOME`` or
``./.customlabels``), the paths inside it, and the home's lock held by ``up`` and ``down``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

HOME_VARIABLE = "CUSTOMLABELS_HOME"
DEFAULT_HOME = ".customlabels"


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
