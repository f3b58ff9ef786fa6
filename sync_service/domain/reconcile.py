"""The periodic reconcile of one project, in proportion to what changed.

Lost webhooks cost latency, never correctness: every ``CUSTOMLABELS_RECONCILE_SECONDS`` each project is
compared with Label Studio, at a cost that grows with what changed, not with the project:

* tasks whose ``updated_at`` moved since the last reconcile began (less :data:`OVERLAP_SECONDS`, for
  clock skew between us and Label Studio's database and for transactions that committed late) are read
  again, unless their task record holds that ``updated_at`` already (one Data Manager query lists their
  ids and times);
* tasks deleted without their webhook: the project's task count is compared with the task records'
  (one counting query); only when they disagree are id ranges counted, halving the ranges that
  disagree, down to the ids that are gone;
* the project's webhook is checked and repaired (:func:`sync_service.domain.bootstrap.ensure_webhook`).

A full reconcile (every task read, every manifest written) runs instead when asked (``project resync``),
when no reconcile is recorded (a new project, or Redis was lost), every
``CUSTOMLABELS_FULL_RECONCILE_SECONDS`` (some bulk actions of Label Studio's change tasks without moving
their ``updated_at``), and once Label Studio is back after a job of the project found it away (not
reached, or a 502, 503 or 504 answer): Label Studio writes an annotation's row before it moves its task's
``updated_at`` (``Annotation.save`` and ``Annotation.delete``, then ``update_task``), each in its own
commit, and sends the webhook last, so a save cut short in between (the server stopped, a worker
killed) leaves a change that no webhook reports and no ``updated_at`` shows. A changed label config makes
the publish rebuild, as always.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sync_service.domain.bootstrap import ensure_webhook
from sync_service.domain.context import Context
from sync_service.domain.publisher import PublishResult
from sync_service.domain.taskcache import TaskRecords
from sync_service.edges.state import ProjectState
from sync_service.errors import LabelStudioError

log = logging.getLogger(__name__)

OVERLAP_SECONDS = 120.0
"""How far before the last reconcile's start the next one looks for changed tasks."""


@dataclass(slots=True)
class ReconcileResult:
    """What one reconcile of a project did."""

    project_id: int
    full: bool
    changed: int = 0
    deleted: int = 0
    webhook_repaired: list[str] = field(default_factory=list)
    published: PublishResult | None = None


def deleted_task_ids(count: Callable[[int | None, int | None], int], known: list[int]) -> set[int] | None:
    """The ids among ``known`` (sorted, the tasks we hold) that Label Studio no longer has, found by
    counting its tasks in id ranges (``count(above, below)``, bounds exclusive) and halving only the
    ranges whose count is short; None when Label Studio has tasks we do not know (a full read is due)."""
    gone: set[int] = set()

    def walk(lo: int, hi: int, theirs: int) -> bool:  # known[lo:hi], with ``theirs`` tasks in its range
        ours = hi - lo
        if theirs == ours:
            return True
        if theirs > ours:
            return False
        if theirs == 0:
            gone.update(known[lo:hi])
            return True
        mid = (lo + hi) // 2
        above = known[lo] - 1 if lo > 0 else None
        left = count(above, known[mid])  # ids of known[lo:mid] and the gaps around them
        return walk(lo, mid, left) and walk(mid, hi, theirs - left)

    total = count(None, None)
    if not known:
        return set() if total == 0 else None
    return gone if walk(0, len(known), total) else None


def reconcile(
    ctx: Context, project_id: int, *, full: bool = False, now: float | None = None
) -> ReconcileResult:
    """Reconcile one project of ours (see the module docstring); ``full`` reads every task."""
    started = time.time() if now is None else now
    if ctx.projects.find(project_id) is None:  # forgotten since it was queued: not ours to touch
        return ReconcileResult(project_id, full=False)
    state = ProjectState(ctx.redis, project_id)
    marks = state.reconcile_marks()
    due = full or "last" not in marks or "full" not in marks
    due = due or started - marks["full"] >= ctx.settings.full_reconcile_seconds
    if not due and marks.get("away", -math.inf) >= marks["full"]:
        log.warning(
            "project %s: Label Studio was away since the last full reconcile; every task is read again "
            "(a save cut short leaves a change without its webhook or a new updated_at)",
            project_id,
        )
        due = True
    try:
        return _reconcile(ctx, project_id, state, marks, started, due)
    except Exception as exc:
        state.note_if_away(exc)
        raise


def _reconcile(
    ctx: Context, project_id: int, state: ProjectState, marks: dict[str, float], started: float, due: bool
) -> ReconcileResult:
    result = ReconcileResult(project_id, full=due)
    try:
        result.webhook_repaired = ensure_webhook(ctx.ls, ctx.settings, project_id)[1]
    except LabelStudioError as exc:  # a webhook that cannot be repaired must not stop the sync
        state.note_if_away(exc)
        log.warning("project %s: the webhook could not be checked: %s", project_id, exc)
    if result.webhook_repaired:
        log.warning("project %s: webhook repaired (%s)", project_id, ", ".join(result.webhook_repaired))
    if due:
        result.published = ctx.publisher.publish(project_id, force=True)
        state.set_reconcile_marks(last=started, full=started)
        return result
    since = datetime.fromtimestamp(marks["last"] - OVERLAP_SECONDS, UTC)
    moved = ctx.ls.tasks_updated_since(project_id, since)
    records = TaskRecords(ctx.redis, state)
    # Within the overlap, most tasks are as their record says already: only the others are read.
    held = records.load(moved)
    changed = {
        task_id for task_id, at in moved.items() if task_id not in held or held[task_id].updated_at != at
    }
    known = sorted(records.ids() | set(moved))

    def count(above: int | None, below: int | None) -> int:
        return ctx.ls.count_tasks(project_id, above=above, below=below)

    gone = deleted_task_ids(count, known)
    if gone is None:  # tasks we never heard of, older than the overlap: read them all
        result.full = True
        result.published = ctx.publisher.publish(project_id, force=True)
        state.set_reconcile_marks(last=started, full=started)
        return result
    result.changed, result.deleted = len(changed), len(gone)
    state.forget_label_config()  # the publish reads it again: a change sent no webhook, perhaps
    state.note(dirty=changed, gone=gone)
    result.published = ctx.publisher.publish(project_id)
    state.set_reconcile_marks(last=started)
    return result
