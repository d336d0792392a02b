"""The writer's lock on a run directory (blocking IO).

A process that writes a run (``create``, ``resume``, ``--overwrite``) holds an exclusive
:func:`fcntl.flock` on ``<out>/.gridloom.lock`` from before it touches anything in the
directory until the run is over (:meth:`RunDirLock.release`, called when the store is closed),
and writes its pid into the file. A second writer, in another process or the same one, fails at
once with :class:`~gridloom.errors.OutputExistsError` naming the directory and the pid of the
process writing it. Readers (``inspect``, ``export``) take no lock.

The operating system releases the lock when the process ends however it ends (a kill, a
crash), so a killed run never leaves a stale lock: the lock file left behind is taken over by
the next writer. The holder removes the file when it releases the lock; a writer that locked
a file another one had just removed sees so (the path no longer names the file it locked)
and tries again, so two writers can never hold locks on two different files.

Limits: a filesystem without ``flock`` (some FUSE and network filesystems refuse it with
``ENOLCK`` or ``EOPNOTSUPP``) and platforms without :mod:`fcntl` (Windows) give no lock: the
run goes on unlocked, with a warning saying that no other process must write the directory
meanwhile. Local NFS mounts emulate ``flock`` with byte-range locks, which do exclude other
clients. Remote outputs (``s3://`` and the other object stores) have no locks at all: nothing
stops two drivers writing one remote run, so run one at a time (the shards of a sharded run
write one run by design: only its driver locks a local output).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import weakref
from pathlib import Path
from types import ModuleType

from gridloom.errors import OutputExistsError, StorageError

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LOCK_NAME", "RunDirLock", "lock_holder"]

logger = logging.getLogger("gridloom.storage")

#: Name of the lock file in a run directory.
LOCK_NAME = ".gridloom.lock"
#: How often a writer tries again when the file it locked was removed meanwhile.
_ATTEMPTS = 20
#: Errors of a filesystem that does not support ``flock``.
_UNSUPPORTED = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})
#: Directories this process holds locked (a second writer in this process is refused too:
#: ``flock`` would refuse it, but the message then names this process).
_held: set[Path] = set()
_held_lock = threading.Lock()


#: Largest lock file read: it holds a pid and a newline (a few bytes); one grown past this
#: was written by something else, and names no writer.
LOCK_LIMIT = 64


def lock_holder(out: Path) -> int | None:
    """The pid written in ``out``'s lock file, if one can be read (it is the writer's while
    the file is locked; a file left by a killed writer still names it). At most
    :data:`LOCK_LIMIT` bytes are read: a larger file names no pid (the message that quotes
    it then says "another gridloom process")."""
    try:
        with open(out / LOCK_NAME, "rb") as f:
            raw = f.read(LOCK_LIMIT + 1)
    except OSError:
        return None
    text = raw.decode("ascii", errors="replace").strip()
    if len(raw) > LOCK_LIMIT:
        return None
    return int(text) if text.isdecimal() and len(text) < 12 else None


def _busy(out: Path) -> OutputExistsError:
    pid = lock_holder(out)
    who = "another gridloom process" if pid is None else f"another gridloom process (pid {pid})"
    if pid == os.getpid():
        who = "another run of this process"
    return OutputExistsError(
        f"output directory {out} is being written by {who}: two writers would mix their"
        " row groups; wait for it to end (or stop it, then continue with `gridloom resume"
        f" {out}`), or choose another output directory"
    )


class RunDirLock:
    """An exclusive lock on a run directory, held until :meth:`release` (or until the
    process ends). Create it with :meth:`acquire`."""

    def __init__(self, out: Path, fd: int | None, *, held: bool = True) -> None:
        """Private: use :meth:`acquire`."""
        self._out = out
        self._fd = fd
        # A store dropped without being closed (a program's bug, or a test) still lets go.
        self._finalizer = weakref.finalize(self, _close, fd, out, held)

    @classmethod
    def acquire(cls, out: Path, *, create: bool = True) -> RunDirLock:
        """Lock ``out`` for writing; it is created if missing, unless ``create`` is false:
        a missing ``out`` is then not locked (a resume of nothing, which fails anyway).

        Raises:
            OutputExistsError: another process (or another run of this one) writes ``out``.
            StorageError: ``out`` cannot be created, or its lock file cannot be opened.
        """
        if not create and not out.is_dir():
            return cls(out.resolve(), None, held=False)
        key = out.resolve()
        with _held_lock:
            if key in _held:
                raise _busy(out)
            _held.add(key)
        try:
            return cls(key, cls._lock(out))
        except BaseException:
            with _held_lock:
                _held.discard(key)
            raise

    @staticmethod
    def _lock(out: Path) -> int | None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create output directory {out}: {exc}") from exc
        if fcntl is None:  # pragma: no cover - Windows
            logger.warning(_UNLOCKED, out, "this platform has no flock")
            return None
        path = out / LOCK_NAME
        for _ in range(_ATTEMPTS):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as exc:
                raise StorageError(f"cannot open the lock file {path}: {exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise _busy(out) from None
                if exc.errno in _UNSUPPORTED:
                    logger.warning(_UNLOCKED, out, f"its filesystem refuses flock: {exc}")
                    return None
                raise StorageError(f"cannot lock {path}: {exc}") from exc
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if not same:  # its holder removed it between our open and our lock
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            return fd
        raise _busy(out)  # pragma: no cover - 20 writers racing for one directory

    @property
    def locked(self) -> bool:
        """Whether the directory is locked (false where the filesystem has no locks)."""
        return self._fd is not None and self._finalizer.alive

    def release(self) -> None:
        """Remove the lock file and let go of the lock (idempotent)."""
        self._finalizer()


_UNLOCKED = (
    "cannot lock the output directory %s (%s): the run goes on unlocked; make sure no other"
    " gridloom process writes it meanwhile"
)


def _close(fd: int | None, out: Path, held: bool) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            # Removed while still locked: a writer that opened it meanwhile sees it removed.
            if os.path.samestat(os.fstat(fd), os.stat(out / LOCK_NAME)):
                (out / LOCK_NAME).unlink()
        with contextlib.suppress(OSError):
            os.close(fd)
    if held:
        with _held_lock:
            _held.discard(out)
