"""Reading a reply's body within the model's ``max_response_bytes``, on any transport.

The body is counted as it arrives and reading stops as soon as it passes the cap: a declared
``Content-Length`` beyond it is refused before anything is read, and a ``gzip``/``deflate``
body is inflated here, in pieces that never pass the cap either (a small compressed reply
cannot expand into a large one in memory). The connection of a refused reply is closed, not
reused.

Both transports apply one rule to ``Content-Encoding`` (:func:`content_codings`): the codings
gridloom asks for (``gzip``, ``x-gzip``, ``deflate``; ``identity`` is no coding) are undone
here, stacked ones too (``gzip, gzip``: undone last first, at most :data:`MAX_CODINGS`), each
stage bounded — an inner stage by :func:`compressed_limit`, the last by the cap — and any
other coding (``br``, ``zstd``, ``compress``, ...) is refused with ``httpx.DecodingError``
before the body is read. Nothing is left for httpx to decode unbounded.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import httpx
import trio

from .._attrs import frozen
from ..config import ModelConfig
from ..errors import ResponseTooLarge

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "MAX_CODINGS",
    "Decoder",
    "ResponseCap",
    "compressed_limit",
    "content_codings",
    "read_body",
]

_DEFAULT: Any = attrs.fields(ModelConfig).max_response_bytes.default
#: The cap when no model config says otherwise (``ModelConfig.max_response_bytes``).
DEFAULT_MAX_RESPONSE_BYTES: int = _DEFAULT if isinstance(_DEFAULT, int) else 8 * 1024 * 1024

_INFLATED = frozenset({"gzip", "x-gzip", "deflate"})
#: The most content-codings one reply may stack (``gzip, gzip`` is two).
MAX_CODINGS = 3
#: A compressed body may be this much longer than the cap before inflating it shows the truth.
_COMPRESSED_SLACK = 64 * 1024


def compressed_limit(limit: int) -> int:
    """The most bytes a compressed form of at most ``limit`` bytes may take: deflate's worst
    case (stored blocks of incompressible data) adds well under 0.1 %, plus headers."""
    return limit + limit // 1000 + _COMPRESSED_SLACK


def content_codings(values: list[str]) -> tuple[str, ...]:
    """The content-codings of a reply, in the order they were applied, from its
    ``Content-Encoding`` header values (several headers, or one comma-separated list);
    ``identity`` and empty items dropped, names lowercased.

    Raises:
        httpx.DecodingError: a coding gridloom does not ask for (and so cannot undo within
            the reply size cap), or more than :data:`MAX_CODINGS` of them.
    """
    codings = tuple(
        coding
        for value in values
        for item in value.split(",")
        if (coding := item.strip().lower()) not in ("", "identity")
    )
    for coding in codings:
        if coding not in _INFLATED:
            raise httpx.DecodingError(
                f"unsupported content-encoding {coding[:40]!r} (gridloom asks for gzip or"
                " deflate only)"
            )
    if len(codings) > MAX_CODINGS:
        raise httpx.DecodingError(
            f"{len(codings)} stacked content-encodings; at most {MAX_CODINGS} are undone"
        )
    return codings


class _Overflow(Exception):
    """An inner stage of a :class:`Decoder` gave more than a compressed body may hold."""


@frozen(kw_only=True)
class ResponseCap:
    """The largest reply accepted for one model name of a provider.

    Attributes:
        limit: bytes (after decompression).
        aliases: the model aliases it comes from (the largest of theirs), for the message.
    """

    limit: int = DEFAULT_MAX_RESPONSE_BYTES
    aliases: tuple[str, ...] = ()


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            value = n / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def too_large(
    cap: ResponseCap,
    *,
    seen: str | None,
    provider: str | None,
    model: str | None,
    decompressed: bool = False,
) -> ResponseTooLarge:
    """The error for a reply that does not fit ``cap``: ``seen`` says how large it is when
    that is known (``None``: reading stopped at the cap, of the body inflated if
    ``decompressed``)."""
    if cap.aliases:
        names = ", ".join(repr(a) for a in cap.aliases)
        whose = f"of model alias {names}" if len(cap.aliases) == 1 else f"of aliases {names}"
        where = "on that model" if len(cap.aliases) == 1 else "on those models"
    else:
        whose, where = "(the default cap)", "on the model"
    limit = f"max_response_bytes = {cap.limit} ({_size(cap.limit)}) {whose}"
    if seen is None:
        inflated = " once decompressed" if decompressed else ""
        what = f"longer than {limit}{inflated}; reading stopped there"
    else:
        what = f"{seen}, more than {limit}"
    suggestion = max(cap.limit * 4, 1 << 20)
    return ResponseTooLarge(
        f"reply too large: {what}. If replies this long are expected, raise it"
        f" (max_response_bytes: {suggestion} {where})",
        limit=cap.limit,
        provider=provider,
        model=model,
    )


class _Inflate:
    """A ``gzip`` or ``deflate`` decoder whose every output fits in the room it is given."""

    __slots__ = ("_first", "_raw_fallback", "_z")

    def __init__(self, encoding: str):
        gzip = encoding != "deflate"
        self._z = zlib.decompressobj(zlib.MAX_WBITS | 16 if gzip else zlib.MAX_WBITS)
        # 'deflate' is meant to be zlib-wrapped, but some servers send a raw stream (httpx
        # tries both, the same way).
        self._raw_fallback = not gzip
        self._first = True

    def feed(self, data: bytes, room: int) -> bytes:
        """The bytes ``data`` inflates to; more than ``room`` of them only if it inflates to
        more (then at most ``room + 1``: the caller stops there)."""
        out: list[bytes] = []
        size = 0
        while data:
            try:
                piece = self._z.decompress(data, room - size + 1)
            except zlib.error as exc:
                if self._first and self._raw_fallback:
                    self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._first = False
                    continue
                raise httpx.DecodingError(f"undecodable compressed reply: {exc}") from None
            self._first = False
            out.append(piece)
            size += len(piece)
            if size > room:
                break
            data = self._z.unconsumed_tail
        return b"".join(out)

    def flush(self) -> bytes:
        try:
            return self._z.flush()
        except zlib.error as exc:
            raise httpx.DecodingError(f"undecodable compressed reply: {exc}") from None


class Decoder:
    """Undoes a reply's content-codings (as :func:`content_codings` gives them), incrementally:
    each :meth:`feed` gives at most ``room + 1`` bytes (the caller stops there), and an inner
    stage of stacked codings at most :func:`compressed_limit` of the cap in all.

    Args:
        codings: the codings in the order they were applied (undone last first).
        limit: the reply size cap.
    """

    __slots__ = ("_inner", "_last", "_room", "_sizes")

    def __init__(self, codings: tuple[str, ...], limit: int):
        stages = [_Inflate(coding) for coding in reversed(codings)]
        self._inner = stages[:-1]
        self._last = stages[-1]
        self._room = compressed_limit(limit)
        self._sizes = [0] * len(self._inner)

    def _through(self, data: bytes, start: int) -> bytes:
        """``data`` passed through the inner stages from ``start`` on."""
        for index in range(start, len(self._inner)):
            if not data:
                break
            data = self._inner[index].feed(data, self._room - self._sizes[index])
            self._sizes[index] += len(data)
            if self._sizes[index] > self._room:
                raise _Overflow
        return data

    def feed(self, data: bytes, room: int) -> bytes:
        """What ``data`` decodes to (at most ``room + 1`` bytes, see :class:`_Inflate`).

        Raises:
            _Overflow: an inner stage gave more than :func:`compressed_limit` (the caller
                reports the reply too large).
            httpx.DecodingError: the data does not decode.
        """
        data = self._through(data, 0)
        return self._last.feed(data, room) if data else b""

    def flush(self, room: int) -> bytes:
        """The rest, once the body has ended (inner stages flushed into the next ones)."""
        out: list[bytes] = []
        size = 0
        for index in range(len(self._inner)):
            tail = self._through(self._inner[index].flush(), index + 1)
            if tail:
                piece = self._last.feed(tail, room - size)
                out.append(piece)
                size += len(piece)
                if size > room:
                    return b"".join(out)
        out.append(self._last.flush())
        return b"".join(out)


class _CappedStream(httpx.AsyncByteStream):
    """A response stream that stops with :class:`ResponseTooLarge` past ``limit`` bytes.

    A plain async iterator (not a generator). Closing it closes the stream it reads from;
    when that stream iterates through async generators (httpx's own transport: httpx's and
    httpcore's streams are nested generators, which closing the outermost one does not
    finish), the iteration is first ended from the inside, by a cancelled read, so that no
    generator is left for the garbage collector to finalise (which trio reports as a
    ``ResourceWarning``).
    """

    def __init__(
        self, inner: httpx.AsyncByteStream, cap: ResponseCap, inflate: Decoder | None, where: Any
    ):
        self._inner = inner
        self._iter: AsyncIterator[bytes] | None = None
        self._cap = cap
        self._inflate = inflate
        self._size = 0
        self._where = where
        self._ended = False

    def __aiter__(self) -> _CappedStream:
        return self

    async def __anext__(self) -> bytes:
        if self._ended:
            raise StopAsyncIteration
        if self._iter is None:
            self._iter = self._inner.__aiter__()
        limit = self._cap.limit
        while True:
            raw: bytes | None
            try:
                raw = await self._iter.__anext__()
            except StopAsyncIteration:
                self._ended = True
                raw = None
            if raw is None:  # the end (errors are raised outside the except clause)
                tail = b""
                if self._inflate is not None:
                    tail = self._decode(self._inflate.flush, limit - self._size)
                self._count(tail)
                if tail:
                    return tail
                raise StopAsyncIteration
            if self._inflate is None:
                data = raw
            else:
                data = self._decode(functools.partial(self._inflate.feed, raw), limit - self._size)
            self._count(data)
            if data:
                return data

    def _decode(self, step: Callable[[int], bytes], room: int) -> bytes:
        """``step(room)``; an inner stage of stacked codings too long is the reply too large."""
        try:
            return step(room)
        except _Overflow:
            pass
        provider, model = self._where
        raise too_large(self._cap, seen=None, provider=provider, model=model, decompressed=True)

    def _count(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._cap.limit:
            provider, model = self._where
            raise too_large(
                self._cap,
                seen=None,
                provider=provider,
                model=model,
                decompressed=self._inflate is not None,
            )

    async def aclose(self) -> None:
        iterator = self._iter
        self._iter = None
        if iterator is not None and not self._ended and inspect.isasyncgen(iterator):
            with trio.CancelScope() as scope:
                scope.cancel()
                with contextlib.suppress(StopAsyncIteration, httpx.HTTPError):
                    while True:  # chunks already buffered come out before the cancelled read
                        await iterator.__anext__()
        await self._inner.aclose()


async def read_body(
    response: httpx.Response, cap: ResponseCap, *, provider: str | None, model: str | None
) -> None:
    """Read ``response``'s body (``response.content`` then holds it, decoded) within ``cap``.

    The caller closes the response, whatever happens.

    Raises:
        ResponseTooLarge: the body is longer than ``cap.limit`` (declared or read).
        httpx.DecodingError: a compressed body does not decode, or its content-coding is one
            gridloom does not undo (:func:`content_codings`; refused before reading).
    """
    headers = response.headers
    codings = content_codings(headers.get_list("content-encoding"))
    inflate = None
    if "content-encoding" in headers:
        del headers["content-encoding"]  # decoded here: httpx must not decode it (unbounded)
    if codings:
        inflate = Decoder(codings, cap.limit)
    length = headers.get("content-length")
    if not codings and length is not None and length.isdigit() and int(length) > cap.limit:
        seen = f"{length} bytes (its Content-Length)"
        raise too_large(cap, seen=seen, provider=provider, model=model)
    if not isinstance(response.stream, httpx.AsyncByteStream):  # pragma: no cover
        raise TypeError("read_body needs a response of an async transport")
    response.stream = _CappedStream(response.stream, cap, inflate, (provider, model))
    await response.aread()
