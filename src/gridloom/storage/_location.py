"""Where a run lives: a folder on any filesystem pyarrow knows (blocking IO; call the
operations from worker threads).

:func:`location_of` turns a path or a URI into a :class:`Location`: a plain path or a
``file://`` URI is the local filesystem; ``s3://``, ``gs://``, ``hdfs://``, ``abfs://``... go
through :meth:`pyarrow.fs.FileSystem.from_uri` (credentials and endpoints from the environment,
e.g. ``AWS_ACCESS_KEY_ID`` and ``AWS_ENDPOINT_URL_S3``, or the options pyarrow takes in the
URI's query); other schemes go through fsspec when it is installed (the ``fsspec`` extra).

A :class:`Location` shows only its ``display`` string: the URI without its user information
and query, so that keys given in a URI never appear in a repr, a message or a file.

Files are replaced atomically, in the way the filesystem allows: on the local filesystem a
temp file is fsynced and renamed over the target (:mod:`gridloom.storage._atomic`); on a
filesystem with an atomic rename (HDFS) a temp file is moved over it; on an object store
(S3, GCS and the rest) the content is assembled in memory and sent in one upload, so the
object appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NoReturn

import attrs

from gridloom.errors import StorageError

from .._attrs import frozen
from ._atomic import TEMP_PREFIX, atomic_write, fsync_dir
from ._digest import file_digest, stream_digest
from ._parts import declared_table, read_parquet

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

# pyarrow.parquet and pyarrow.fs are imported in the functions that use them: a preview, which
# reads and writes no files, does not pay for them (~7 ms) before its first model request.
__all__ = ["Location", "is_remote_uri", "local_path", "location_of"]

#: Filesystems (pyarrow ``type_name``) whose rename replaces a file atomically.
_ATOMIC_RENAME = frozenset({"hdfs"})
#: Query options that carry credentials (taken out of the URI before pyarrow sees it).
_SECRET_OPTIONS = ("access_key", "secret_key", "session_token")
#: Length at which a message taken from the filesystem is cut.
_REASON_CHARS = 300

_DENIED = re.compile(
    r"Invalid_?Access_?Key_?Id|Signature_?Does_?Not_?Match|Access_?Denied|Expired_?Token|"
    r"Invalid_?Token|Forbidden|\b403\b|credential|Unauthori[sz]ed|\b401\b|access token",
    re.IGNORECASE,
)
_UNREACHABLE = re.compile(
    r"NETWORK_CONNECTION|Could not connect|Couldn't connect|Connection refused|"
    r"resolve host|Couldn't resolve|timed out|Timeout was reached|curlCode",
    re.IGNORECASE,
)


#: Seconds pyarrow's GCS client may retry a request (its own default is unbounded here).
GCS_RETRY_SECONDS = 30


def _scheme(uri: str) -> str:
    """The URI scheme of ``uri``, or ``""`` for a plain path (a Windows drive letter included)."""
    scheme = urllib.parse.urlsplit(uri).scheme
    return scheme.lower() if len(scheme) > 1 else ""


def is_remote_uri(uri: str | os.PathLike[str]) -> bool:
    """Whether ``uri`` names a place other than a local path: it has a scheme, not ``file``."""
    if not isinstance(uri, str):
        return False
    return _scheme(uri) not in ("", "file")


def local_path(uri: str | os.PathLike[str]) -> Path:
    """The local folder a plain path or a ``file://`` URI names (so ``file:///data/run`` is
    ``/data/run``, never a folder called ``file:``).

    Raises:
        StorageError: ``uri`` is a remote URI, a ``file://`` URI naming a host, or a path
            that is not UTF-8 text (see :func:`location_of`).
    """
    local = None if is_remote_uri(uri) else location_of(uri).local
    if local is None:
        raise StorageError(f"{_display(urllib.parse.urlsplit(str(uri)))} is not a local folder")
    return local


@frozen(kw_only=True, repr=False)
class Location:
    """A folder on a pyarrow filesystem.

    Attributes:
        filesystem: the filesystem.
        root: the folder's path in ``filesystem`` (no trailing slash).
        display: what names the folder in messages: the path, or the URI without user
            information and query (so never a secret).
        local: the folder as a local path when ``filesystem`` is the local one, else ``None``.
    """

    filesystem: pafs.FileSystem = attrs.field(eq=False)
    root: str
    display: str
    local: Path | None = None
    _secrets: tuple[str, ...] = attrs.field(default=(), eq=False, alias="secrets")

    def __repr__(self) -> str:
        return f"Location({self.display!r})"

    # ------------------------------------------------------------------ naming

    def path(self, rel: str) -> str:
        """Path of ``rel`` (``/``-separated, relative to the folder) in :attr:`filesystem`."""
        if self.local is not None:
            return str(self.local / rel)
        return f"{self.root}/{rel}" if rel else self.root

    def where(self, rel: str) -> str:
        """How messages name ``rel``: the local path, or the display URI joined with ``rel``."""
        if self.local is not None:
            return str(self.local / rel)
        return f"{self.display.rstrip('/')}/{rel}" if rel else self.display

    def source(self, rel: str) -> tuple[str, pafs.FileSystem | None]:
        """``(path, filesystem)`` to hand pyarrow's readers (``filesystem`` is ``None`` for a
        local folder, so errors read as they do for a plain path)."""
        return (self.path(rel), None if self.local is not None else self.filesystem)

    def _fail(self, action: str, rel: str, exc: BaseException) -> NoReturn:
        """Raise one clear :class:`StorageError` line for a filesystem failure."""
        reason = _reason(exc, self._secrets)
        raise StorageError(f"cannot {action} {self.where(rel)}: {reason}") from None

    # ----------------------------------------------------------------- writing

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Replace ``rel`` with ``data`` atomically (see the module docstring)."""

        def _write(f: BinaryIO) -> None:
            f.write(data)

        self.write_with(rel, _write)

    def write_with(self, rel: str, write: Callable[[BinaryIO], None]) -> None:
        """Replace ``rel`` atomically with what ``write`` writes to the binary file it is given
        (it must not close it); on failure nothing is left of the new file.

        Raises:
            StorageError: the filesystem failed (``write``'s own errors propagate as raised).
        """
        import pyarrow as pa

        try:
            if self.local is not None:
                target = self.local / rel
                if not target.parent.is_dir():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fsync_dir(target.parent.parent)
                atomic_write(target, write)
            elif self.filesystem.type_name in _ATOMIC_RENAME:
                self._write_renamed(rel, write)
            else:
                buffer = io.BytesIO()
                write(buffer)
                self._put(rel, buffer.getvalue())
        except (OSError, ValueError, pa.ArrowException) as exc:
            self._fail("write", rel, exc)

    def _write_renamed(self, rel: str, write: Callable[[BinaryIO], None]) -> None:
        import pyarrow as pa

        final = self.path(rel)
        parent, _, name = final.rpartition("/")
        tmp = f"{parent}/{TEMP_PREFIX}{name}-{secrets.token_hex(4)}"
        self.filesystem.create_dir(parent, recursive=True)
        try:
            with self.filesystem.open_output_stream(tmp) as out:
                write(out)
            self.filesystem.move(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError, pa.ArrowException):
                self.filesystem.delete_file(tmp)
            raise

    def _put(self, rel: str, payload: bytes) -> None:
        """One upload of the whole content (an object store shows it whole or not at all)."""
        with self.filesystem.open_output_stream(self.path(rel)) as out:
            out.write(payload)

    def delete(self, rel: str) -> None:
        """Remove ``rel`` (nothing happens when it is missing)."""
        import pyarrow as pa

        try:
            if self.local is not None:
                (self.local / rel).unlink(missing_ok=True)
            else:
                self.filesystem.delete_file(self.path(rel))
        except FileNotFoundError:
            return
        except (OSError, ValueError, pa.ArrowException) as exc:
            self._fail("delete", rel, exc)

    def delete_dir_if_empty(self, rel: str) -> None:
        """Remove the directory ``rel`` when nothing is left in it (object stores have none)."""
        import pyarrow as pa

        try:
            if self.local is not None:
                folder = self.local / rel
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            elif self.filesystem.type_name in _ATOMIC_RENAME and not self.list_names(rel):
                self.filesystem.delete_dir(self.path(rel))
        except FileNotFoundError:
            return
        except (OSError, ValueError, pa.ArrowException) as exc:
            self._fail("delete", rel, exc)

    # ----------------------------------------------------------------- reading

    def exists(self, rel: str) -> bool:
        """Whether ``rel`` exists (a file or a directory)."""
        import pyarrow as pa
        import pyarrow.fs as pafs

        try:
            if self.local is not None:
                return (self.local / rel).exists()
            info = self.filesystem.get_file_info(self.path(rel))
        except (OSError, ValueError, pa.ArrowException) as exc:
            self._fail("read", rel, exc)
        return bool(info.type != pafs.FileType.NotFound)

    def read_bytes(self, rel: str, *, limit: int) -> bytes | None:
        """The content of ``rel``, or ``None`` when it is missing.

        Raises:
            StorageError: the file holds more than ``limit`` bytes, or cannot be read.
        """
        import pyarrow as pa

        try:  # refused by its size first (a stat, the object's listed size): nothing read
            if self.local is not None:
                with open(self.local / rel, "rb") as f:
                    too_large = os.fstat(f.fileno()).st_size > limit
                    data = b"" if too_large else f.read(limit + 1)
            else:
                with self.filesystem.open_input_file(self.path(rel)) as remote:
                    too_large = remote.size() > limit
                    data = b"" if too_large else remote.read(limit + 1)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, pa.ArrowException) as exc:
            self._fail("read", rel, exc)
        if too_large or len(data) > limit:
            raise StorageError(f"cannot read {self.where(rel)}: larger than {limit:,} bytes")
        return bytes(data)

    def read_file(self, rel: str, *, limit: int) -> pa.Buffer:
        """The content of the file ``rel``, at most ``limit`` bytes of it (never more is
        allocated, and ``limit`` is allocated up front: the caller checked its :meth:`size`
        first and passes no more than that): a part of the run, which is
        decoded whole anyway (memory holds one part, as :meth:`read_parquet` does).

        The buffer is Arrow's own memory, not a Python ``bytes``: a table decoded from it
        may share its memory, and a table sharing a Python object's memory that lives until
        the interpreter exits (a run's drop examples) made the process abort there (SIGABRT,
        "terminate called without an active exception"), releasing the object without the
        interpreter.

        Raises:
            FileNotFoundError: ``rel`` is missing.
            OSError: a local file cannot be read (left to the caller, to whom a local part
                that cannot be read is a damaged one).
            StorageError: a remote filesystem failed otherwise (one line, no secrets).
        """
        import pyarrow as pa

        if self.local is not None:
            with pa.OSFile(str(self.local / rel), "rb") as local:
                return local.read_buffer(limit)
        try:
            with self.filesystem.open_input_stream(self.path(rel)) as f:
                return f.read_buffer(limit)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, pa.ArrowException) as exc:
            self._fail("read", rel, exc)

    def size(self, rel: str) -> int | None:
        """The size in bytes of the file ``rel`` (a stat, or the object store's listing
        information: nothing is downloaded); ``None`` when a filesystem does not tell it
        (an fsspec backend whose listing has no sizes); errors as for :meth:`read_file`."""
        import pyarrow as pa
        import pyarrow.fs as pafs

        if self.local is not None:
            return (self.local / rel).stat().st_size
        try:
            info = self.filesystem.get_file_info(self.path(rel))
        except (OSError, ValueError, pa.ArrowException) as exc:
            self._fail("read", rel, exc)
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"{self.where(rel)} is not a file")
        return None if info.size is None else int(info.size)

    def move(self, rel: str, target: str) -> None:
        """Move the file ``rel`` to ``target`` (an object store copies it, then deletes it).

        Raises:
            StorageError: the filesystem failed.
        """
        import pyarrow as pa

        try:
            if self.local is not None:
                (self.local / target).parent.mkdir(parents=True, exist_ok=True)
                (self.local / rel).replace(self.local / target)
            else:
                parent = self.path(target).rpartition("/")[0]
                self.filesystem.create_dir(parent, recursive=True)
                self.filesystem.move(self.path(rel), self.path(target))
        except (OSError, ValueError, pa.ArrowException) as exc:
            self._fail("move", rel, exc)

    def digest(self, rel: str) -> str:
        """The hex SHA-256 of the file ``rel``, read in chunks (memory stays bounded);
        errors as for :meth:`read_file`."""
        import pyarrow as pa

        if self.local is not None:
            return file_digest(self.local / rel)
        try:
            with self.filesystem.open_input_stream(self.path(rel)) as stream:
                return stream_digest(stream)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, pa.ArrowException) as exc:
            self._fail("read", rel, exc)

    def list_names(self, rel_dir: str) -> list[str]:
        """Names of the files directly in the directory ``rel_dir``, sorted (``[]`` when it
        is missing)."""
        if self.local is not None:
            folder = self.local / rel_dir
            try:
                if not folder.is_dir():
                    return []
                return sorted(e.name for e in folder.iterdir() if e.is_file())
            except OSError as exc:
                self._fail("list", rel_dir, exc)
        return sorted(self.list_sizes(rel_dir))

    def list_sizes(self, rel_dir: str) -> dict[str, int | None]:
        """The files directly in the directory ``rel_dir`` (``{}`` when it is missing): name
        to size in bytes, from one listing (an object store's listing carries the sizes;
        ``None`` where a filesystem's listing does not)."""
        import pyarrow as pa
        import pyarrow.fs as pafs

        try:
            if self.local is not None:
                folder = self.local / rel_dir
                if not folder.is_dir():
                    return {}
                return {e.name: e.stat().st_size for e in folder.iterdir() if e.is_file()}
            selector = pafs.FileSelector(self.path(rel_dir), allow_not_found=True)
            infos = self.filesystem.get_file_info(selector)
        except (OSError, ValueError, pa.ArrowException) as exc:
            self._fail("list", rel_dir, exc)
        return {
            i.base_name: None if i.size is None else int(i.size)
            for i in infos
            if i.type == pafs.FileType.File
        }

    def read_parquet(self, rel: str, schema: pa.Schema) -> pa.Table:
        """Read the parquet file ``rel`` and check it has exactly ``schema`` (as
        :func:`gridloom.storage._parts.read_parquet` does for a local file).

        Raises:
            StorageError: the file cannot be read or has another schema.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.local is not None:
            return read_parquet(self.local / rel, schema)
        try:
            table = pq.read_table(self.path(rel), filesystem=self.filesystem)
        except (OSError, ValueError, pa.ArrowException) as exc:
            self._fail("read", rel, exc)
        return declared_table(table, schema, self.where(rel))


def _reason(exc: BaseException, hidden: tuple[str, ...]) -> str:
    """One line saying why a filesystem operation failed (credentials and endpoint failures
    told apart; the secrets in ``hidden`` masked)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in hidden:
        text = text.replace(secret, "***")
    if _DENIED.search(text):
        return (
            "access denied: the storage refused the credentials, or found none (check"
            " AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS or"
            " the provider's equivalents, and the permissions)"
        )
    if _UNREACHABLE.search(text):
        return (
            "the storage endpoint cannot be reached (check AWS_ENDPOINT_URL_S3 /"
            " AWS_ENDPOINT_URL or the provider's equivalents, and the network)"
        )
    return text[:_REASON_CHARS]


def _local(path: Path) -> Location:
    import pyarrow.fs as pafs

    root = path.absolute().as_posix()
    try:
        root.encode("utf-8")
    except UnicodeEncodeError:  # a byte of a name that is not UTF-8 (os.fsdecode's surrogate)
        shown = root.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise StorageError(
            f"the run directory {shown} has a path that is not UTF-8 text; pyarrow, which reads"
            " a run's parquet files, takes UTF-8 paths only: choose a folder whose path is"
            " UTF-8 (rename it, or the folder above it)"
        ) from None
    return Location(
        filesystem=pafs.LocalFileSystem(),
        root=path.absolute().as_posix(),
        display=str(path),
        local=path,
    )


def _credentials(parts: urllib.parse.SplitResult) -> tuple[str, tuple[str, ...]]:
    """The URI pyarrow is given (S3 keys in the query moved to the user information, which
    pyarrow reads) and the secret strings it holds."""
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    found = {k: v for k, v in query if k in _SECRET_OPTIONS}
    hidden = [v for v in found.values() if v]
    if parts.password:
        hidden.append(urllib.parse.unquote(parts.password))
        hidden.append(parts.password)
    if parts.username:
        hidden.append(urllib.parse.unquote(parts.username))
    # pyarrow's messages may quote the URI it was given, with the secrets percent-encoded.
    hidden += [urllib.parse.quote(h, safe="") for h in hidden]
    hidden = sorted({h for h in hidden if h}, key=len, reverse=True)
    if not found:
        return parts.geturl(), tuple(hidden)
    if "session_token" in found or "access_key" not in found or "secret_key" not in found:
        raise StorageError(
            f"{_display(parts)}: give both access_key and secret_key (session tokens come from"
            " AWS_SESSION_TOKEN), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    userinfo = ":".join(urllib.parse.quote(found[k], safe="") for k in ("access_key", "secret_key"))
    host = parts.hostname or ""
    netloc = f"{userinfo}@{host}" + (f":{parts.port}" if parts.port else "")
    rest = urllib.parse.urlencode([(k, v) for k, v in query if k not in _SECRET_OPTIONS])
    uri = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, rest, ""))
    return uri, tuple(hidden)


def _display(parts: urllib.parse.SplitResult) -> str:
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}".rstrip("/")


def _fsspec(
    uri: str, scheme: str, display: str, hidden: tuple[str, ...]
) -> tuple[pafs.FileSystem, str]:
    import pyarrow.fs as pafs

    try:
        import fsspec  # type: ignore[import-untyped]
    except ImportError:
        raise StorageError(
            f"{display}: pyarrow has no filesystem for {scheme}:// and fsspec is not installed;"
            " install it with `pip install 'gridloom[fsspec]'` (plus fsspec's package for"
            f" {scheme}://)"
        ) from None
    try:
        spec_fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError, OSError) as exc:
        reason = _reason(exc, hidden)
        raise StorageError(f"{display}: fsspec cannot open {scheme}:// ({reason})") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(spec_fs)), str(path)


def location_of(uri: str | os.PathLike[str]) -> Location:
    """The :class:`Location` a path or URI names (see the module docstring).

    Raises:
        StorageError: the URI cannot be opened (an unknown scheme without fsspec, bad options);
            the message shows the URI without its user information and query. Or a local
            path is not UTF-8 text (a name with bytes ``os.fsdecode`` keeps as surrogates):
            pyarrow, which reads a run's files, takes UTF-8 paths only.
    """
    import pyarrow as pa
    import pyarrow.fs as pafs

    if not isinstance(uri, str):
        return _local(Path(uri))
    scheme = _scheme(uri)
    if not scheme:
        return _local(Path(uri))
    parts = urllib.parse.urlsplit(uri)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StorageError(
                f"cannot open file://{parts.hostname or ''}{parts.path}: a file URI names a local"
                " path with three slashes (file:///abs/path), or use the plain path; a host is"
                " not supported"
            )
        return _local(Path(urllib.parse.unquote(parts.path)))
    display = _display(parts)
    if not parts.netloc and not parts.path.strip("/"):
        raise StorageError(f"cannot open {scheme}://: the URI names no bucket, host or path")
    given, hidden = _credentials(parts)
    if scheme in ("gs", "gcs") and "retry_limit_seconds=" not in parts.query:
        # pyarrow's GCS client retries a missing credential for minutes by default.
        given += ("&" if parts.query else "?") + f"retry_limit_seconds={GCS_RETRY_SECONDS}"
    try:
        filesystem, path = pafs.FileSystem.from_uri(given)
    except pa.ArrowNotImplementedError:
        filesystem, path = _fsspec(uri, scheme, display, hidden)
    except (pa.ArrowException, OSError, ValueError) as exc:
        if "Unrecognized filesystem type" in str(exc):
            filesystem, path = _fsspec(uri, scheme, display, hidden)
        else:
            raise StorageError(f"cannot open {display}: {_reason(exc, hidden)}") from None
    return Location(filesystem=filesystem, root=path.rstrip("/"), display=display, secrets=hidden)
