"""A plain GET to the stack's own loopback servers (the S3 store, moto, the service's readiness).

Label Studio is not one of them: the stack talks to it through sync_service's one Label Studio edge.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def http_get(url: str, *, token: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url`` (optionally with ``Authorization: Token <token>``); returns (status, body).

    HTTP errors are returned, not raised; connection errors raise ``OSError``.
    """
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Token {token}")
    # No proxy for our own servers.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def json_get(url: str) -> tuple[int, Any]:
    """GET ``url`` as JSON: (status, document); (0, None) when nothing answers, None for a body that is
    not JSON."""
    try:
        status, body = http_get(url, timeout=5)
    except OSError:
        return 0, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None
