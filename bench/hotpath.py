"""Phase 4 of ``bench/bench_sync.py``: what the sync costs Label Studio (issue 13).

* **Requests per annotation event.** The worker reaches Label Studio through :class:`CountingProxy`, which
  counts every request by method and path; annotation events are made at a fixed rate (phase 2's
  ``drive_events``), and the requests the worker sent meanwhile are divided by the events. Goal: 0.
* **Export files.** Files in Label Studio's export folder (``<data dir>/export``) before and after the
  events, per 1,000 events. Goal: 0.
* **Webhook -> manifest p95** at that rate (as phase 2 measures it). Goal: <= 0.5 s.
* **Save throughput.** Annotation saves per second, closed loop from several threads, with the webhook
  answered by our service and worker, and with the same webhook answered by a bare receiver
  (``tests/realparts.py``'s WebhookReceiver, at the service's address while the service is stopped: the
  webhook is never changed, so the worker's reconcile has nothing to repair), in the order bare, ours,
  ours, bare (``--save-rounds`` runs a side), the worker running all along; each side's runs are summed. Every save
  annotates a task nothing annotated before (Label Studio's cost of a save grows with the task's
  annotations). Goal: ours >= 0.95x bare. Each round (two adjacent runs, one a side) gives a ratio of its
  own; the 95% interval of their mean says whether the runs can tell the goal met or not.
* **Reconcile of an unchanged project.** In this process, the domain's reconcile of the phase-2 project
  twice (a full one, since no reconcile is recorded yet, then the incremental one), timing the second
  and the CPU Label Studio spent on it (its process tree). Goal: <= 2 s of Label Studio's CPU for
  100,000 tasks (the project's size is in the result).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

GOAL_REQUESTS_PER_EVENT = 0.0
GOAL_EXPORT_FILES_PER_1000 = 0.0
GOAL_P95_S = 0.5
GOAL_SAVE_RATIO = 0.95
GOAL_RECONCILE_LS_CPU_S = 2.0


class CountingProxy:
    """A reverse proxy on 127.0.0.1 in front of Label Studio that counts requests (``METHOD /path``, ids
    folded to ``<id>``)."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The proxy's base URL (give it to the worker as ``CUSTOMLABELS_LS_URL``)."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reset(self) -> Counter[str]:
        """The counts so far, and start again from zero."""
        with self.lock:
            counts, self.counts = self.counts, Counter()
        return counts

    def start(self) -> CountingProxy:
        """Serve in a thread."""
        proxy = self
        client = httpx.Client(base_url=self.target, timeout=600)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path = self.path.split("?", 1)[0]
                kind = "/".join("<id>" if part.isdigit() else part for part in path.split("/"))
                with proxy.lock:
                    proxy.counts[f"{self.command} {kind}"] += 1
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                response = client.request(self.command, self.path, content=body, headers=headers)
                self.send_response(response.status_code)
                for name, value in response.headers.items():
                    if name.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="counting-proxy").start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def export_files(data_dir: Path) -> int:
    """Files in Label Studio's export folder."""
    folder = data_dir / "export"
    return sum(len(files) for _, _, files in os.walk(folder)) if folder.exists() else 0


@dataclass
class SaveRun:
    """Annotation saves in a closed loop for a while."""

    receiver: str
    saves: int
    seconds: float
    failures: int
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds each part spent during the run: Label Studio's process tree, our serve and worker with
    their children, the redis-server, moto's S3 server, and this process alone (the save threads and the
    counting proxy)."""
    machine: dict[str, float] = field(default_factory=dict)
    """The machine over the run: load average at its start, CPU shares idle and stolen."""

    @property
    def rate(self) -> float:
        """Saves per second."""
        return self.saves / self.seconds if self.seconds else 0.0


# Student's t quantile at 0.975 for 1 to 10 degrees of freedom (a two-sided 95% interval).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def pair_ratios(runs: list[SaveRun]) -> list[float]:
    """Ours / bare saves per second of each round: the runs go bare, ours, ours, bare, ..., so each
    round is two adjacent runs, one a side, and the drift between rounds stays out of its ratio."""
    out: list[float] = []
    for first, second in zip(runs[0::2], runs[1::2], strict=False):
        side = {first.receiver: first, second.receiver: second}
        if set(side) == {"ours", "bare"} and side["bare"].rate > 0:
            out.append(side["ours"].rate / side["bare"].rate)
    return out


def interval95(values: list[float]) -> tuple[float, float]:
    """A two-sided 95% Student's t interval for the mean of ``values`` (nan, nan under 2 values; past 11
    values the quantile of 10 degrees of freedom, which makes the interval a little wider than it is)."""
    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    mean = statistics.fmean(values)
    half = _T975[min(n - 1, len(_T975)) - 1] * statistics.stdev(values) / n**0.5
    return mean - half, mean + half


def verdict(low: float, high: float, goal: float) -> str:
    """``met`` when the whole interval is at or above ``goal``, ``not met`` when it is below, else
    ``undecided`` (the runs cannot tell)."""
    if low >= goal:
        return "met"
    if high < goal:
        return "not met"
    return "undecided"


def save_loop(
    http_factory: Any, task_ids: Iterator[int], result: list[dict[str, Any]], *, seconds: float, threads: int,
    receiver: str,
) -> SaveRun:  # fmt: skip
    """Create one annotation on each task ``task_ids`` yields, from ``threads`` threads, for ``seconds``
    seconds (less if it runs out).

    Give every run tasks no run annotated before (one iterator shared by the runs): Label Studio's cost
    of a save grows with the annotations its task already has, so runs that annotate the same tasks again
    get slower one after another, whatever answers the webhook. A run that runs out of tasks before
    ``seconds`` raises :class:`RuntimeError`: its rate would be no rate.
    """
    stop = time.monotonic() + seconds
    counts = Counter[str]()
    lock = threading.Lock()
    ran_out = threading.Event()

    def work() -> None:
        with http_factory() as http:
            while time.monotonic() < stop:
                with lock:
                    task_id = next(task_ids, None)
                if task_id is None:
                    ran_out.set()
                    return
                try:
                    response = http.post(
                        f"/api/tasks/{task_id}/annotations/",
                        json={"result": result, "was_cancelled": False, "ground_truth": False},
                    )
                    response.raise_for_status()
                    key = "saves"
                except httpx.HTTPError:
                    key = "failures"
                with lock:
                    counts[key] += 1

    started = time.monotonic()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if ran_out.is_set():
        raise RuntimeError(
            f"the {receiver} save run ran out of fresh tasks after {counts['saves']:,} saves in "
            f"{time.monotonic() - started:.1f} s of {seconds:.0f}: import more"
        )
    return SaveRun(receiver, counts["saves"], time.monotonic() - started, counts["failures"])


@dataclass
class HotpathResult:
    """Phase 4's figures."""

    tasks: int
    events: int
    event_rate: float
    ls_requests_during_events: dict[str, int]
    ls_requests_per_event: float
    export_files_written: int
    export_files_per_1000_events: float
    p50_s: float
    p95_s: float
    unseen: int
    worker_nice: int | None = None
    """The worker's ``CUSTOMLABELS_WORKER_NICE`` (None: the service's default)."""
    store_nice: int = 0
    """The nice value of the S3 stand-in (moto's server) through the phase."""
    saves: list[SaveRun] = field(default_factory=list)
    save_ratio: float = float("nan")
    """Ours / bare over all runs of each side (saves summed, seconds summed)."""
    save_ratio_rounds: list[float] = field(default_factory=list)
    """Ours / bare of each round (:func:`pair_ratios`)."""
    save_ratio_interval: tuple[float, float] = (float("nan"), float("nan"))
    """The 95% interval of the rounds' mean ratio (:func:`interval95`)."""
    reconcile_tasks: int = 0
    full_reconcile_s: float = float("nan")
    incremental_reconcile_s: float = float("nan")
    incremental_reconcile_ls_cpu_s: float = float("nan")
    incremental_reconcile_ls_requests: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def counting_proxy(target: str) -> Iterator[CountingProxy]:
    """A :class:`CountingProxy` for the block."""
    proxy = CountingProxy(target).start()
    try:
        yield proxy
    finally:
        proxy.stop()
