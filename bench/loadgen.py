"""A small loopback HTTP/1.1 load generator: several processes, each with keep-alive connections.

Used by ``bench_sync.py`` (``wrk`` is not installed on these machines). Each process runs one
``selectors`` loop over its own connections on raw sockets: a request is a prebuilt bytes object (no
per-request encoding), a response is read until its headers and ``Content-Length`` body are in. Two modes:

* closed loop (``rate=None``): every connection sends its next request as soon as the answer to the
  previous one is in (wrk's model; measures the most the server does with that many connections);
* open loop (``rate`` requests/s over all processes): requests are *due* at a fixed schedule and go out
  on the first free connection; a request's latency counts from when it was due, not when it was sent,
  so a server that stalls is charged for the queue it causes (no coordinated omission, as wrk2). The
  time from when each request was actually sent is kept too: when the two differ, the generator itself
  was late (its processes waited for a CPU).

``null_server`` answers every request with a fixed 202 without parsing more than the headers: the
generator run against it shows how many requests/s the generator itself can make.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import re
import resource
import selectors
import socket
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:\s*close", re.IGNORECASE)


def build_request(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str], method: str = "POST"
) -> bytes:
    """One request, bytes ready for the wire (keep-alive)."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "User-Agent: bench-loadgen",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


@dataclass
class LoadResult:
    """What one or several load processes saw."""

    started: int = 0  # requests sent
    completed: int = 0  # answers read within the run
    errors: int = 0  # connections lost or refused
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # seconds, one per completed request
    service: list[float] = field(default_factory=list)  # the same from when it was sent (not due)
    cpu_seconds: float = 0.0  # user + system time of the load processes
    seconds: float = 0.0  # the measured window

    def merge(self, other: LoadResult) -> None:
        """Add another process's figures to these."""
        self.started += other.started
        self.completed += other.completed
        self.errors += other.errors
        for code, count in other.statuses.items():
            self.statuses[code] = self.statuses.get(code, 0) + count
        self.latencies.extend(other.latencies)
        self.service.extend(other.service)
        self.cpu_seconds += other.cpu_seconds
        self.seconds = max(self.seconds, other.seconds)

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.completed / self.seconds if self.seconds else 0.0

    def percentile(self, p: float, *, service: bool = False) -> float:
        """The ``p``-th percentile latency (``service``: from when sent), seconds (nearest rank)."""
        values = self.service if service else self.latencies
        if not values:
            return float("nan")
        ordered = sorted(values)
        rank = min(len(ordered) - 1, max(0, round(p / 100.0 * len(ordered) + 0.5) - 1))
        return ordered[rank]


class _Conn:
    __slots__ = ("address", "buf", "due", "sent", "sock")

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sock = socket.create_connection(address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.due = 0.0
        self.sent = 0.0

    def reopen(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.sock = socket.create_connection(self.address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf.clear()


def _answer(buf: bytearray) -> tuple[int, int, bool] | None:
    """(status, bytes used, close) of the first complete message in ``buf``, or None if incomplete
    (status 0 for a request)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end])
    match = _LENGTH.search(head)
    length = int(match.group(1)) if match else 0
    total = end + 4 + length
    if len(buf) < total:
        return None
    status = int(head[9:12]) if head.startswith(b"HTTP/") else 0
    return status, total, bool(_CLOSE.search(head))


def run_process(
    host: str,
    port: int,
    requests: Sequence[bytes],
    connections: int,
    start_at: float,
    duration: float,
    rate: float | None,
) -> LoadResult:
    """One load process: ``connections`` keep-alive connections from ``start_at`` (``time.monotonic``,
    which all processes of a machine share) for ``duration`` seconds; see the module docstring."""
    result = LoadResult()
    address = (host, port)
    conns = [_Conn(address) for _ in range(connections)]
    selector = selectors.DefaultSelector()
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    free: deque[_Conn] = deque(conns)
    due: deque[float] = deque()
    interval = 1.0 / rate if rate else 0.0
    next_due = start_at
    end = start_at + duration
    counter = 0
    statuses: dict[int, int] = {}
    latencies = result.latencies
    service = result.service
    while time.monotonic() < start_at:
        time.sleep(min(0.01, max(0.0, start_at - time.monotonic())))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime

    def send(conn: _Conn, due_at: float) -> None:
        nonlocal counter
        conn.due = due_at
        conn.sent = time.monotonic()
        try:
            conn.sock.sendall(requests[counter % len(requests)])
        except OSError:
            result.errors += 1
            selector.unregister(conn.sock)
            conn.reopen()
            selector.register(conn.sock, selectors.EVENT_READ, conn)
            conn.sock.sendall(requests[counter % len(requests)])
        counter += 1
        result.started += 1

    while True:
        now = time.monotonic()
        if now >= end:
            break
        if rate:
            while next_due <= now and next_due < end:
                due.append(next_due)
                next_due += interval
            while due and free:
                send(free.popleft(), due.popleft())
            timeout = max(0.0, min(next_due, end) - time.monotonic())
        else:
            while free:
                send(free.popleft(), now)
            timeout = end - now
        for key, _ in selector.select(timeout):
            conn = key.data
            try:
                chunk = conn.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                result.errors += 1
                selector.unregister(conn.sock)
                conn.reopen()
                selector.register(conn.sock, selectors.EVENT_READ, conn)
                free.append(conn)
                continue
            conn.buf += chunk
            answer = _answer(conn.buf)
            if answer is None:
                continue
            status, used, close = answer
            now = time.monotonic()
            latencies.append(now - conn.due)
            service.append(now - conn.sent)
            statuses[status] = statuses.get(status, 0) + 1
            result.completed += 1
            del conn.buf[:used]
            if close:
                selector.unregister(conn.sock)
                conn.reopen()
                selector.register(conn.sock, selectors.EVENT_READ, conn)
            free.append(conn)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.cpu_seconds = usage.ru_utime + usage.ru_stime - cpu0
    result.seconds = duration
    result.statuses = statuses
    for conn in conns:
        with contextlib.suppress(OSError):
            conn.sock.close()
    return result


def run_load(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    processes: int,
    connections: int,
    duration: float,
    rate: float | None = None,
) -> LoadResult:
    """Run ``processes`` load processes (``connections`` each; ``rate`` split evenly) and merge them."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        # Spawning takes a while: start all processes at one instant, comfortably later.
        list(pool.map(time.sleep, [0.0] * processes))
        start_at = time.monotonic() + 0.5
        share = rate / processes if rate else None
        futures = [
            pool.submit(run_process, host, port, list(requests), connections, start_at, duration, share)
            for _ in range(processes)
        ]
        total = LoadResult()
        for future in futures:
            total.merge(future.result())
    return total


# --------------------------------------------------------------------------------------------------------
# A server that does nothing, to see what the generator alone can do


_NULL_BODY = b'{"status":"queued"}\n'
_NULL_ANSWER = (
    b"HTTP/1.1 202 ACCEPTED\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(_NULL_BODY)).encode() + b"\r\n\r\n" + _NULL_BODY
)


def null_server(port_out: Connection, stop_after: float) -> None:
    """Listen on a free loopback port (sent through ``port_out``) and answer every request with a fixed
    202, keep-alive, for ``stop_after`` seconds; one process, one ``selectors`` loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    port_out.send(sock.getsockname()[1])
    port_out.close()
    selector = selectors.DefaultSelector()
    sock.setblocking(False)
    selector.register(sock, selectors.EVENT_READ, None)
    buffers: dict[socket.socket, bytearray] = {}
    end = time.monotonic() + stop_after
    while time.monotonic() < end:
        for key, _ in selector.select(0.5):
            if key.data is None:
                with contextlib.suppress(BlockingIOError):
                    client, _ = sock.accept()
                    client.setblocking(True)
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    buffers[client] = bytearray()
                    selector.register(client, selectors.EVENT_READ, True)
                continue
            peer = key.fileobj
            assert isinstance(peer, socket.socket)
            try:
                chunk = peer.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                selector.unregister(peer)
                peer.close()
                del buffers[peer]
                continue
            buf = buffers[peer]
            buf += chunk
            while (message := _answer(buf)) is not None:  # a request parses like a response
                del buf[: message[1]]
                peer.sendall(_NULL_ANSWER)
    sock.close()


def start_null_server(seconds: float) -> tuple[multiprocessing.process.BaseProcess, int]:
    """A null server in its own process for ``seconds``; returns the process and its port."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=null_server, args=(send, seconds), daemon=True)
    process.start()
    send.close()
    port: int = receive.recv()
    receive.close()
    return process, port
