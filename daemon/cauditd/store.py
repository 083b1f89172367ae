"""The findings store: SQLite (WAL) written in batches on one writer thread, queried off the loop.

Ids come from an in-memory counter at `add`, so callers never wait for the disk; the writer
thread commits batches at most `StoreConfig.batch_ms` old, which is what a SIGKILL can lose (the
first finding after a quiet spell at once: FindingStore._next_batch).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import functools
import json
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cauditd import tasks
from cauditd.config import StoreConfig
from cauditd.findings import ContainerRef, Finding, Priority, rfc3339_ns
from cauditd.retention import Retention

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteHook = Callable[[sqlite3.Connection, list[Finding]], None]
HeldHook = Callable[[list[Finding]], None]

MAX_BATCH = 5000
STORAGE_ERRORS = frozenset((8, 10, 13))  # SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL
RETRY_S = 2.0  # during an outage, how often the writer tries the disk again
HELD_MAX = 20_000  # findings held in memory during an outage, at most
RETENTION_INTERVAL_S = 60.0
RETENTION_FIRST_S = 10.0  # not in the start-up burst
SUBSCRIBER_QUEUE = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS findings (
    id INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL,
    rule TEXT NOT NULL,
    priority INTEGER NOT NULL,
    source TEXT NOT NULL,
    container_id TEXT NOT NULL,
    container_short TEXT NOT NULL,
    container_name TEXT NOT NULL,
    tags TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_time_ns INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS findings_time ON findings(time_ns);
CREATE INDEX IF NOT EXISTS findings_rule ON findings(rule, id);
CREATE INDEX IF NOT EXISTS findings_container ON findings(container_id, id);
CREATE INDEX IF NOT EXISTS findings_container_short ON findings(container_short, id);
CREATE INDEX IF NOT EXISTS findings_container_name ON findings(container_name, id);
"""

INSERT = (
    "INSERT OR REPLACE INTO findings (id, time_ns, rule, priority, source, container_id,"
    " container_short, container_name, tags, count, last_time_ns, doc)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
UPDATE = "UPDATE findings SET count = ?, last_time_ns = ?, doc = ? WHERE id = ?"


# Findings made before their container's metadata came carry its short id as name (the
# hold-back ran out); when the metadata comes they take its name, image and pod.
NAME_CONTAINER = (
    "UPDATE findings SET container_name = ?, doc = json_set(doc, '$.container.name', ?,"
    " '$.container.image', ?, '$.container.pod', ?, '$.container.namespace', ?)"
    " WHERE container_id = ? AND container_name = container_short"
)


def encode_cursor(before_id: int) -> str:
    """An opaque cursor for the page of findings older than `before_id`."""
    return base64.urlsafe_b64encode(f"f1:{before_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The `before_id` of a cursor from `encode_cursor`; ValueError when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor this server issued") from None
    prefix, _, number = raw.partition(":")
    if prefix != "f1" or not number.isdigit() or len(number) > 18:
        raise ValueError("not a cursor this server issued")
    return int(number)


@dataclass(slots=True, kw_only=True)
class FindingFilter:
    """What a findings query selects; repeated values of one field are alternatives (OR).

    `before_id` / `after_id` are keyset bounds on the id (exclusive); `ascending` is oldest first.
    """

    since_ns: int | None = None
    until_ns: int | None = None
    min_priority: Priority | None = None
    rules: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    limit: int = 100
    before_id: int | None = None
    after_id: int | None = None
    ascending: bool = False

    def matches(self, finding: Finding) -> bool:
        """The same selection as the SQL, for findings that are not yet on disk."""
        fid = finding.id or 0
        cont = finding.container
        return (
            (self.since_ns is None or finding.time_ns >= self.since_ns)
            and (self.until_ns is None or finding.time_ns <= self.until_ns)
            and (self.min_priority is None or finding.priority <= self.min_priority)
            and (not self.rules or finding.rule in self.rules)
            and (not self.tags or any(t in finding.tags for t in self.tags))
            and (
                not self.containers
                or any(c in (cont.full_id, cont.id, cont.name) for c in self.containers)
            )
            and (not self.sources or finding.source in self.sources)
            and (self.before_id is None or fid < self.before_id)
            and (self.after_id is None or fid > self.after_id)
        )

    def where(self) -> tuple[str, list[Any]]:
        """The SQL WHERE clause and its parameters."""
        terms: list[str] = []
        args: list[Any] = []

        def any_of(template: str, values: tuple[str, ...], per_value: int = 1) -> None:
            terms.append("(" + " OR ".join([template] * len(values)) + ")")
            for value in values:
                args.extend([value] * per_value)

        for term, value in (
            ("time_ns >= ?", self.since_ns),
            ("time_ns <= ?", self.until_ns),
            ("priority <= ?", None if self.min_priority is None else int(self.min_priority)),
            ("id < ?", self.before_id),
            ("id > ?", self.after_id),
        ):
            if value is not None:
                terms.append(term)
                args.append(value)
        if self.rules:
            any_of("rule = ?", self.rules)
        if self.sources:
            any_of("source = ?", self.sources)
        if self.tags:
            any_of("instr(tags, ',' || ? || ',') > 0", self.tags)
        if self.containers:
            any_of("(container_id = ? OR container_short = ? OR container_name = ?)",
                   self.containers, per_value=3)
        return (" WHERE " + " AND ".join(terms)) if terms else "", args


def _storage_error(exc: sqlite3.Error) -> bool:
    """The state dir refused the write (full, read-only, I/O error): worth holding and retrying,
    unlike an error in what was written."""
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in STORAGE_ERRORS


class Outage:
    """What the writer holds in memory while the state dir refuses writes, and since when.

    Only the writer thread changes it; the loop reads it for /v1/stats, /readyz and queries.
    At most HELD_MAX findings are held; past it the oldest below Critical are dropped (`lost`).
    """

    def __init__(self) -> None:
        self.since_ns = 0
        self.error = ""
        self.adds: list[Finding] = []
        self.updates: dict[int, Finding] = {}
        self.lost = 0
        self.outages = 0
        self.written_after = 0  # held findings written once the disk took writes again
        self._retry_at = 0.0

    @property
    def active(self) -> bool:
        return self.since_ns != 0

    def due(self) -> bool:
        return time.monotonic() >= self._retry_at

    def began(self, error: sqlite3.Error) -> None:
        self._retry_at = time.monotonic() + RETRY_S
        if not self.active:
            self.since_ns = time.time_ns()
            self.outages += 1
            log.error("the state dir refuses writes (%s): findings are held in memory and "
                      "alerts still sent; retrying every %gs", error, RETRY_S)
        self.error = str(error)

    def recovered(self, written: int) -> None:
        if self.active:
            log.warning("the state dir takes writes again: %d findings held in memory written",
                        written)
        self.since_ns, self.error = 0, ""
        self.written_after += written

    def hold(self, adds: list[Finding], updates: list[Finding]) -> None:
        self.adds += adds
        for finding in updates:
            self.updates[finding.id or 0] = finding
        if len(self.adds) > HELD_MAX:
            self._trim()

    def take(self) -> tuple[list[Finding], list[Finding]]:
        adds, updates = self.adds, list(self.updates.values())
        self.adds, self.updates = [], {}
        return adds, updates

    def _trim(self) -> None:
        """Down to nine tenths of HELD_MAX: the oldest below Critical go first."""
        excess = len(self.adds) - HELD_MAX * 9 // 10
        lesser = [f for f in self.adds if f.priority > Priority.CRITICAL][:excess]
        dropped = {id(f) for f in lesser}
        kept = [f for f in self.adds if id(f) not in dropped]
        if len(kept) > HELD_MAX * 9 // 10:
            kept = kept[len(kept) - HELD_MAX * 9 // 10:]
        self.lost += len(self.adds) - len(kept)
        log.error("the state dir still refuses writes: %d held findings dropped (%d held)",
                  len(self.adds) - len(kept), len(kept))
        self.adds = kept

    def describe(self) -> str | None:
        if not self.active:
            return None
        return (f"the state dir refuses writes since {rfc3339_ns(self.since_ns)} ({self.error}):"
                f" {len(self.adds)} findings held in memory, alerts still sent")

    def to_json(self) -> dict[str, Any]:
        return {
            "writable": not self.active,
            "problem": self.describe(),
            "held_in_memory": len(self.adds),
            "held_lost": self.lost,
            "outages": self.outages,
            "written_after_outage": self.written_after,
        }


class Gap:
    """Marks findings a slow subscriber missed: read them from the store by id, then go on."""


GAP = Gap()


class FindingSubscription:
    """New findings as they are added, for one SSE client; bounded, never blocks the store.

    When the queue is full the subscription drops everything until the consumer has drained it
    and seen one `GAP`; the consumer then reads what it missed from the store (ids above the last
    one it sent) and skips queued findings at or below what it already sent.
    """

    def __init__(self, store: FindingStore, maxsize: int) -> None:
        self._store = store
        self._maxsize = maxsize
        self._queue: collections.deque[Finding] = collections.deque()
        self._ready = asyncio.Event()
        self._gap = False
        self.closed = False

    def offer(self, finding: Finding) -> None:
        """Queue a new finding (called by the store on the loop thread)."""
        if self.closed or self._gap:
            return
        if len(self._queue) >= self._maxsize:
            self._gap = True
        else:
            self._queue.append(finding)
        self._ready.set()

    def close(self) -> None:
        """Stop the subscription; iteration ends after what is queued."""
        self.closed = True
        self._store._unsubscribe(self)
        self._ready.set()

    def __aiter__(self) -> FindingSubscription:
        return self

    async def __anext__(self) -> Finding | Gap:
        while True:
            if self._queue:
                return self._queue.popleft()
            if self._gap:
                self._gap = False
                return GAP
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()


class FindingStore:
    """Findings on disk. Call `add`/`update`/`subscribe` from the event loop thread."""

    def __init__(self, path: Path, config: StoreConfig, *,
                 retention_interval_s: float = RETENTION_INTERVAL_S) -> None:
        self.path = Path(path)
        self.config = config
        self._retention_interval_s = retention_interval_s
        self._schemas: list[str] = []
        self._hooks: list[WriteHook] = []
        self._ops: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._batch_began = -math.inf  # monotonic time the writer's last batch began (its own)
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: set[FindingSubscription] = set()
        self._retention_task: asyncio.Task[None] | None = None
        self._next_id = 1
        self._accepting = False
        self.retention = Retention(config, self.run_in_writer)
        self.outage = Outage()
        self._held_hooks: list[HeldHook] = []

    @property
    def last_id(self) -> int:
        """The id of the newest finding accepted (0 when none)."""
        return self._next_id - 1

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the schema, seed the id counter and start the writer and retention."""
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._next_id = await asyncio.to_thread(self._init_db) + 1
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="store-read")
        self._writer = threading.Thread(target=self._writer_main, name="store-writer", daemon=True)
        self._writer.start()
        self._accepting = True
        self._retention_task = tasks.create_task(self._retention_loop(), name="store-retention")

    async def stop(self) -> None:
        """Write everything accepted so far, then close; `add` raises afterwards."""
        if not self._accepting:
            return
        self._accepting = False
        if self._retention_task is not None:
            self._retention_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention_task
        for sub in list(self._subs):
            sub.close()
        self._ops.put(("stop",))
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
        self._reader_conns.clear()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _init_db(self) -> int:
        conn = self._connect()
        try:
            conn.executescript(SCHEMA)
            for sql in self._schemas:
                conn.executescript(sql)
            row = conn.execute("SELECT MAX(id) FROM findings").fetchone()
            return int(row[0] or 0)
        finally:
            conn.close()

    # -- extension points for other components --------------------------------------------

    def add_schema(self, sql: str) -> None:
        """Tables another component keeps in this database (CREATE ... IF NOT EXISTS)."""
        self._schemas.append(sql)
        if self._accepting:
            self._ops.put(("script", sql))

    def add_write_hook(self, fn: WriteHook) -> None:
        """Call `fn(conn, new_findings)` on the writer thread inside each batch's transaction."""
        self._hooks.append(fn)

    async def run_in_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the writer thread in its own transaction, after pending batches."""
        return await self._queue_call(fn)

    def _queue_call(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue `fn(conn)` for the writer now, in order with adds and updates; its result."""
        if not self._accepting or self._loop is None:
            raise RuntimeError("the finding store is not running")
        future: asyncio.Future[T] = self._loop.create_future()
        self._ops.put(("call", fn, future))
        return future

    async def flush(self) -> None:
        """Return once every finding added before the call is committed."""
        await self.run_in_writer(_noop)

    # -- writing -----------------------------------------------------------------------------

    def add(self, finding: Finding) -> Finding:
        """Accept a new finding: give it an id now and queue it for the writer."""
        if not self._accepting:
            raise RuntimeError("the finding store is not running")
        finding.id = self._next_id
        self._next_id += 1
        self._ops.put(("add", finding))
        for sub in self._subs:
            sub.offer(finding)
        return finding

    def update(self, finding: Finding) -> None:
        """Write a suppressed repeat's new count and last time for an already-added finding."""
        if finding.id is None:
            raise ValueError("update() of a finding that was never added")
        if not self._accepting:
            raise RuntimeError("the finding store is not running")
        self._ops.put(("update", finding))

    def name_container(self, ref: ContainerRef) -> asyncio.Future[int] | None:
        """Stored findings of `ref`'s container that are named by its short id (made before
        its metadata came) take its name, image and pod, in order with the adds and updates
        queued before; how many did (None when the store is stopping)."""
        if not self._accepting:
            return None
        values = (ref.name, ref.name, ref.image, ref.pod, ref.namespace, ref.full_id)

        def rename(conn: sqlite3.Connection) -> int:
            return int(conn.execute(NAME_CONTAINER, values).rowcount)

        future = self._queue_call(rename)
        future.add_done_callback(_log_rename_failure)
        return future

    def add_held_hook(self, fn: HeldHook) -> None:
        """Call `fn(findings)` on the writer thread with new findings the state dir refused and
        that are held in memory until it takes writes again (the alerts send them meanwhile)."""
        self._held_hooks.append(fn)

    @property
    def problem(self) -> str | None:
        """Why findings are not reaching the disk now (None while they are)."""
        return self.outage.describe()

    def _writer_main(self) -> None:
        conn = self._connect()
        try:
            running = True
            while running:
                adds, updates, control = self._next_batch()
                self._write(conn, adds, updates)
                if control is not None:
                    running = self._run_control(conn, control)
            if self.outage.active:
                self._write(conn, [], [], final=True)
        finally:
            conn.close()

    def _next_batch(self) -> tuple[list[Finding], list[Finding], tuple[Any, ...] | None]:
        """Collect adds and updates until the first is batch_ms old or a control op comes
        (during an outage, also return empty-handed every RETRY_S to try the disk again).

        The first finding after a quiet spell (no batch began within batch_ms) does not wait:
        it is written with whatever is queued already, so a lone detection reaches the API and
        the alerts without the batch's delay; a burst is written in batches of batch_ms.
        Updates of one finding in a batch are written once, as the last of them has it (a
        finding repeated by every event of a loop would otherwise be written once per event
        batch)."""
        adds: list[Finding] = []
        updates: dict[int | None, Finding] = {}
        try:
            op = self._ops.get(timeout=RETRY_S if self.outage.active else None)
        except queue.Empty:
            return adds, [], None
        began = time.monotonic()
        window = self.config.batch_ms / 1000
        deadline = began if began - self._batch_began >= window else began + window
        self._batch_began = began
        while True:
            if op[0] == "add":
                adds.append(op[1])
            elif op[0] == "update":
                updates[op[1].id] = op[1]
            else:
                return adds, list(updates.values()), op
            if len(adds) + len(updates) >= MAX_BATCH:
                return adds, list(updates.values()), None
            remaining = deadline - time.monotonic()
            try:
                op = self._ops.get(timeout=remaining) if remaining > 0 else self._ops.get_nowait()
            except queue.Empty:
                return adds, list(updates.values()), None

    def _write(self, conn: sqlite3.Connection, adds: list[Finding], updates: list[Finding],
               *, final: bool = False) -> None:
        """Write a batch; during an outage, first what is held (when it is time to retry), and
        hold the batch when the disk still refuses it."""
        outage = self.outage
        if outage.active and not (final or outage.due()):
            self._hold(outage, adds, updates)
            return
        held_adds, held_updates = outage.take()
        error = self._write_batch(conn, held_adds + adds, held_updates + updates)
        if error is None:
            if held_adds or held_updates or outage.active:
                outage.recovered(len(held_adds))
            return
        if not _storage_error(error):
            log.error("writing %d findings failed; they are lost: %s",
                      len(held_adds) + len(adds) + len(held_updates) + len(updates), error)
            return
        outage.began(error)
        outage.hold(held_adds, held_updates)
        self._hold(outage, adds, updates)
        if final:
            log.error("cauditd stopping with %d findings the state dir refused (%s): lost",
                      len(outage.adds), error)

    def _hold(self, outage: Outage, adds: list[Finding], updates: list[Finding]) -> None:
        outage.hold(adds, updates)
        if adds:
            for hook in self._held_hooks:
                try:
                    hook(adds)
                except Exception:
                    log.exception("held-findings hook %r failed", hook)

    def _write_batch(self, conn: sqlite3.Connection, adds: list[Finding],
                     updates: list[Finding]) -> sqlite3.Error | None:
        """One transaction: the findings, the write hooks' rows, the updates. The error if it
        failed (rolled back: nothing of it is on disk)."""
        if not adds and not updates:
            return None
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT, [_row(f) for f in adds])
            if adds:
                for hook in self._hooks:
                    _run_hook(conn, hook, adds)
            conn.executemany(
                UPDATE, [(f.count, f.last_time_ns, _doc(f), f.id) for f in updates]
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            return exc
        return None

    def _run_control(self, conn: sqlite3.Connection, op: tuple[Any, ...]) -> bool:
        if op[0] == "stop":
            return False
        if op[0] == "script":
            try:
                conn.executescript(op[1])
            except sqlite3.Error:
                log.exception("a component's schema failed")
            return True
        fn, future = op[1], op[2]
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = fn(conn)
            if conn.in_transaction:
                conn.execute("COMMIT")
        except Exception as exc:  # handed to the awaiting coroutine
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._resolve(future, None, exc)
        else:
            self._resolve(future, result, None)
        return True

    def _resolve(self, future: asyncio.Future[Any], result: Any,
                 exc: BaseException | None) -> None:
        def settle() -> None:
            if future.done():
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)

        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(settle)

    # -- reading -----------------------------------------------------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise RuntimeError("the finding store is not running")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._with_reader, fn)

    def _with_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            self._reader_conns.append(conn)
        return fn(conn)

    async def query(self, filters: FindingFilter) -> tuple[list[Finding], str | None]:
        """Findings matching `filters`, newest first (or oldest first), and the next cursor;
        during an outage the findings held in memory are included."""
        found, cursor = await self._read(functools.partial(_query, filters=filters))
        held = [f for f in list(self.outage.adds) if filters.matches(f)]
        if not held:
            return found, cursor
        merged = sorted([*found, *held], key=lambda f: f.id or 0, reverse=not filters.ascending)
        if len(merged) > filters.limit:
            merged = merged[: filters.limit]
            cursor = None if filters.ascending else encode_cursor(merged[-1].id or 0)
        return merged, cursor

    async def get(self, finding_id: int) -> Finding | None:
        """One finding by id, once it is on disk (or held in memory during an outage)."""
        row = await self._read(
            lambda c: c.execute("SELECT doc FROM findings WHERE id = ?", (finding_id,)).fetchone()
        )
        if row is not None:
            return Finding.from_json(json.loads(row[0]))
        return next((f for f in list(self.outage.adds) if f.id == finding_id), None)

    def stats(self) -> dict[str, Any]:
        """/v1/stats `store`: writable or why not, what is held, what retention deleted."""
        return {**self.outage.to_json(), "retention": self.retention.stats.to_json()}

    async def counts_by_container(self) -> list[dict[str, Any]]:
        """Per container: its ids and name, findings stored, repeats counted and the latest time."""
        rows = await self._read(lambda c: c.execute(
            "SELECT container_id, container_short, container_name, COUNT(*), SUM(count),"
            " MAX(time_ns) FROM findings GROUP BY container_id ORDER BY MAX(id) DESC"
        ).fetchall())
        return [
            {"full_id": r[0], "id": r[1], "name": r[2], "findings": r[3], "events": r[4],
             "last_time": rfc3339_ns(r[5])}
            for r in rows
        ]

    # -- subscriptions -------------------------------------------------------------------------

    def subscribe(self, maxsize: int = SUBSCRIBER_QUEUE) -> FindingSubscription:
        """New findings from now on, as they are added (before they are on disk)."""
        sub = FindingSubscription(self, maxsize)
        if self._accepting:
            self._subs.add(sub)
        else:
            sub.closed = True
        return sub

    def _unsubscribe(self, sub: FindingSubscription) -> None:
        self._subs.discard(sub)

    # -- retention -----------------------------------------------------------------------------

    async def _retention_loop(self) -> None:
        await asyncio.sleep(min(self._retention_interval_s, RETENTION_FIRST_S))
        while True:
            try:
                await self.apply_retention()
            except sqlite3.Error as exc:
                log.error("retention failed: %s", exc)
            await asyncio.sleep(self._retention_interval_s)

    async def apply_retention(self) -> int:
        """Delete findings past the age and count limits (cauditd.retention); how many."""
        return await self.retention.apply()


def _log_rename_failure(future: asyncio.Future[int]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("naming a container's earlier findings failed: %s", exc)


def _noop(conn: sqlite3.Connection) -> None:
    return None


def _doc(finding: Finding) -> str:
    return json.dumps(finding.to_json(), separators=(",", ":"), default=str)


def _row(f: Finding) -> tuple[Any, ...]:
    return (
        f.id, f.time_ns, f.rule, int(f.priority), f.source, f.container.full_id,
        f.container.id, f.container.name, "," + ",".join(f.tags) + ",", f.count,
        f.last_time_ns, _doc(f),
    )


def _run_hook(conn: sqlite3.Connection, hook: WriteHook, adds: list[Finding]) -> None:
    """Run a write hook in a savepoint: a failing hook loses its own rows, never the findings."""
    conn.execute("SAVEPOINT hook")
    try:
        hook(conn, adds)
    except Exception:
        log.exception("write hook %r failed", hook)
        conn.execute("ROLLBACK TO hook")
    conn.execute("RELEASE hook")


def _query(conn: sqlite3.Connection, filters: FindingFilter) -> tuple[list[Finding], str | None]:
    where, args = filters.where()
    order = "ASC" if filters.ascending else "DESC"
    rows = conn.execute(
        f"SELECT id, doc FROM findings{where} ORDER BY id {order} LIMIT ?",
        [*args, filters.limit + 1],
    ).fetchall()
    more = len(rows) > filters.limit
    findings = [Finding.from_json(json.loads(doc)) for _, doc in rows[: filters.limit]]
    for (fid, _), finding in zip(rows, findings, strict=False):
        finding.id = fid
    cursor = encode_cursor(rows[filters.limit - 1][0]) if more and not filters.ascending else None
    return findings, cursor
