"""A loopback proxy between Label Studio's webhooks and the service: drops, duplicates and reorders them.

The project's webhook is registered at this proxy's URL. Label Studio gets its 200 at once (it waits for
the answer inside the annotator's request); each delivery is then, by seeded chance, dropped, sent twice,
or held for a while so that later ones overtake it. ``delivered`` keeps every body received, so a test
can also replay them itself (all of them again, in reverse order).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    path: str = field(compare=False)
    headers: dict[str, str] = field(compare=False)
    body: bytes = field(compare=False)


class HookProxy:
    """See the module docstring. ``target`` is the service's base URL."""

    def __init__(self, target: str, *, seed: int = 0) -> None:
        self.target = target.rstrip("/")
        self.drop_rate = 0.0
        self.duplicate_rate = 0.0
        self.delay_rate = 0.0
        self.delay_seconds = (0.3, 2.5)
        self.counts: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.received: list[bytes] = []
        self._rng = random.Random(seed)
        self._seq = itertools.count()
        self._due: list[_Due] = []
        self._cond = threading.Condition()
        self._stop = False
        self._server: ThreadingHTTPServer | None = None
        self._sender: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The proxy's base URL (register the webhook at ``url + path``)."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def faults(self, *, drop: float = 0.0, duplicate: float = 0.0, delay: float = 0.0) -> None:
        """Set the fault rates (0 everywhere: every delivery forwarded once, in order)."""
        with self._cond:
            self.drop_rate, self.duplicate_rate, self.delay_rate = drop, duplicate, delay

    def _accept(self, path: str, headers: dict[str, str], body: bytes) -> None:
        with self._cond:
            self.received.append(body)
            self.counts["received"] += 1
            if self._rng.random() < self.drop_rate:
                self.counts["dropped"] += 1
                return
            now = time.monotonic()
            at = now
            if self._rng.random() < self.delay_rate:
                at += self._rng.uniform(*self.delay_seconds)
                self.counts["delayed"] += 1
            heapq.heappush(self._due, _Due(at, next(self._seq), path, headers, body))
            if self._rng.random() < self.duplicate_rate:
                later = at + self._rng.uniform(0.0, self.delay_seconds[1])
                heapq.heappush(self._due, _Due(later, next(self._seq), path, headers, body))
                self.counts["duplicated"] += 1
            self._cond.notify_all()

    def _send_loop(self) -> None:
        with httpx.Client(base_url=self.target, timeout=10) as client:
            while True:
                with self._cond:
                    while not self._stop and (not self._due or self._due[0].at > time.monotonic()):
                        wait = self._due[0].at - time.monotonic() if self._due else None
                        self._cond.wait(wait)
                    if self._stop:
                        return
                    item = heapq.heappop(self._due)
                try:
                    status = client.post(item.path, content=item.body, headers=item.headers).status_code
                except httpx.HTTPError:
                    status = 0
                with self._cond:
                    self.counts["forwarded"] += 1
                    self.statuses[status] += 1
                    self._cond.notify_all()

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every held delivery has been forwarded."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._due:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._due)} webhook deliveries still held")
                self._cond.wait(min(left, 0.2))

    def start(self) -> HookProxy:
        """Serve in a thread; forward from another."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                keep = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                proxy._accept(self.path, keep, body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="hook-proxy").start()
        self._sender = threading.Thread(target=self._send_loop, daemon=True, name="hook-sender")
        self._sender.start()
        return self

    def stop(self) -> None:
        """Stop serving and forwarding (held deliveries are dropped)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._sender is not None:
            self._sender.join(10)
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown()
                self._server.server_close()
            self._server = None
