"""The one Redis lock the service holds work under: renewed while held, and known lost when it is.

Every lock of the service (a project's publish lock, its dataset lock, its record lock) is a
:class:`RenewingLock` on ``redis.lock.Lock``. A thread renews it every ``ttl / 3`` seconds; when a renewal
finds the lock no longer ours (it expired during a stall and another holder took it), or Redis stays
unreachable for longer than the lock lives, the lock is marked lost. The work under it calls
:meth:`RenewingLock.check` before each step that must not happen twice (an upload, a status write, the
next import batch): a lost lock raises :class:`LockLost` there and the work stops. The lock's token names
its holder (``host:pid:random``) and is the fencing value of the writes made under it (the Lua scripts of
:mod:`sync_service.edges.state` compare it before they change what another holder now owns).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType

from redis import Redis
from redis.exceptions import LockError, LockNotOwnedError, RedisError
from redis.lock import Lock

log = logging.getLogger(__name__)


class LockLost(Exception):
    """The lock was not taken in time, or was lost while held: the work under it must stop."""


def holder_token() -> str:
    """A lock value naming its holder: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"


class RenewingLock:
    """A Redis lock held as a context manager, renewed in the background, that knows when it is lost.

    ``ttl``: seconds the lock outlives a holder that stopped renewing it (killed, stalled). ``wait``:
    seconds to wait for it before :class:`LockLost` (``on_wait`` is called once when it is taken by
    someone else at first). Not re-entrant.
    """

    def __init__(
        self,
        redis: Redis,
        name: str,
        *,
        ttl: float,
        wait: float,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.ttl = ttl
        self.wait = wait
        self._on_wait = on_wait
        self._lock: Lock = redis.lock(name, timeout=ttl, sleep=0.05, thread_local=False)
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._renewer: threading.Thread | None = None
        self.token: str | None = None

    def __enter__(self) -> RenewingLock:
        token = holder_token()
        if not self._lock.acquire(blocking=False, token=token):
            if self._on_wait is not None:
                self._on_wait()
            if not self._lock.acquire(blocking=True, blocking_timeout=self.wait, token=token):
                raise LockLost(f"{self.name}: held by another for more than {self.wait:g} s")
        self.token = token
        self._stop.clear()
        self._lost.clear()
        self._renewer = threading.Thread(target=self._renew, daemon=True, name=f"renew {self.name}")
        self._renewer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        self.token = None
        try:
            self._lock.release()
        except LockNotOwnedError:
            # Expired and perhaps taken by another: nothing of ours to free. The work checked the lock
            # before each of its commits, so it wrote nothing once the lock was gone.
            log.warning("%s: the lock was no longer ours when released", self.name)
        except RedisError as exc:
            log.warning("%s: not released (%s); it expires in %g s", self.name, exc, self.ttl)

    def _renew(self) -> None:
        last_renewed = time.monotonic()
        while not self._stop.wait(self.ttl / 3):
            try:
                self._lock.reacquire()
                last_renewed = time.monotonic()
            except LockNotOwnedError:
                self._mark_lost("it expired and is held by another")
                return
            except (LockError, RedisError) as exc:
                if time.monotonic() - last_renewed >= self.ttl:
                    self._mark_lost(f"Redis unreachable for longer than the lock lives ({exc})")
                    return

    def _mark_lost(self, why: str) -> None:
        log.error("%s: lock lost: %s; the work under it stops", self.name, why)
        self._lost.set()

    @property
    def lost(self) -> bool:
        """Whether the renewal found the lock gone (it may be gone before the next renewal notices)."""
        return self._lost.is_set()

    def held(self) -> bool:
        """Whether the lock is ours now, asked of Redis (False once lost)."""
        if self.token is None or self._lost.is_set():
            return False
        try:
            return self._lock.owned()
        except RedisError:
            return False

    def check(self) -> None:
        """Raise :class:`LockLost` unless the lock is still ours (asks Redis: one GET)."""
        if not self.held():
            raise LockLost(f"{self.name}: the lock was lost (expired during a stall, or Redis away)")
