"""The sync service's exceptions: one base, a subclass per edge, each saying what failed and where."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the sync service raises on purpose."""


class ConfigError(ServiceError):
    """A setting is missing or wrong; the message names the environment variable."""

    def __init__(self, variable: str, message: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {message}")


class LabelStudioError(ServiceError):
    """Label Studio answered with an error or could not be reached (jobs retry these).

    ``method`` and ``path`` name the request (no query string, never a token); ``status`` is the HTTP
    status Label Studio answered, None when it could not be reached; ``detail`` its reason, on one line.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail

    @property
    def away(self) -> bool:
        """Whether Label Studio was away, when a save may have been cut short: not reached, or a proxy's
        answer for a server that is not there or did not answer in time (502, 503, 504: a process that
        died or was killed mid-request among them). Label Studio's own 500 is an error, not an absence."""
        return self.status is None or self.status in (502, 503, 504)


class StorageError(ServiceError):
    """S3 answered with an error or could not be reached (jobs retry these)."""


class ProjectNotFound(ServiceError):
    """No project of ours has this Label Studio id."""


class SignInRefused(ServiceError):
    """Label Studio refused a person's credentials (wrong email or password, a deactivated account, a
    revoked token): the person is not let in. Not an outage: the service answers 401, not 503."""
