"""Every HTTP call the local stack makes, in one place: a plain GET to our own loopback servers, and
Label Studio's API (its JSON over that GET, and a label-studio-sdk client for the writes).

Kept together so that they can move onto sync_service's one Label Studio edge in one step.
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


def ls_json(ls_url: str, token: str, path: str) -> tuple[int, Any]:
    """GET ``path`` of Label Studio's API at ``ls_url`` with the API ``token``: (status, document or None)."""
    status, body = http_get(f"{ls_url}{path}", token=token, timeout=30)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def ls_sdk(ls_url: str, token: str) -> Any:
    """A label-studio-sdk client of Label Studio at ``ls_url`` (no retries: the stack's servers are ours)."""
    from label_studio_sdk import LabelStudio  # noqa: PLC0415 - label-studio-sdk costs start-up time

    make: Any = LabelStudio  # its __init__ is untyped
    return make(base_url=ls_url, api_key=token, max_retries=0)
