"""A loopback HTTP proxy in front of an S3 endpoint that fails, slows down and records what S3 accepted.

The service's ``CUSTOMLABELS_S3_ENDPOINT`` points here; the proxy forwards each request to the real
endpoint (moto's server) unless it decides to fail it. Faults, each drawn per request from a seeded
random generator (rates may change while it runs):

* ``error_rate``: answered 500 ``InternalError`` or 503 ``SlowDown`` / ``ServiceUnavailable`` without
  reaching S3 (what botocore retries, then gives up on);
* ``error_after_rate``: writes only; forwarded (S3 stores the object), then answered 500 anyway: the
  client believes a write failed that happened;
* ``slow_rate``: held ``slow_seconds`` before being forwarded.

Every object body S3 accepted through ``PutObject`` is kept in ``written`` (decoded from botocore's
``aws-chunked`` upload encoding), so a test can prove that each object it ever read back is exactly
one that was written whole.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
)
ERRORS = ((500, "InternalError"), (503, "SlowDown"), (503, "ServiceUnavailable"))


def decode_aws_chunked(body: bytes) -> bytes:
    """The payload of an ``aws-chunked`` body (``<hex size>[;ext]\\r\\n<data>\\r\\n ... 0\\r\\n<trailers>``)."""
    out = bytearray()
    pos = 0
    while True:
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol].split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            return bytes(out)
        out += body[pos : pos + size]
        pos += size + 2


def _read_http_chunked(stream: Any) -> bytes:
    out = bytearray()
    while True:
        line = stream.readline()
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):
                pass
            return bytes(out)
        out += stream.read(size)
        stream.readline()


class S3Proxy:
    """See the module docstring. ``start()`` serves on a free loopback port; ``url`` is the endpoint."""

    def __init__(self, upstream: str, *, seed: int = 0) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname and parts.port
        self.upstream = (parts.hostname, parts.port)
        self.error_rate = 0.0
        self.error_after_rate = 0.0
        self.slow_rate = 0.0
        self.slow_seconds = (0.3, 1.5)
        self._after_owed = False
        self.written: dict[str, list[bytes]] = {}
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The proxy's endpoint URL."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def faults(self, *, error: float = 0.0, error_after: float = 0.0, slow: float = 0.0) -> None:
        """Set the fault rates (0 everywhere: a transparent proxy). With ``error_after``, the first write
        after this call is stored and answered 500 whatever the draw: writes are few while failing jobs
        back off, and a run must meet that fault to test it."""
        with self._lock:
            self.error_rate, self.error_after_rate, self.slow_rate = error, error_after, slow
            self._after_owed = error_after > 0

    def _draw(self, is_write: bool) -> tuple[str, float]:
        with self._lock:
            roll = self._rng.random()
            slow = self._rng.uniform(*self.slow_seconds) if self._rng.random() < self.slow_rate else 0.0
            if is_write and self._after_owed:
                fate = "error-after"
                self._after_owed = False
            elif roll < self.error_rate:
                fate = "error"
            elif is_write and roll < self.error_rate + self.error_after_rate:
                fate = "error-after"
            else:
                fate = "forward"
            self.counts[fate] += 1
            if slow:
                self.counts["slow"] += 1
            return fate, slow

    def _error(self) -> tuple[int, bytes]:
        with self._lock:
            status, code = self._rng.choice(ERRORS)
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>injected by the test proxy</Message>"
            "<RequestId>faults</RequestId></Error>"
        ).encode()
        return status, body

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        parts = urlsplit(path)
        if parts.query or "x-amz-copy-source" in headers:
            return  # a part of a multipart upload, a copy, an ACL...: not a whole object
        key = unquote(parts.path.lstrip("/")).split("/", 1)
        if len(key) != 2 or not key[1]:
            return  # a bucket, not an object
        encoding = headers.get("content-encoding", "")
        if "aws-chunked" in encoding or headers.get("x-amz-content-sha256", "").startswith("STREAMING-"):
            body = decode_aws_chunked(body)
        with self._lock:
            self.written.setdefault(key[1], []).append(body)

    def start(self) -> S3Proxy:
        """Serve in a thread."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                if "chunked" in headers.get("transfer-encoding", ""):
                    body = _read_http_chunked(self.rfile)
                else:
                    body = self.rfile.read(int(headers.get("content-length") or 0))
                is_write = self.command == "PUT"
                fate, slow = proxy._draw(is_write)
                if slow:
                    time.sleep(slow)
                if fate == "error":
                    self._reply(*proxy._error(), {})
                    return
                status, reply_headers, reply = proxy._forward(self.command, self.path, headers, body)
                if is_write and 200 <= status < 300:
                    proxy._record(self.path, headers, body)
                if fate == "error-after":
                    self._reply(*proxy._error(), {})
                    return
                self._reply(status, reply, reply_headers)

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                length = headers.get("content-length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="s3-proxy").start()
        return self

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                if name not in HOP_BY_HOP and name != "content-length":
                    conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            reply = response.read()
            reply_headers = {k.lower(): v for k, v in response.getheaders()}
            return response.status, reply_headers, reply
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown()
                self._server.server_close()
            self._server = None
