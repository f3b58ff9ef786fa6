"""How tests authenticate to the service: the service API key as a bearer token (scripts), or a
console session made by signing in with a Label Studio account."""

from __future__ import annotations

import re
from typing import Any

import httpx

SERVICE_KEY = "test-service-api-key-0123456789abcdef"
"""The ``CUSTOMLABELS_SERVICE_API_KEY`` the tests' services are given (32+ characters)."""
SERVICE_KEY_VARIABLE = "CUSTOMLABELS_SERVICE_API_KEY"


def bearer(token: str = SERVICE_KEY) -> dict[str, str]:
    """The Authorization header of a script."""
    return {"Authorization": f"Bearer {token}"}


def form_token(html: str) -> str:
    """The CSRF token a console page prints into its forms."""
    found = re.search(r'name="token" value="([^"]+)"', html)
    assert found, "no form token on the page"
    return found.group(1)


def console_session(service_url: str, email: str, password: str, **options: Any) -> httpx.Client:
    """An HTTP client signed in to the console (its cookie holds the session); raises AssertionError
    when the sign-in is refused."""
    client = httpx.Client(base_url=service_url, timeout=30, **options)
    page = client.get("/console/sign-in")
    answer = client.post(
        "/console/sign-in",
        data={"email": email, "password": password, "token": form_token(page.text), "next": "/console/"},
    )
    where = answer.headers.get("location", "")
    assert answer.status_code == 302 and "sign-in" not in where and where.endswith("/console/"), (
        f"the sign-in was refused: {answer.status_code} {where}"
    )
    return client
