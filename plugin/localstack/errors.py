"""The local stack's errors: one for a stack that cannot go on, one for a server that would not start."""

from __future__ import annotations


class StackError(RuntimeError):
    """``up``, ``down`` or ``doctor`` cannot go on; the message says what to do."""


class ServerStartError(RuntimeError):
    """A real part (Label Studio, moto's S3, ``redis-server``) could not be installed or started."""
