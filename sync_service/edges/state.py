"""What the service keeps in Redis per project: pending events, the entry cache, the lock, the status.

Redis holds hints and caches only; losing it loses no data (a reconcile rebuilds everything from Label
Studio). Keys, all under ``cl:`` so that the service never touches what it did not write:

* ``cl:p:<id>:dirty`` (set of task ids to re-read), ``:gone`` (task ids deleted), ``:gone-ann``
  (annotation ids deleted), ``:full`` (a whole rebuild is due), ``:pending`` (events since the last
  publish began), ``:scheduled`` (a publish job is queued);
* ``cl:p:<id>:payloads`` (annotation id -> the parts of its newest ANNOTATION_CREATED/UPDATED payload the
  publish needs, ``<updated_at>\\n<json>``; see :mod:`sync_service.domain.taskcache`);
* ``cl:p:<id>:entries`` (task id -> cached entry), ``:ann`` (annotation id -> task id), ``:tasks`` (task
  id -> what choosing its annotation needs, with tombstones of its deleted annotations), ``:reconcile``
  (hash: when the last incremental and full reconciles started);
* ``cl:p:<id>:lock`` (the single publisher), ``:status`` (hash shown by the status endpoint);
* ``cl:p:<id>:taken-dirty``, ``:taken-gone``, ``:taken-gone-ann``, ``:taken-full``,
  ``:taken-payloads``: the events the
  publish under way took, kept until it succeeds, so that a publisher killed mid-way loses none;
* ``cl:p:<id>:m:*``: what the last publish wrote, kept so that the next writes only what changed
  (:class:`ManifestKeep`);
* ``cl:imgmeta`` (source-ref -> stored size and EXIF orientation), ``cl:projects`` (id -> S3 slug).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis
import orjson
from redis import Redis
from redis.typing import EncodableT, FieldT

from sync_service.edges.locks import LockLost, RenewingLock
from sync_service.errors import LabelStudioError

IMAGE_META_KEY = "cl:imgmeta"
FINGERPRINT_KEY = "cl:imgprint"  # source-ref -> [ETag, SHA-256, phash, flip hash]
DUPLICATE_GROUP_KEY = "cl:imggroup"  # source-ref -> "<distance>:<first member>" of its duplicate group
PROJECTS_KEY = "cl:projects"

LOCK_TTL = 20.0
"""Seconds the publish lock outlives a holder that stopped renewing it. The holder renews it every
``LOCK_TTL / 4`` while it publishes, so a worker killed in the middle of a publish (kill -9, a lost
machine) holds the project's next publish back this long at most."""

SCHEDULED_TTL = 60
"""Seconds a "publish queued" mark lasts. A queued job that is lost (its worker killed before it ran)
would otherwise keep later events from queueing another until the next reconcile; a second job queued
while the first still waits is harmless (publishes are single-flight and coalesce the events)."""

REBUILD_CHUNK = 1000
"""Entries a rebuild writes to Redis per round trip."""

REBUILD_KEYS_TTL = 3600
"""Seconds the hashes of a rebuild under way live unless the rebuild completes (and renames them)."""

Arg = bytes | str | int | float


class Bulk:
    """Commands sent to Redis in one round trip, each packed whole by hiredis. A redis-py pipeline packs
    its commands argument by argument in Python (about half a microsecond each), and a rebuild writes
    some ten arguments a task: a tenth of its time. Nothing is sent until :meth:`send`."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._packed: list[bytes] = []

    def command(self, *args: Arg) -> None:
        """Queue one command (its name first)."""
        self._packed.append(hiredis.pack_command(args))  # type: ignore[arg-type]  # (its stub: 1-tuples)

    def pairs(self, name: str, key: str, pairs: Iterable[tuple[Arg, Arg]]) -> None:
        """Queue ``name key a1 b1 a2 b2 ...`` (``HSET`` with field, value pairs; ``ZADD`` with score,
        member pairs); nothing when there are no pairs."""
        args = list(cast(Iterable[Arg], itertools.chain.from_iterable(pairs)))
        if args:
            self.command(name, key, *args)

    def send(self) -> list[Any]:
        """Send the queued commands and return their replies. Raises redis-py's errors (an error reply
        as ``ResponseError``); after any failure the connection is closed, with the replies it had not
        read, so the next user of the pool gets a clean one."""
        packed, self._packed = self._packed, []
        if not packed:
            return []
        pool = self.redis.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command(packed)  # type: ignore[no-untyped-call]
            return [connection.read_response() for _ in packed]
        except BaseException:
            connection.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            pool.release(connection)


# Keep, in hash KEYS[1], the payload (ARGV[i + 1], ``<stamp>\n<json>``) of each annotation (ARGV[i]) whose
# stamp (its ``updated_at``) is newer than the one kept: a duplicate or stale payload changes nothing.
_NEWEST = """
local function newest(key, first, last)
  for i = first, last, 2 do
    local old = redis.call('hget', key, ARGV[i])
    if not old or string.match(ARGV[i + 1], '^[^\\n]*') > string.match(old, '^[^\\n]*') then
      redis.call('hset', key, ARGV[i], ARGV[i + 1])
    end
  end
end
"""

# Take the events (KEYS[1..5]: dirty, gone, gone-ann, full, pending; KEYS[10] the first event's time;
# KEYS[11] the payloads) and keep a copy of them in the taken-* keys (KEYS[6..9], KEYS[12]) until the
# publish succeeds; returns {dirty, gone, gone-ann, full, pending, payloads as a flat field/value list}.
_TAKE = """
local out = {}
for i = 1, 3 do
  out[i] = redis.call('smembers', KEYS[i])
  if #out[i] > 0 then redis.call('sunionstore', KEYS[i + 5], KEYS[i + 5], KEYS[i]) end
end
local full = redis.call('get', KEYS[4])
if full then redis.call('set', KEYS[9], 1) end
local pending = redis.call('get', KEYS[5])
local payloads = redis.call('hgetall', KEYS[11])
for i = 1, #payloads, 1000 do
  redis.call('hset', KEYS[12], unpack(payloads, i, math.min(i + 999, #payloads)))
end
redis.call('del', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[10], KEYS[11])
return {out[1], out[2], out[3], full and 1 or 0, tonumber(pending or 0), payloads}
"""

# A publisher died holding events (KEYS[5..8]: taken-*; KEYS[10] taken payloads): back into the pending
# ones (KEYS[1..4]; KEYS[9] payloads, the newer of the two kept per annotation).
_RECOVER = (
    _NEWEST
    + """
for i = 1, 3 do
  if redis.call('exists', KEYS[i + 4]) == 1 then redis.call('sunionstore', KEYS[i], KEYS[i], KEYS[i + 4]) end
end
if redis.call('exists', KEYS[8]) == 1 then redis.call('set', KEYS[4], 1) end
local taken = redis.call('hgetall', KEYS[10])
for i = 1, #taken, 2 do
  ARGV[1], ARGV[2] = taken[i], taken[i + 1]
  newest(KEYS[9], 1, 2)
end
return redis.call('del', KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[10])
"""
)

# Drop the taken-* keys (KEYS[2..6]) if the lock (KEYS[1]) is still ours (ARGV[1]; '' when no publish
# holds it, as for a project that is not ours).
_SETTLE = """
if ARGV[1] == '' or redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
end
return 0
"""

# HSET KEYS[2] with ARGV[2..] if the lock KEYS[1] holds ARGV[1]: 1 when written, 0 when not ours.
_SET_FENCED = """
if ARGV[1] == '' or redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('hset', KEYS[2], unpack(ARGV, 2))
return 1
"""

# One event, atomically and in one round trip (the webhook's whole Redis cost): add the ids (from
# ARGV[7] on; ARGV[1..3] say how many go to the dirty / gone / gone-ann sets), then keep the ARGV[6]
# annotation payloads that follow them (id, value pairs) where newer (see _NEWEST), set :full when
# ARGV[4] is 1, count the event (the first since the last take also stamps :first-event with Redis's
# clock), and return 1 when it set :scheduled for ARGV[5] seconds (the caller queues a publish).
_NOTE = (
    _NEWEST
    + """
local counts = {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])}
local pos = 7
for k = 1, 3 do
  local stop = pos + counts[k] - 1
  while pos <= stop do
    local last = math.min(pos + 999, stop)
    redis.call('sadd', KEYS[k], unpack(ARGV, pos, last))
    pos = last + 1
  end
end
local payloads = tonumber(ARGV[6])
if payloads > 0 then newest(KEYS[8], pos, pos + 2 * payloads - 1) end
if ARGV[4] == '1' then redis.call('set', KEYS[4], 1) end
if redis.call('incr', KEYS[5]) == 1 then
  local now = redis.call('time')
  redis.call('set', KEYS[7], now[1] .. '.' .. string.format('%06d', now[2]))
end
if redis.call('set', KEYS[6], 1, 'nx', 'ex', ARGV[5]) then return 1 end
return 0
"""
)


@dataclass(slots=True)
class EventBatch:
    """The events taken by one publish: what to re-read, what to drop, whether to rebuild all."""

    dirty: set[int] = field(default_factory=set)
    gone: set[int] = field(default_factory=set)
    gone_annotations: set[int] = field(default_factory=set)
    full: bool = False
    pending: int = 0
    payloads: dict[int, bytes] = field(default_factory=dict)
    """Annotation id -> the newest payload kept of it (``<updated_at>\\n<json>``)."""

    @property
    def empty(self) -> bool:
        """True when there is nothing to do."""
        return not (self.dirty or self.gone or self.gone_annotations or self.full or self.payloads)


# What validating an entry's line found, as ManifestValidator.account counts it (its number and size
# aside): has_error, terminal, whether the line names its image (False: invalid by itself), labeled,
# class labels, box labels. Computed once, when the entry is converted, not at every publish.
LineRow = tuple[bool, bool, bool, bool, tuple[str, ...], tuple[str, ...]]


@dataclass(slots=True)
class CachedEntry:
    """One task as the last publish saw it: its manifest line (or the error that stopped it).

    Not frozen, though never changed: a publish reads every entry of the project, and a frozen
    dataclass's ``__init__`` costs several times a plain one's."""

    task_id: int
    source_ref: str
    dataset: str | None
    line: bytes | None
    labels: tuple[str, ...]
    annotations: tuple[int, ...]
    error: str | None = None
    check: LineRow | None = None  # the line's validation; None: not known yet (validated when needed)

    def pack(self) -> bytes:
        """The Redis value of this entry: a small JSON header, a line break, then the manifest line's
        bytes as they are (no JSON string escaping of the line, which costs at every publish)."""
        head = orjson.dumps(
            {
                "r": self.source_ref,
                "d": self.dataset,
                "l": self.line is not None,
                "n": self.labels,
                "a": self.annotations,
                "e": self.error,
                "v": self.check,
            }
        )
        return head + b"\n" + self.line if self.line is not None else head + b"\n"

    @classmethod
    def unpack(cls, task_id: int, raw: bytes | str) -> CachedEntry:
        """Read an entry written by :meth:`pack`, or a JSON-only record holding its line as text."""
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
        head, newline, rest = data.partition(b"\n")
        obj = orjson.loads(head)
        if newline:
            line = rest if obj.get("l") else None
        else:
            text = obj.get("l")
            line = text.encode("utf-8") if text is not None else None
        check = obj.get("v")
        return cls(
            task_id=task_id,
            source_ref=obj["r"],
            dataset=obj.get("d"),
            line=line,
            labels=tuple(obj.get("n") or ()),
            annotations=tuple(obj.get("a") or ()),
            error=obj.get("e"),
            check=(check[0], check[1], check[2], check[3], tuple(check[4]), tuple(check[5]))
            if isinstance(check, list) and len(check) == 6
            else None,
        )


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block. Loading the cache and publishing make a few
    objects per entry (hundreds of thousands, none in a cycle), and every collection meanwhile would walk
    them all again: the time would grow with the square of the entries instead of with the entries."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


class ProjectState:
    """The Redis side of one Label Studio project."""

    def __init__(self, redis: Redis, project_id: int) -> None:
        self.redis = redis
        self.project_id = project_id
        base = f"cl:p:{project_id}:"
        self.k_dirty = base + "dirty"
        self.k_gone = base + "gone"
        self.k_gone_ann = base + "gone-ann"
        self.k_full = base + "full"
        self.k_pending = base + "pending"
        self.k_first = base + "first-event"
        self.k_scheduled = base + "scheduled"
        self.k_entries = base + "entries"
        self.k_ann = base + "ann"
        self.k_lock = base + "lock"
        self.k_status = base + "status"
        self.k_config = base + "config"
        self.k_label_config = base + "label-config"
        self.k_payloads = base + "payloads"
        self.k_tasks = base + "tasks"
        self.k_reconcile = base + "reconcile"
        self.k_taken = [base + f"taken-{name}" for name in ("dirty", "gone", "gone-ann", "full", "payloads")]
        self._held: RenewingLock | None = None

    # ------------------------------------------------------------------------------------- events

    def note(
        self,
        *,
        dirty: Iterable[int] = (),
        gone: Iterable[int] = (),
        gone_annotations: Iterable[int] = (),
        full: bool = False,
        payloads: Mapping[int, bytes] | None = None,
    ) -> bool:
        """Record one event's hints and annotation payloads (annotation id -> ``<updated_at>\\n<json>``,
        kept only where newer than the one kept); return True when the caller must queue a publish (none
        queued)."""
        dirty, gone, gone_annotations = list(dirty), list(gone), list(gone_annotations)
        pairs = [part for item in (payloads or {}).items() for part in item]
        script = self.redis.register_script(_NOTE)
        keys = [
            self.k_dirty, self.k_gone, self.k_gone_ann, self.k_full, self.k_pending, self.k_scheduled,
            self.k_first, self.k_payloads,
        ]  # fmt: skip
        args = [
            len(dirty), len(gone), len(gone_annotations), 1 if full else 0, SCHEDULED_TTL, len(pairs) // 2,
        ]  # fmt: skip
        return bool(script(keys=keys, args=[*args, *dirty, *gone, *gone_annotations, *pairs]))

    def first_event_age(self) -> float | None:
        """Seconds since the first event not yet taken was recorded (Redis's clock), or None."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.k_first)
        pipe.time()
        stamp, (seconds, micros) = pipe.execute()
        if stamp is None:
            return None
        return float(seconds) + float(micros) / 1e6 - float(stamp)

    def unschedule(self) -> None:
        """Let the next event queue a publish again (called as a publish starts)."""
        self.redis.delete(self.k_scheduled)

    def take(self) -> EventBatch:
        """Take (read and clear, atomically) the events recorded so far.

        A copy stays in the taken-* keys until :meth:`settle` (the publish succeeded) or
        :meth:`give_back` (it failed); if the taker dies first, the next publish gets them back
        (:meth:`recover`).
        """
        pending_keys = [self.k_dirty, self.k_gone, self.k_gone_ann, self.k_full, self.k_pending]
        dirty, gone, gone_ann, full, pending, payloads = self.redis.eval(
            _TAKE, 12, *pending_keys, *self.k_taken[:4], self.k_first, self.k_payloads, self.k_taken[4]
        )
        return EventBatch(
            dirty={int(x) for x in dirty},
            gone={int(x) for x in gone},
            gone_annotations={int(x) for x in gone_ann},
            full=bool(full),
            pending=int(pending or 0),
            payloads={int(payloads[i]): payloads[i + 1] for i in range(0, len(payloads), 2)},
        )

    def settle(self) -> None:
        """The events taken are published: forget the copy (unless another publisher took over)."""
        self.redis.eval(_SETTLE, 6, self.k_lock, *self.k_taken, self._lock_token)

    def recover(self) -> int:
        """Give the events a dead publisher had taken back to the pending ones; return 1 if there were."""
        keys = [self.k_dirty, self.k_gone, self.k_gone_ann, self.k_full, *self.k_taken[:4]]
        return int(self.redis.eval(_RECOVER, 10, *keys, self.k_payloads, self.k_taken[4], "", "") > 0)

    def give_back(self, batch: EventBatch) -> None:
        """Put a batch back after a failed publish, so that nothing is lost before the retry."""
        self.note(
            dirty=batch.dirty,
            gone=batch.gone,
            gone_annotations=batch.gone_annotations,
            full=batch.full,
            payloads=batch.payloads,
        )
        self.redis.incrby(self.k_pending, max(batch.pending - 1, 0))
        # The copy is dropped only while the lock is ours: once it expired, the taken-* keys may hold
        # what the next holder took (it recovered ours into the pending events already).
        self.redis.eval(_SETTLE, 6, self.k_lock, *self.k_taken, self._lock_token)
        self.unschedule()

    def full_pending(self) -> bool:
        """Whether an event waiting for the next publish asks for a full rebuild (PROJECT_UPDATED)."""
        return bool(self.redis.exists(self.k_full))

    def pending(self) -> int:
        """Events recorded since the last publish began."""
        return int(self.redis.get(self.k_pending) or 0)

    # -------------------------------------------------------------------------------- entry cache

    def has_entries(self) -> bool:
        """Whether the entry cache exists (a lost Redis or a new project has none)."""
        return bool(self.redis.exists(self.k_entries)) or self.redis.hget(self.k_status, "built") == b"1"

    def entries(self) -> list[CachedEntry]:
        """Every cached entry, in task id order (Label Studio's export order)."""
        raw = self.redis.hgetall(self.k_entries)
        with collector_paused():
            out = [CachedEntry.unpack(int(k), v) for k, v in raw.items()]
        out.sort(key=lambda e: e.task_id)
        return out

    def tasks_of_annotations(self, annotation_ids: Iterable[int]) -> tuple[set[int], bool]:
        """Task ids of cached annotations, and whether some annotation was unknown."""
        ids = list(annotation_ids)
        if not ids:
            return set(), False
        found = self.redis.hmget(self.k_ann, ids)
        tasks = {int(t) for t in found if t is not None}
        return tasks, any(t is None for t in found)

    def owners_of_annotations(self, annotation_ids: Iterable[int]) -> dict[int, int]:
        """Annotation id -> task id, for the cached annotations among ``annotation_ids``."""
        ids = list(annotation_ids)
        if not ids:
            return {}
        found = self.redis.hmget(self.k_ann, ids)
        return {a: int(t) for a, t in zip(ids, found, strict=True) if t is not None}

    def replace_all(self, entries: Iterable[CachedEntry]) -> list[CachedEntry]:
        """Replace the whole cache with ``entries`` (a rebuild): new hashes renamed over the old.

        Returns what the cache now holds, as :meth:`entries` would read it back (one entry per task id,
        the last one given; in task id order), so that the publish that rebuilt needs no second read.
        """
        tmp = f"{self.k_entries}:new:{uuid.uuid4().hex}"
        tmp_ann = f"{self.k_ann}:new:{uuid.uuid4().hex}"
        kept: dict[int, CachedEntry] = {}
        packed: dict[str, Arg] = {}
        owners: dict[str, Arg] = {}

        def flush() -> None:
            # One multi-field HSET a thousand entries: far fewer commands to build than one per entry.
            bulk = Bulk(self.redis)
            bulk.pairs("HSET", tmp, packed.items())
            bulk.command("EXPIRE", tmp, REBUILD_KEYS_TTL)  # a rebuild killed half-way: its hashes expire
            if owners:
                bulk.pairs("HSET", tmp_ann, owners.items())
                bulk.command("EXPIRE", tmp_ann, REBUILD_KEYS_TTL)
            bulk.send()
            packed.clear()
            owners.clear()

        for entry in entries:
            kept[entry.task_id] = entry
            packed[str(entry.task_id)] = entry.pack()
            for ann in entry.annotations:
                owners[str(ann)] = entry.task_id
            if len(packed) >= REBUILD_CHUNK:
                flush()
        if packed:
            flush()
        swap = self.redis.pipeline(transaction=True)
        swap.delete(self.k_entries, self.k_ann)
        if kept:
            swap.rename(tmp, self.k_entries)
            swap.persist(self.k_entries)  # RENAME keeps the TTL the temporary hash had
        if self.redis.exists(tmp_ann):
            swap.rename(tmp_ann, self.k_ann)
            swap.persist(self.k_ann)
        swap.hset(self.k_status, "built", 1)
        swap.execute()
        return [kept[task_id] for task_id in sorted(kept)]

    def update(self, entries: Iterable[CachedEntry], removed: Iterable[int]) -> None:
        """Put changed entries into the cache and drop removed task ids."""
        removed = list(removed)
        old_ann: list[bytes] = []
        entries = list(entries)
        touched = [str(e.task_id) for e in entries] + [str(t) for t in removed]
        if touched:
            for raw in self.redis.hmget(self.k_entries, touched):
                if raw is not None:
                    old = CachedEntry.unpack(0, raw)
                    old_ann.extend(str(a).encode() for a in old.annotations)
        pipe = self.redis.pipeline(transaction=True)
        if old_ann:
            pipe.hdel(self.k_ann, *old_ann)
        if removed:
            pipe.hdel(self.k_entries, *[str(t) for t in removed])
        for entry in entries:
            pipe.hset(self.k_entries, str(entry.task_id), entry.pack())
            for ann in entry.annotations:
                pipe.hset(self.k_ann, str(ann), entry.task_id)
        pipe.hset(self.k_status, "built", 1)
        pipe.execute()

    def cached(self, task_ids: Iterable[int]) -> dict[int, CachedEntry]:
        """The cached entries of these tasks (tasks not in the cache left out)."""
        ids = list(task_ids)
        if not ids:
            return {}
        found = self.redis.hmget(self.k_entries, [str(t) for t in ids])
        return {t: CachedEntry.unpack(t, raw) for t, raw in zip(ids, found, strict=True) if raw is not None}

    def forget(self) -> None:
        """Drop everything kept for this project (it was deleted)."""
        self.redis.delete(
            self.k_dirty,
            self.k_gone,
            self.k_gone_ann,
            self.k_full,
            self.k_pending,
            self.k_first,
            self.k_scheduled,
            self.k_entries,
            self.k_ann,
            self.k_status,
            self.k_config,
            self.k_label_config,
            self.k_payloads,
            self.k_tasks,
            self.k_reconcile,
            *self.k_taken,
        )
        ManifestKeep(self.redis, self.project_id).forget()

    # ------------------------------------------------------------------------------ config, status

    def config_digest(self) -> str | None:
        """The digest of the label config the cache was built with."""
        value = self.redis.get(self.k_config)
        return _text(value) if value is not None else None

    def set_config_digest(self, digest: str) -> None:
        """Remember the label config the cache is built with."""
        self.redis.set(self.k_config, digest)

    def recent_label_config(self, max_age: float) -> str | None:
        """The label config as Label Studio gave it at most ``max_age`` seconds ago, else None."""
        raw = self.redis.get(self.k_label_config)
        if raw is None:
            return None
        kept = orjson.loads(raw)
        if not isinstance(kept, dict) or time.time() - float(kept.get("read_at", 0)) > max_age:
            return None
        xml = kept.get("xml")
        return xml if isinstance(xml, str) else None

    def keep_label_config(self, xml: str) -> None:
        """Remember the label config just read from Label Studio, and when."""
        self.redis.set(self.k_label_config, orjson.dumps({"xml": xml, "read_at": time.time()}))

    def forget_label_config(self) -> None:
        """Make the next publish read the label config from Label Studio."""
        self.redis.delete(self.k_label_config)

    def reconcile_marks(self) -> dict[str, float]:
        """When the last reconcile (``last``) and the last full one (``full``) began, and when a job of
        the project last found Label Studio away (``away``), seconds since the epoch; a mark is missing
        when none is recorded (a new project, or Redis was lost)."""
        return {_text(k): float(v) for k, v in self.redis.hgetall(self.k_reconcile).items()}

    def set_reconcile_marks(self, **marks: float) -> None:
        """Record when a reconcile began (``last``, ``full``) or Label Studio was found away (``away``)."""
        mapping: dict[FieldT, EncodableT] = {name: repr(at) for name, at in marks.items()}
        self.redis.hset(self.k_reconcile, mapping=mapping)

    def note_if_away(self, exc: BaseException) -> None:
        """Record now as ``away`` when ``exc`` says Label Studio was away (see
        :attr:`LabelStudioError.away`): the project's next reconcile is then a full one."""
        if isinstance(exc, LabelStudioError) and exc.away:
            self.set_reconcile_marks(away=time.time())

    def set_status(self, **fields: Any) -> None:
        """Set status fields (JSON-encoded values)."""
        if fields:
            self.redis.hset(self.k_status, mapping={k: orjson.dumps(v) for k, v in fields.items()})

    def set_published(self, **fields: Any) -> None:
        """Set status fields that describe what this holder published, only while the publish lock is
        ours (compared in Redis, in the same step as the write); else :class:`LockLost`."""
        pairs = [part for k, v in fields.items() for part in (k, orjson.dumps(v))]
        if not self.redis.eval(_SET_FENCED, 2, self.k_lock, self.k_status, self._lock_token, *pairs):
            raise LockLost(f"project {self.project_id}: the publish lock was lost before the status write")

    def status(self) -> dict[str, Any]:
        """The status fields, decoded, plus the pending event count."""
        raw = self.redis.hgetall(self.k_status)
        out: dict[str, Any] = {}
        for key, value in raw.items():
            name = _text(key)
            if name == "built":
                continue
            out[name] = orjson.loads(value)
        out["pending_events"] = self.pending()
        return out

    @contextlib.contextmanager
    def lock(self, *, ttl: float = LOCK_TTL, wait: float = 600.0) -> Iterator[RenewingLock]:
        """Hold the project's publish lock (single flight over all workers), renewed while held.

        Its value names the holder (``host:pid:random``). It expires ``ttl`` seconds after the holder
        stopped renewing it (a publisher then :meth:`recover` s the events the dead holder had taken).
        :meth:`settle` and :meth:`give_back` compare it before they touch the taken events, and the
        publisher calls :meth:`check_lock` before each write: a holder that lost it writes nothing more.
        """
        with RenewingLock(self.redis, self.k_lock, ttl=ttl, wait=wait) as held:
            self._held = held
            try:
                yield held
            finally:
                self._held = None

    def holds_lock(self) -> bool:
        """Whether the lock taken by :meth:`lock` is still ours (it may have expired meanwhile)."""
        return self._held is not None and self._held.held()

    def check_lock(self) -> None:
        """Raise :class:`LockLost` unless the publish lock taken by :meth:`lock` is still ours."""
        if self._held is None:
            raise LockLost(f"project {self.project_id}: the publish lock is not held")
        self._held.check()

    @property
    def _lock_token(self) -> str:
        return (self._held.token if self._held is not None else None) or ""


class ManifestKeep:
    """The Redis side of one project's kept manifest state (:mod:`sync_service.domain.manifests` says
    what the values mean; here they are bytes). Keys, under ``cl:p:<id>:m:``:

    * ``head`` (the small state: object versions, counters, label frequencies, split totals), ``busy``
      (set while the state is being changed: a state found busy is not trusted, the next publish
      rebuilds it);
    * ``rec`` (task id -> what the last publish made of it), ``refs`` (source-ref -> its usable tasks),
      ``errors`` (the tasks left out, scored by id);
    * ``order:<side>`` and ``sizes:<side>`` (each manifest's task ids in order and their lines' sizes,
      packed 64-bit integers);
    * ``st:<digest>`` (one stratum's entries without a dataset, ranked by the split's hash), listed in
      ``strata``.
    """

    def __init__(self, redis: Redis, project_id: int) -> None:
        self.redis = redis
        base = f"cl:p:{project_id}:m:"
        self.base = base
        self.k_head = base + "head"
        self.k_busy = base + "busy"
        self.k_rec = base + "rec"
        self.k_refs = base + "refs"
        self.k_errors = base + "errors"
        self.k_strata = base + "strata"

    def order_keys(self, side: str) -> tuple[str, str]:
        """The keys of one manifest's task ids and line sizes."""
        return self.base + f"order:{side}", self.base + f"sizes:{side}"

    def stratum_key(self, digest: str) -> str:
        """The key of the stratum whose name has this digest."""
        return self.base + f"st:{digest}"

    # ---------------------------------------------------------------------------------------- reads

    def head(self) -> bytes | None:
        """The kept head, or None when there is none or a change of the state never finished."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.k_head)
        pipe.exists(self.k_busy)
        head, busy = pipe.execute()
        return None if busy or head is None else _bytes(head)

    def records(self, task_ids: Iterable[int]) -> dict[int, bytes]:
        """The kept records of these tasks (tasks without one left out)."""
        ids = list(task_ids)
        if not ids:
            return {}
        found = self.redis.hmget(self.k_rec, [str(t) for t in ids])
        return {t: _bytes(raw) for t, raw in zip(ids, found, strict=True) if raw is not None}

    def ref_tasks(self, refs: Iterable[str]) -> dict[str, bytes]:
        """The kept task lists of these source-refs (refs without one left out)."""
        names = list(refs)
        if not names:
            return {}
        found = self.redis.hmget(self.k_refs, names)
        return {ref: _bytes(raw) for ref, raw in zip(names, found, strict=True) if raw is not None}

    def order(self, side: str) -> tuple[bytes, bytes]:
        """One manifest's packed task ids and line sizes."""
        ids, sizes = self.redis.mget(list(self.order_keys(side)))
        return _bytes(ids or b""), _bytes(sizes or b"")

    def first_errors(self, count: int) -> tuple[list[int], int]:
        """The ids of the first ``count`` tasks left out, and how many there are."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(self.k_errors, 0, count - 1)
        pipe.zcard(self.k_errors)
        first, total = pipe.execute()
        return [int(t) for t in first], int(total)

    def stratum_card(self, key: str) -> int:
        """How many ranked entries the stratum holds."""
        return int(self.redis.zcard(key))

    def stratum_at(self, key: str, index: int) -> str | None:
        """The stratum's ``index``-th ranked member (0 first), or None past its end."""
        found = self.redis.zrange(key, index, index)
        return _text(found[0]) if found else None  # type: ignore[arg-type]

    def stratum_between(self, key: str, low: str | None, high: str | None) -> list[str]:
        """The stratum's members ``low <= m < high`` (None: unbounded)."""
        lo = "-" if low is None else "[" + low
        hi = "+" if high is None else "(" + high
        return [_text(m) for m in self.redis.zrangebylex(key, lo, hi)]

    # --------------------------------------------------------------------------------------- writes

    def mark_busy(self) -> None:
        """Mark the state as being changed (until :meth:`commit` or :meth:`replace`)."""
        self.redis.set(self.k_busy, 1)

    def change_strata(self, added: dict[str, list[str]], removed: dict[str, list[str]]) -> None:
        """Add and remove ranked members of strata (the state must be marked busy first)."""
        pipe = self.redis.pipeline(transaction=True)
        for key, members in removed.items():
            if members:
                pipe.zrem(key, *members)
        for key, members in added.items():
            if members:
                pipe.zadd(key, dict.fromkeys(members, 0))
                pipe.sadd(self.k_strata, key)
        pipe.execute()

    def commit(
        self,
        head: bytes,
        *,
        records: dict[int, bytes],
        gone: Iterable[int],
        refs: dict[str, bytes | None],
        errors: dict[int, bool],
        orders: dict[str, tuple[bytes, bytes]],
    ) -> None:
        """Write what a publish changed in one transaction and clear the busy mark: ``refs`` None
        drops a source-ref, ``errors`` maps a task id to whether it is left out."""
        pipe = self.redis.pipeline(transaction=True)
        dropped_tasks = [str(t) for t in gone]
        if dropped_tasks:
            pipe.hdel(self.k_rec, *dropped_tasks)
        if records:
            pipe.hset(self.k_rec, mapping={str(t): v for t, v in records.items()})
        dropped = [ref for ref, value in refs.items() if value is None]
        if dropped:
            pipe.hdel(self.k_refs, *dropped)
        kept_refs: dict[FieldT, EncodableT] = {ref: v for ref, v in refs.items() if v is not None}
        if kept_refs:
            pipe.hset(self.k_refs, mapping=kept_refs)
        back = [str(t) for t, left_out in errors.items() if not left_out]
        if back:
            pipe.zrem(self.k_errors, *back)
        into = {str(t): t for t, left_out in errors.items() if left_out}
        if into:
            pipe.zadd(self.k_errors, into)
        for side, (ids, sizes) in orders.items():
            k_ids, k_sizes = self.order_keys(side)
            pipe.mset({k_ids: ids, k_sizes: sizes})
        pipe.set(self.k_head, head)
        pipe.delete(self.k_busy)
        pipe.execute()

    def replace(
        self,
        head: bytes,
        *,
        records: dict[int, bytes],
        refs: dict[str, bytes],
        errors: Iterable[int],
        orders: dict[str, tuple[bytes, bytes]],
        strata: dict[str, list[str]],
    ) -> None:
        """Replace the whole state (after a full publish), ``REBUILD_CHUNK`` values per round trip."""
        self.forget()
        self.mark_busy()
        bulk = Bulk(self.redis)
        record_items = ((str(task_id), value) for task_id, value in records.items())
        for key, items in ((self.k_rec, record_items), (self.k_refs, iter(refs.items()))):
            while chunk := list(itertools.islice(items, REBUILD_CHUNK)):
                bulk.pairs("HSET", key, chunk)
                bulk.send()
        bulk.pairs("ZADD", self.k_errors, [(t, str(t)) for t in errors])
        pending = 0
        for key, members in strata.items():
            bulk.command("SADD", self.k_strata, key)
            for start in range(0, len(members), REBUILD_CHUNK):
                bulk.pairs("ZADD", key, [(0, m) for m in members[start : start + REBUILD_CHUNK]])
                pending += 1
                if pending >= 8:
                    bulk.send()
                    pending = 0
        for side, (ids, sizes) in orders.items():
            k_ids, k_sizes = self.order_keys(side)
            bulk.command("MSET", k_ids, ids, k_sizes, sizes)
        bulk.command("SET", self.k_head, head)
        bulk.command("DEL", self.k_busy)
        bulk.send()

    def forget(self) -> None:
        """Drop the whole kept state (the next publish writes the manifests whole and keeps it again)."""
        strata = [_text(k) for k in self.redis.smembers(self.k_strata)]
        keys = [self.k_head, self.k_rec, self.k_refs, self.k_errors, self.k_strata, *strata]
        for side in ("train", "test"):
            keys.extend(self.order_keys(side))
        self.redis.delete(*keys)
        self.redis.delete(self.k_busy)
