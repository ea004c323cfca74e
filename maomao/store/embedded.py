"""EmbeddedStore: etcd's data model on one SQLite file (WAL mode).

The default store of a single machine, so that the same daemon and the same
``ctl`` run without etcd (k3s's kine does the same for its single-node
default).  It keeps etcd's semantics:

* ``meta.revision`` is the global revision; each write transaction bumps it
  once, whatever the number of keys it changes;
* ``kv`` holds each key with its create/mod revision, version and lease;
* ``log`` records every change (``revision``, ``sub``) so that watches can
  start from any revision not yet compacted;
* ``leases`` holds each lease's ttl and wall-clock expiry.  Whoever touches
  the store next (any process: a read, a write, a watch poll) deletes the
  keys of leases past their expiry, with delete events, before doing
  anything else, so no reader ever sees a key of an expired lease.

Several processes may open one file: SQLite serialises the writers
(``BEGIN IMMEDIATE``), and a watch polls the log to see the other
processes' changes (and is woken at once by this process's own writes).
Calls go through the store's offload: in the daemon a worker thread, one at
a time per store, never on the event loop.

The files are private to the user the store runs as, whatever the umask:
the database and its ``-wal``/``-shm`` files 0600 (looser modes tightened
on open), a directory the store creates 0700, and so is maomao's own state
directory when the store lives in it (systemd's ``StateDirectoryMode`` may
have made it 0750).  Any other existing directory is left as it is (it may
be shared: ``/var/lib``, a home): the files in it are private all the same.
"""

from __future__ import annotations

import math
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from maomao.errors import Compacted, ConditionFailed, LeaseExpired, StoreError, StoreUnavailable
from maomao.store import (
    Compare,
    Delete,
    Event,
    Get,
    KeyValue,
    Offload,
    Operation,
    Put,
    RangeResult,
    Store,
    TxnResult,
    compare_holds,
    if_revision_compare,
    threaded,
)

if TYPE_CHECKING:
    import trio

T = TypeVar("T")

#: how often a watch looks for other processes' changes (a pragma, cheap)
POLL_INTERVAL = 0.05
#: how often a watch reads the log even when nothing seems to have changed
FULL_READ_INTERVAL = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 1), ('compact_revision', 0);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER NOT NULL,
    sub INTEGER NOT NULL,
    type TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL,
    PRIMARY KEY (revision, sub)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY,
    ttl INTEGER NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (expires);
"""

_KV_COLUMNS = "key, value, create_revision, mod_revision, version, lease"


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``."""
    if not prefix:
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _kv(row: tuple[str, bytes, int, int, int, int]) -> KeyValue:
    return KeyValue(row[0], bytes(row[1]), row[2], row[3], row[4], row[5])


class _Writer:
    """The changes of one write transaction, all at one new revision."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.base = _meta(db, "revision")
        self.sub = 0

    @property
    def revision(self) -> int:
        return self.base + 1 if self.sub else self.base

    def _log(self, kind: Literal["put", "delete"], kv: KeyValue) -> None:
        self.db.execute(
            "INSERT INTO log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (self.base + 1, self.sub, kind, kv.key, kv.value, kv.create_revision, kv.version, kv.lease),
        )
        self.sub += 1

    def put(self, key: str, value: bytes, lease: int) -> None:
        if lease and self.db.execute("SELECT 1 FROM leases WHERE id = ?", (lease,)).fetchone() is None:
            raise LeaseExpired(f"lease {lease:x} not found")
        old = _select_key(self.db, key)
        rev = self.base + 1
        kv = KeyValue(
            key,
            value,
            old.create_revision if old else rev,
            rev,
            old.version + 1 if old else 1,
            lease,
        )
        self.db.execute(
            f"INSERT OR REPLACE INTO kv ({_KV_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease),
        )
        self._log("put", kv)

    def delete_keys(self, keys: Sequence[str]) -> int:
        for key in keys:
            self.db.execute("DELETE FROM kv WHERE key = ?", (key,))
            self._log("delete", KeyValue(key, b"", 0, self.base + 1, 0, 0))
        return len(keys)

    def delete(self, key: str, prefix: bool) -> int:
        if not prefix:
            return self.delete_keys([key] if _select_key(self.db, key) else [])
        return self.delete_keys([kv.key for kv in _select_prefix(self.db, key)])

    def finish(self) -> int:
        if self.sub:
            self.db.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (self.base + 1,))
        return self.revision


def _meta(db: sqlite3.Connection, name: str) -> int:
    row = db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return int(row[0])


def _select_key(db: sqlite3.Connection, key: str) -> KeyValue | None:
    row = db.execute(f"SELECT {_KV_COLUMNS} FROM kv WHERE key = ?", (key,)).fetchone()
    return _kv(row) if row else None


def _select_prefix(db: sqlite3.Connection, prefix: str) -> list[KeyValue]:
    end = prefix_end(prefix)
    if end is None:
        rows = db.execute(f"SELECT {_KV_COLUMNS} FROM kv ORDER BY key").fetchall()
    else:
        rows = db.execute(
            f"SELECT {_KV_COLUMNS} FROM kv WHERE key >= ? AND key < ? ORDER BY key", (prefix, end)
        ).fetchall()
    return [_kv(r) for r in rows]


def private_directory(path: Path) -> None:
    """Make ``path`` a directory only its owner can enter (0700), whatever the umask.

    A directory made here gets 0700; an existing one is tightened only when it
    is maomao's own state directory (others may be shared).
    """
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        from maomao.config import state_dir

        if _same_directory(path, state_dir()):
            _tighten(path, 0o700)
        return
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)  # mkdir's mode went through the umask


def private_files(db: Path) -> None:
    """The database file and its -wal and -shm files 0600 (those that exist)."""
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        _tighten(path, 0o600)


def _tighten(path: Path, mode: int) -> None:
    """Take away the permissions ``mode`` does not give (someone else's file: left as it is)."""
    try:
        if os.stat(path).st_mode & 0o777 & ~mode:
            os.chmod(path, mode)
    except (FileNotFoundError, PermissionError):
        pass


def _same_directory(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class EmbeddedStore(Store):
    """The store on one SQLite database file.  See the module docstring."""

    def __init__(
        self,
        path: Path | str,
        *,
        offload: Offload | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.location = f"embedded store {self.path}"
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._probe: sqlite3.Connection | None = None
        self._offload = offload or threaded(1)
        self._changed: trio.Event | None = None  # set by writes, awaited by watches
        #: seconds between a watch's looks for other processes' changes: the daemon's idle cost
        #: against how late it sees them (a person waiting on ctl may want it shorter)
        self.poll_interval = POLL_INTERVAL

    # -- plumbing ---------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                private_directory(self.path.parent)
                # SQLite gives new -wal and -shm files the database file's mode
                os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
                private_files(self.path)
                db = sqlite3.connect(
                    self.path, timeout=10.0, isolation_level=None, check_same_thread=False
                )
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
                private_files(self.path)  # -wal and -shm made looser by an older version
            except (OSError, sqlite3.Error) as exc:
                raise StoreUnavailable(f"{self.location} cannot be opened: {exc}") from exc
            self._db = db
        return self._db

    async def _call(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        def run() -> T:
            db = self._connect()
            try:
                due = self._expiry_due(db)
                db.execute("BEGIN IMMEDIATE" if write or due else "BEGIN")
                try:
                    if due:
                        self._expire(db)
                    result = fn(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"{self.location}: {exc}") from exc

        result: T = await self._offload(run)
        if write and self._changed is not None:
            self._changed.set()
            self._changed = None
        return result

    def _expiry_due(self, db: sqlite3.Connection) -> bool:
        row = db.execute("SELECT 1 FROM leases WHERE expires < ? LIMIT 1", (self._clock(),)).fetchone()
        return row is not None

    def _expire(self, db: sqlite3.Connection) -> None:
        expired = [
            r[0] for r in db.execute("SELECT id FROM leases WHERE expires < ?", (self._clock(),))
        ]
        if expired:
            self._drop_leases(db, expired)

    @staticmethod
    def _drop_leases(db: sqlite3.Connection, leases: Sequence[int]) -> None:
        writer = _Writer(db)
        for lease in leases:
            keys = [r[0] for r in db.execute("SELECT key FROM kv WHERE lease = ? ORDER BY key", (lease,))]
            writer.delete_keys(keys)
            db.execute("DELETE FROM leases WHERE id = ?", (lease,))
        writer.finish()

    # -- reads --------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        return await self._call(lambda db: _select_key(db, key))

    async def range(self, prefix: str) -> RangeResult:
        def read(db: sqlite3.Connection) -> RangeResult:
            return RangeResult(tuple(_select_prefix(db, prefix)), _meta(db, "revision"))

        return await self._call(read)

    # -- writes -------------------------------------------------------------

    async def put(
        self, key: str, value: bytes, *, lease: int = 0, if_revision: int | None = None
    ) -> int:
        compares = [] if if_revision is None else [if_revision_compare(key, if_revision)]
        result = await self.txn(compares, [Put(key, value, lease)])
        if not result.succeeded:
            raise ConditionFailed(f"{key} is not at revision {if_revision}")
        return result.revision

    async def delete(self, key: str, *, if_revision: int | None = None) -> bool:
        compares = [] if if_revision is None else [if_revision_compare(key, if_revision)]
        result = await self.txn(compares, [Delete(key)])
        if not result.succeeded:
            raise ConditionFailed(f"{key} is not at revision {if_revision}")
        return bool(result.results[0])

    async def txn(
        self,
        compares: Sequence[Compare],
        on_success: Sequence[Operation],
        on_failure: Sequence[Operation] = (),
    ) -> TxnResult:
        def apply(db: sqlite3.Connection) -> TxnResult:
            ok = all(compare_holds(c, _select_key(db, c.key)) for c in compares)
            writer = _Writer(db)
            results: list[KeyValue | int | None] = []
            for op in on_success if ok else on_failure:
                if isinstance(op, Put):
                    writer.put(op.key, op.value, op.lease)
                    results.append(None)
                elif isinstance(op, Delete):
                    results.append(writer.delete(op.key, op.prefix))
                elif isinstance(op, Get):
                    results.append(_select_key(db, op.key))
            return TxnResult(ok, writer.finish(), tuple(results))

        return await self._call(apply, write=True)

    # -- leases -------------------------------------------------------------

    async def grant(self, ttl: int) -> int:
        lease = secrets.randbits(62) + 1

        def insert(db: sqlite3.Connection) -> int:
            db.execute("INSERT INTO leases VALUES (?, ?, ?)", (lease, ttl, self._clock() + ttl))
            return lease

        return await self._call(insert, write=True)

    async def keepalive(self, lease: int) -> int:
        def renew(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT ttl FROM leases WHERE id = ?", (lease,)).fetchone()
            if row is None:
                raise LeaseExpired(f"lease {lease:x} has expired")
            db.execute("UPDATE leases SET expires = ? WHERE id = ?", (self._clock() + row[0], lease))
            return int(row[0])

        return await self._call(renew, write=True)

    async def revoke(self, lease: int) -> None:
        await self._call(lambda db: self._drop_leases(db, [lease]), write=True)

    # -- history ------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        def forget(db: sqlite3.Connection) -> None:
            current = _meta(db, "revision")
            if revision > current:
                raise StoreError(f"{self.location}: cannot compact to {revision}, a future revision ({current})")
            db.execute("DELETE FROM log WHERE revision < ?", (revision,))
            db.execute(
                "UPDATE meta SET value = max(value, ?) WHERE name = 'compact_revision'", (revision,)
            )

        await self._call(forget, write=True)

    def _changes(self, db: sqlite3.Connection, *, prefix: str, start: int) -> list[Event]:
        compacted = _meta(db, "compact_revision")
        if start < compacted:
            raise Compacted(start, compacted)
        end = prefix_end(prefix)
        rows = db.execute(
            "SELECT revision, type, key, value, create_revision, version, lease FROM log"
            " WHERE revision >= ? AND key >= ? AND (? IS NULL OR key < ?)"
            " ORDER BY revision, sub",
            (start, prefix, end, end),
        ).fetchall()
        return [
            Event(kind, KeyValue(key, bytes(value), create, rev, version, lease))
            for rev, kind, key, value, create, version, lease in rows
        ]

    def _data_version(self) -> int:
        """SQLite's count of commits by any connection: a cheap "did anything change"."""
        if self._db is None:
            return -1  # not opened yet: the first log read opens (and creates) it
        if self._probe is None:
            self._probe = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        return int(self._probe.execute("PRAGMA data_version").fetchone()[0])

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        import trio

        start = from_revision
        seen_version = -1
        last_read = -math.inf
        while True:
            if self._changed is None:
                self._changed = trio.Event()
            changed = self._changed
            # read the log when a commit happened (or once a second, which also
            # expires leases); otherwise the poll costs one pragma, no thread
            try:
                version = self._data_version()
            except sqlite3.Error:
                version = -1
            if version != seen_version or trio.current_time() - last_read >= FULL_READ_INTERVAL:
                seen_version, last_read = version, trio.current_time()
                events = await self._call(partial(self._changes, prefix=prefix, start=start))
                for event in events:
                    yield event
                if events:
                    start = events[-1].revision + 1
                    continue
            with trio.move_on_after(self.poll_interval):
                await changed.wait()

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        if self._db is not None:
            db, self._db = self._db, None
            await self._offload(db.close)
