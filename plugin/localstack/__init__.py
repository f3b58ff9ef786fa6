"""``customlabels up``, ``down`` and ``doctor``: the whole stack on loopback with one command.

``up`` starts, each as its own process on 127.0.0.1:

========================  ===============================  =================================================
part                      default                          data
========================  ===============================  =================================================
S3-compatible store       s3rver on port 9000 (npm)        ``<home>/s3/`` (one file per object)
Redis                     the one answering on             nothing kept (queues, locks, caches only)
                          ``CUSTOMLABELS_REDIS_URL``, else
                          a ``redis-server`` we start
Label Studio              port 8080, its own virtualenv    ``<home>/label-studio/`` (SQLite, media)
sync service (gunicorn)   port 5000                        -
sync worker (RQ)          -                                -
========================  ===============================  =================================================

``<home>`` is ``$CUSTOMLABELS_HOME`` or ``./.customlabels`` in the working directory. It holds the
generated-once login (``secrets.json``, mode 0600), Label Studio's settings (``label-studio.env``, read at
every start), the logs (``logs/``) and ``state.json``: what this ``up`` started (pid and start time of
each process), so that ``down`` and Ctrl-C stop exactly those and nothing else (never a Redis we found
running). A part that crashes is started again after a pause (``supervisor``); a foreground ``up`` watches
its parts itself, ``up --detach`` leaves a small supervisor process behind, which ``down`` stops. With ``CUSTOMLABELS_S3_ENDPOINT`` set (MinIO, AWS) no store is started and that endpoint is
used, with the usual ``AWS_*`` credentials.

The embedded store is s3rver (npm package, installed on first use with ``npm ci`` from the lock file in
``plugin/s3store/`` into ``~/.cache/customlabels/``): unlike moto's server it keeps every object in files,
so the images and manifests survive ``down``, Ctrl-C and even ``kill -9``.

The package, one concern a module, each importing only the ones above it in this list:

- ``errors``: ``StackError`` and ``ServerStartError``.
- ``processes``: ports, logs, the record of a process we started (``Proc``), ``spawn``.
- ``http_calls``: a plain GET to the stack's own servers (Label Studio goes through sync_service's edge).
- ``layout``: the home directory, its paths and its lock.
- ``private_files``: ``secrets.json`` and ``label-studio.env`` (mode 0600).
- ``label_studio``: Label Studio's own environment and server process.
- ``moto_s3``: moto's S3 server (for the tests and benches).
- ``redis_server``: probing Redis and starting a ``redis-server``.
- ``plan``: ports, URLs, bucket, Redis URL from flags, variables and defaults.
- ``record``: ``state.json`` (``StackRecord``).
- ``s3_store``: the embedded s3rver store, the bucket, the S3 client.
- ``redis_db``: the Redis database claimed by one home, the RQ workers on it.
- ``demo``: the demo project and the project links repointed at the stack's ports.
- ``stop_signals``: Ctrl-C, SIGTERM and SIGHUP while ``up`` runs.
- ``stack``: bringing the parts up in order (``Parts``: starting one), stopping what was recorded, the
  summary.
- ``supervisor``: restarting a part that crashed, with backoff; the background supervisor of
  ``up --detach``.
- ``commands``: the ``up`` and ``down`` commands; ``doctor``: the ``doctor`` command.
"""

from __future__ import annotations

from typing import Any


def add_parsers(sub: Any) -> None:
    """Add ``up``, ``down`` and ``doctor`` to ``customlabels``' subparsers."""
    from plugin.localstack import commands, doctor  # noqa: PLC0415 - the local stack costs start-up time

    commands.add_parsers(sub)
    doctor.add_parser(sub)
