"""The response cache: model answers stored on disk by request key, shared across runs.

Why SQLite, through the standard library's ``sqlite3``: it is on every Python, one file holds
everything, and its journal makes each write all-or-nothing, so a process killed at any
instant (``kill -9``) leaves either the whole entry or none of it. The database is put in WAL
mode, so readers never wait for a writer and several runs (processes) on one machine share
one file; ``busy_timeout`` makes a writer wait briefly for another instead of failing, and
every transaction is one short statement or two. ``synchronous=NORMAL`` (the usual WAL
setting) may lose the last few writes on a power failure, never consistency; for a cache
that only costs a request again.

The file is ``$GRIDLOOM_CACHE_DIR/responses.sqlite3``, by default
``~/.cache/gridloom/responses.sqlite3`` (``$XDG_CACHE_HOME`` honoured). Each entry is a key (32
bytes, see :mod:`._cache_key`), a record (JSON, at most :data:`MAX_ENTRY_BYTES`; larger ones
are not stored, and a stored one is read back only if within that bound), its size and when it
was written and last read. A running total of the sizes, kept by triggers in the same
transactions, bounds the cache: a write that takes it past ``max_bytes`` evicts the entries
read least recently down to 90 % of it. The last-read time is refreshed at most once a minute
per entry, so lookups seldom write.

Every call that touches the file is blocking: :class:`ResponseCache`'s async methods run them
in worker threads (one at a time per cache, through a limiter), never on the event loop. A
failing lookup is a miss and a failing store is skipped; each logs one warning naming the file
and how to run without it, and after a failed store none is tried for :data:`STORE_BACKOFF`
seconds. Lookups never wait for another process's write lock (the last-read refresh is
skipped instead). A file that cannot be opened (not a database, locked for longer
than the busy timeout) raises :class:`CacheUnavailable` with that advice.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from .._attrs import frozen

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_ENTRY_BYTES",
    "CacheStats",
    "CacheUnavailable",
    "ResponseCache",
    "damage_of",
    "default_cache_path",
    "remove_cache_files",
]

log = logging.getLogger("gridloom.cache")

T = TypeVar("T")

#: The cache's default size bound (records' bytes).
DEFAULT_MAX_BYTES = 2 * 1024**3
#: The largest record stored or read back.
MAX_ENTRY_BYTES = 16 * 1024 * 1024
#: Milliseconds a statement waits for another process's write lock before failing.
BUSY_TIMEOUT_MS = 5000
#: Seconds stores are skipped after one failed (a file locked by another process for long, or
#: a full disk, would otherwise make every answer wait for the busy timeout first).
STORE_BACKOFF = 60.0
#: Seconds between refreshes of an entry's last-read time.
_TOUCH_EVERY = 60.0
#: Eviction shrinks the cache to this share of ``max_bytes``.
_EVICT_TO = 0.9
#: Keys per lookup query (SQLite allows at least 999 parameters).
_LOOKUP_CHUNK = 500
#: Entries deleted per eviction statement.
_EVICT_BATCH = 256
#: How to carry on without the cache, quoted in every warning and error.
WITHOUT_IT = "run with --no-cache (or cache: false on the models) to continue without it"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    accessed REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS responses_accessed ON responses (accessed);
CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals (id, bytes) VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS responses_added AFTER INSERT ON responses BEGIN
    UPDATE totals SET bytes = bytes + new.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS responses_removed AFTER DELETE ON responses BEGIN
    UPDATE totals SET bytes = bytes - old.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS responses_replaced AFTER UPDATE OF size ON responses BEGIN
    UPDATE totals SET bytes = bytes - old.size + new.size WHERE id = 0;
END;
"""


def default_cache_path() -> Path:
    """``$GRIDLOOM_CACHE_DIR/responses.sqlite3``, else under ``$XDG_CACHE_HOME/gridloom``
    (default ``~/.cache/gridloom``)."""
    folder = os.environ.get("GRIDLOOM_CACHE_DIR")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "gridloom")
    return Path(folder) / "responses.sqlite3"


#: The files SQLite keeps beside a database: its write-ahead log, the log's shared-memory
#: index, and a rollback journal.
_SIDE_FILES = ("-wal", "-shm", "-journal")


def damage_of(path: Path) -> str | None:
    """Why the cache file ``path`` is damaged (not a SQLite database, or one SQLite finds
    corrupt), or ``None``: sound, missing, not a regular file, or only locked or unreadable
    (which removing it would not mend)."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        db = sqlite3.connect(path, timeout=0)
    except (OSError, sqlite3.Error):
        return None
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.OperationalError:  # locked by a run, or unreadable: not damage
        return None
    except sqlite3.DatabaseError as exc:  # "file is not a database", "... malformed"
        return str(exc)
    finally:
        db.close()
    verdict = "; ".join(str(row[0]) for row in rows)
    return None if verdict == "ok" else verdict


def remove_cache_files(path: Path) -> list[Path]:
    """Remove the cache file ``path`` and SQLite's files beside it (``-wal``, ``-shm``,
    ``-journal``): those names only, and only regular files (a link is left alone). The
    files removed.

    Raises:
        OSError: a file cannot be removed.
    """
    removed = []
    for candidate in [path, *(path.with_name(path.name + end) for end in _SIDE_FILES)]:
        if candidate.is_file() and not candidate.is_symlink():
            candidate.unlink()
            removed.append(candidate)
    return removed


class CacheUnavailable(Exception):
    """The cache file cannot be used (its message names the file and how to go on without it)."""


@frozen(kw_only=True)
class CacheStats:
    """What a cache holds.

    Attributes:
        path: the database file.
        entries: answers stored.
        bytes: their records' total size.
        file_bytes: the database file's size on disk (with its write-ahead log).
        max_bytes: the size bound.
        oldest_access, newest_access: Unix times of the least and most recent reads (or
            writes); ``None`` when empty.
    """

    path: str
    entries: int
    bytes: int
    file_bytes: int
    max_bytes: int
    oldest_access: float | None
    newest_access: float | None

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class _Lookup:
    """One lookup waiting for its batch: the key, whether to refresh its last-read time, and
    (once ``done``) the record, or the turn to read the next batch (``lead``)."""

    __slots__ = ("done", "key", "lead", "touch", "value")

    def __init__(self, key: bytes, touch: bool):
        self.key = key
        self.touch = touch
        self.done = trio.Event()
        self.lead = False
        self.value: bytes | None = None


class ResponseCache:
    """A response cache in one SQLite file (see the module's notes).

    Args:
        path: the database file (created with its folder if missing).
        max_bytes: the size bound (records' bytes); writes beyond it evict.
        clock: Unix time, for last-read times and the store back-off (tests pass their own).
        busy_timeout: seconds a write waits for another process's lock before failing.

    Raises:
        CacheUnavailable: the file cannot be opened or is not a cache database.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = BUSY_TIMEOUT_MS / 1000,
    ):
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self.path = Path(path) if path is not None else default_cache_path()
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._threads = trio.CapacityLimiter(1)
        self._warned: set[str] = set()
        self._waiting: list[_Lookup] = []
        self._fetching = False
        self._busy_ms = max(0, int(busy_timeout * 1000))
        #: Stores tried and failed; none is tried before ``_stores_after`` (clock time).
        self.store_failures = 0
        self._stores_after = float("-inf")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise CacheUnavailable(self._problem("cannot be opened", exc)) from None
        try:
            self._db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()
            self._db.execute("PRAGMA synchronous = NORMAL")
            if mode is None or str(mode[0]).lower() != "wal":
                raise sqlite3.OperationalError(f"journal mode {mode!r} instead of wal")
            with self._db:
                self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._db.close()
            raise CacheUnavailable(self._problem("is not a usable cache", exc)) from None

    def _problem(self, what: str, exc: BaseException) -> str:
        return f"response cache {str(self.path)!r} {what} ({exc}); {WITHOUT_IT}"

    def _warn_once(self, operation: str, exc: BaseException) -> None:
        if operation not in self._warned:
            self._warned.add(operation)
            log.warning("%s", self._problem(f"failed a {operation}, skipped", exc))

    def close(self) -> None:
        """Close the database (later calls fail)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ blocking calls

    def get_sync(self, key: bytes, *, touch: bool = True) -> bytes | None:
        """The record stored under ``key``, or ``None`` (also when the lookup fails, which is
        logged once). ``touch``: refresh its last-read time (when a minute old)."""
        return self.get_many_sync([(key, touch)]).get(key)

    def get_many_sync(self, wanted: list[tuple[bytes, bool]]) -> dict[bytes, bytes]:
        """The records stored under the keys of ``wanted`` (``(key, touch)`` pairs), by key;
        keys not found (or all of them, when the lookup fails: logged once) are absent."""
        found: dict[bytes, bytes] = {}
        try:
            with self._lock:
                stale: list[tuple[float, bytes]] = []
                now = self._clock()
                touching = {key for key, touch in wanted if touch}
                keys = list(dict.fromkeys(key for key, _ in wanted))
                for start in range(0, len(keys), _LOOKUP_CHUNK):
                    chunk = keys[start : start + _LOOKUP_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = self._db.execute(
                        f"SELECT key, value, accessed FROM responses WHERE key IN ({marks})"
                        " AND length(value) <= ?",
                        (*chunk, MAX_ENTRY_BYTES),
                    ).fetchall()
                    for key, value, accessed in rows:
                        key = bytes(key)
                        found[key] = bytes(value)
                        if key in touching and now - accessed >= _TOUCH_EVERY:
                            stale.append((now, key))
                if stale:
                    self._touch(stale)
        except sqlite3.Error as exc:
            self._warn_once("lookup", exc)
            return {}
        return found

    def _touch(self, stale: list[tuple[float, bytes]]) -> None:
        """Refresh last-read times, best effort: without waiting for another process's
        write lock (the records found are answered either way; holding the lock)."""
        self._db.execute("PRAGMA busy_timeout = 0")
        try:
            with self._db:
                self._db.executemany("UPDATE responses SET accessed = ? WHERE key = ?", stale)
        except sqlite3.Error as exc:
            self._warn_once("last-read refresh", exc)
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")

    def put_sync(self, key: bytes, value: bytes) -> bool:
        """Store ``value`` under ``key`` (replacing any), evicting if the cache grows past
        ``max_bytes``; ``False`` when not stored (too large, the write failed: logged once,
        or within :data:`STORE_BACKOFF` seconds of a failed one: not tried)."""
        size = len(value)
        if size > MAX_ENTRY_BYTES or size > self.max_bytes:
            return False
        now = self._clock()
        if now < self._stores_after:
            return False
        try:
            with self._lock, self._db:
                self._db.execute(
                    "INSERT INTO responses (key, value, size, created, accessed)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                    " value = excluded.value, size = excluded.size, accessed = excluded.accessed",
                    (key, value, size, now, now),
                )
                total = self._total()
                if total > self.max_bytes:
                    self._evict(int(self.max_bytes * _EVICT_TO))
        except sqlite3.Error as exc:
            self.store_failures += 1
            self._stores_after = now + STORE_BACKOFF
            self._warn_once("store", exc)
            return False
        return True

    def _total(self) -> int:
        row = self._db.execute("SELECT bytes FROM totals WHERE id = 0").fetchone()
        return int(row[0]) if row else 0

    def _evict(self, target: int) -> int:
        """Delete the least recently read entries until the total is at most ``target``
        (within the caller's transaction); the number deleted."""
        removed = 0
        while (excess := self._total() - target) > 0:
            rows = self._db.execute(
                "SELECT key, size FROM responses ORDER BY accessed LIMIT ?", (_EVICT_BATCH,)
            ).fetchall()
            if not rows:
                break
            doomed: list[tuple[bytes]] = []
            for key, size in rows:
                if excess <= 0:
                    break
                doomed.append((key,))
                excess -= size
            self._db.executemany("DELETE FROM responses WHERE key = ?", doomed)
            removed += len(doomed)
        return removed

    def stats_sync(self) -> CacheStats:
        """What the cache holds now."""
        with self._lock:
            entries, oldest, newest = self._db.execute(
                "SELECT count(*), min(accessed), max(accessed) FROM responses"
            ).fetchone()
            total = self._total()
        file_bytes = sum(
            p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists()
        )
        return CacheStats(
            path=str(self.path),
            entries=int(entries),
            bytes=total,
            file_bytes=file_bytes,
            max_bytes=self.max_bytes,
            oldest_access=oldest,
            newest_access=newest,
        )

    def prune_sync(self, *, max_bytes: int | None = None, older_than: float | None = None) -> int:
        """Delete entries not read for ``older_than`` seconds, then the least recently read
        until the records take at most ``max_bytes`` (default: the cache's bound); the number
        deleted."""
        target = self.max_bytes if max_bytes is None else max_bytes
        with self._lock, self._db:
            removed = 0
            if older_than is not None:
                cursor = self._db.execute(
                    "DELETE FROM responses WHERE accessed < ?", (self._clock() - older_than,)
                )
                removed += max(cursor.rowcount, 0)
            removed += self._evict(target)
        return removed

    def clear_sync(self) -> int:
        """Delete every entry and give the space back to the file system; the number
        deleted."""
        with self._lock:
            with self._db:
                cursor = self._db.execute("DELETE FROM responses")
                self._db.execute("UPDATE totals SET bytes = 0 WHERE id = 0")
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return max(cursor.rowcount, 0)

    def integrity_sync(self) -> str:
        """SQLite's ``integrity_check`` verdict (``ok`` when the file is sound)."""
        with self._lock:
            rows = self._db.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(row[0]) for row in rows)

    # ------------------------------------------------------------------ async wrappers

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._threads)

    async def get(self, key: bytes, *, touch: bool = True) -> bytes | None:
        """:meth:`get_sync` in a worker thread, sharing one with concurrent lookups: while a
        batch of lookups is being read, new ones wait and go together in the next (one thread
        hop and one query for all), so a lookup's cost shrinks as the run gets busier."""
        slot = _Lookup(key, touch)
        self._waiting.append(slot)
        if self._fetching:
            try:
                await slot.done.wait()
            except BaseException:
                self._abandon(slot)
                raise
            if not slot.lead:
                return slot.value
        self._fetching = True
        batch, self._waiting = self._waiting, []
        try:
            found = await self._run(self.get_many_sync, [(s.key, s.touch) for s in batch])
        except BaseException:  # this lookup was cancelled: the rest of its batch goes first
            self._waiting[:0] = [waiting for waiting in batch if waiting is not slot]
            slot.lead = False
            self._hand_off()
            raise
        for waiting in batch:
            waiting.value = found.get(waiting.key)
            waiting.lead = False
            waiting.done.set()
        self._hand_off()
        return slot.value

    def _hand_off(self) -> None:
        """Let the first waiting lookup read the next batch, or mark none in progress."""
        if self._waiting:
            first = self._waiting[0]
            first.lead = True
            first.done.set()
        else:
            self._fetching = False

    def _abandon(self, slot: _Lookup) -> None:
        """A waiting lookup was cancelled: drop it, and pass its turn on if it had one."""
        if slot in self._waiting:
            self._waiting.remove(slot)
        if slot.lead:
            slot.lead = False
            self._hand_off()

    async def put(self, key: bytes, value: bytes) -> bool:
        """:meth:`put_sync` in a worker thread."""
        return await self._run(self.put_sync, key, value)
