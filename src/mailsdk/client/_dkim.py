"""DKIM in the message-preparation pipeline: the last step, after the trace headers.

Layer: L5 client (an I/O edge: the clock, files and a temporary spool). May import L0-L4 and
``mailsdk.dkim``; never builder or L7.

The signature is a header, so it must be written before the body it covers: the body is read
twice. How depends on the source (:func:`sign_prepared`, the pipeline's step):

* bytes, ``str`` or an ``EmailMessage``: already in memory after flattening; hashed in place.
* a path: **two passes** over the file. The first hashes it in 64 KiB pieces, the second (the
  file opened again when the message is sent) sends it. The file must not change in between
  (replace files atomically, never rewrite them in place).
* a binary file object or an iterable of chunks (read once): a **bounded spool**: the pieces
  are hashed as they are copied (with canonical CRLF) into a
  :class:`tempfile.SpooledTemporaryFile` that keeps up to :data:`SPOOL_IN_MEMORY` bytes in
  memory and moves to a private temporary file beyond that; the spool is then what is sent,
  and deleted after. Memory stays bounded whatever the size, and the size is known for
  ``SIZE=`` once spooled.

:func:`sign_stream` does the same for a source given directly (used outside the pipeline), and
reads a seekable file twice too (``seek`` back to where it started) instead of spooling it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import typing
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs

from mailsdk.client._sources import PathContent
from mailsdk.dkim import DkimSigner, HeaderSplitter, sign_message
from mailsdk.errors import InvalidInputError
from mailsdk.flows.envelope import PreparedMessage
from mailsdk.protocol.body import canonicalize_line_endings

__all__ = [
    "SPOOL_IN_MEMORY",
    "SignedStream",
    "SpooledContent",
    "sign_prepared",
    "sign_stream",
    "signing_step",
]

#: Bytes of a one-shot stream kept in memory before the spool moves to a temporary file.
SPOOL_IN_MEMORY: typing.Final = 8 << 20
READ_CHUNK: typing.Final = 1 << 16


def _now() -> int:
    return int(time.time())


def signing_step(
    signers: Sequence[DkimSigner], clock: Callable[[], int] = _now
) -> Callable[[PreparedMessage], PreparedMessage]:
    """The preparation pipeline's DKIM step (after the trace headers): :func:`sign_prepared`."""

    def step(prepared: PreparedMessage) -> PreparedMessage:
        return sign_prepared(prepared, signers, clock)

    return step


def sign_prepared(
    prepared: PreparedMessage,
    signers: Sequence[DkimSigner],
    clock: Callable[[], int] = _now,
) -> PreparedMessage:
    """``prepared`` with its DKIM-Signature fields in front (unchanged without signers).

    The signature covers every header that is sent: the header lines the pipeline added in
    front of the content (``prepared.headers``: the trace context) are part of the header
    block. In-memory content is hashed in place; a file named by a path is read twice (it is
    opened again to be sent); any other stream is read once into a bounded spool, which is
    then what is sent.

    Raises:
        InvalidInputError: the message header is malformed, has no From field, or a streamed
            source cannot be read.
        ConfigurationError: the ``dkim`` extra is not installed.
    """
    if not signers:
        return prepared
    stream = prepared.stream
    if stream is None:
        signatures = _sign_data(signers, prepared.headers, prepared.data, clock)
    elif isinstance(stream, PathContent):
        # Two passes: this one hashes; PathContent opens the file again to send it.
        signatures = _hash(signers, stream.pieces(), clock, prepared.headers)
    else:
        signed = sign_stream(signers, stream, clock, prefix=prepared.headers)
        content = SpooledContent(signed)
        eight_bit = prepared.eight_bit if prepared.eight_bit is not None else signed.eight_bit
        prepared = attrs.evolve(prepared, stream=content, eight_bit=eight_bit)
        signatures = signed.signatures
    return prepared.with_headers(signatures)


def _sign_data(
    signers: Sequence[DkimSigner], added: bytes, data: bytes, clock: Callable[[], int]
) -> bytes:
    """Sign in-memory content (canonical CRLF already): split it in place and hash the body in
    slices, so signing copies nothing but slices."""
    end = 0 if data.startswith(b"\r\n") else data.find(b"\r\n\r\n") + 2
    body = memoryview(data)[len(data) :]
    if end == 1:  # no empty line: the whole message is its header
        head = data if data.endswith(b"\r\n") or not data else data + b"\r\n"
    else:
        head, body = data[:end], memoryview(data)[end + 2 :]
    slices = (bytes(body[i : i + READ_CHUNK]) for i in range(0, len(body), READ_CHUNK))
    return sign_message(signers, added + head, slices, timestamp=clock())


@attrs.frozen
class SignedStream:
    """A streamed message with its signatures: iterate :attr:`chunks` once, then :meth:`close`.

    Attributes:
        signatures: the DKIM-Signature fields to write first.
        chunks: the message itself (header block, separator, body), in bounded chunks.
        size: the total size in bytes (signatures included) when known.
        eight_bit: whether the content has bytes over 0x7F (``None``: not looked at).
    """

    signatures: bytes
    chunks: Iterator[bytes]
    size: int | None
    _cleanup: contextlib.ExitStack = attrs.field(repr=False)
    eight_bit: bool | None = None

    def __iter__(self) -> Iterator[bytes]:
        yield self.signatures
        yield from self.chunks

    def close(self) -> None:
        """Close the file or delete the spool."""
        self._cleanup.close()


def _read(file: typing.BinaryIO) -> Iterator[bytes]:
    while chunk := file.read(READ_CHUNK):
        yield chunk


def _hash(
    signers: Sequence[DkimSigner],
    chunks: Iterable[bytes],
    clock: Callable[[], int],
    prefix: bytes = b"",
) -> bytes:
    """Sign a message given as chunks (after ``prefix``, header lines added in front of it):
    split off the header block, hash the rest."""
    splitter = HeaderSplitter()
    iterator = iter(chunks)
    found = splitter.feed(prefix) if prefix else None
    for chunk in iterator if found is None else ():
        found = splitter.feed(chunk)
        if found is not None:
            break
    if found is None:
        return sign_message(signers, splitter.finish(), (), timestamp=clock())
    head, first = found
    return sign_message(signers, head, _chain(first, iterator), timestamp=clock())


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def sign_stream(
    signers: Sequence[DkimSigner],
    source: os.PathLike[str] | typing.BinaryIO | Iterable[bytes] | _Pieces,
    clock: Callable[[], int] = _now,
    spool_in_memory: int = SPOOL_IN_MEMORY,
    *,
    prefix: bytes = b"",
) -> SignedStream:
    """Sign a streamed message (see the module docstring for how each source is read twice).

    Args:
        signers: the signatures to make.
        source: a path, a binary file, an iterable of chunks, or a content stream (an object
            with ``pieces()``, read once: spooled).
        clock: seconds since the epoch for ``t=``.
        spool_in_memory: bytes of a one-shot source kept in memory before spooling to disk.
        prefix: header lines added in front of the source (signed, not part of the chunks).

    Raises:
        InvalidInputError: the header is malformed, longer than 1 MiB, or has no From field;
            a chunk is not bytes.
        ConfigurationError: the ``dkim`` extra is not installed.
        OSError: the file cannot be read (the caller maps it).
    """
    stack = contextlib.ExitStack()
    try:
        if isinstance(source, os.PathLike):
            path = os.fspath(source)
            with open(path, "rb") as first_pass:
                signatures = _hash(signers, _read(first_pass), clock, prefix)
            second_pass = stack.enter_context(open(path, "rb"))  # noqa: SIM115
            size = os.fstat(second_pass.fileno()).st_size
            return SignedStream(signatures, _read(second_pass), size + len(signatures), stack)
        if _seekable(source):
            file = typing.cast("typing.BinaryIO", source)
            start = file.tell()
            signatures = _hash(signers, _read(file), clock, prefix)
            end = file.tell()
            file.seek(start)
            return SignedStream(signatures, _read(file), end - start + len(signatures), stack)
        spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=spool_in_memory))  # noqa: SIM115
        if isinstance(source, _Pieces):
            chunks: Iterable[bytes] = source.pieces()
        elif _is_file(source):
            chunks = _read(typing.cast("typing.BinaryIO", source))
        else:
            chunks = source
        copier = _Copier(spool)
        signatures = _hash(signers, copier.copy(chunks), clock, prefix)
        size = spool.tell()
        spool.seek(0)
        return SignedStream(
            signatures,
            _read(spool),  # type: ignore[arg-type]
            size + len(signatures),
            stack,
            copier.eight_bit,
        )
    except BaseException:
        stack.close()
        raise


def _is_file(source: object) -> bool:
    return callable(getattr(source, "read", None))


def _seekable(source: object) -> bool:
    if not _is_file(source):
        return False
    try:
        return bool(source.seekable())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


class _Copier:
    """Copies chunks into a spool with canonical CRLF line ends (a CR at the end of a chunk
    waits for the next), so the spool's size is the size sent; notes 8-bit data on the way."""

    def __init__(self, spool: typing.IO[bytes]) -> None:
        self._spool = spool
        self.eight_bit = False

    def copy(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        pending_cr = False
        for chunk in chunks:
            if not isinstance(chunk, bytes | bytearray | memoryview):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise InvalidInputError(
                    f"a message chunk must be bytes, not {type(chunk).__name__}"
                )
            data = bytes(chunk)
            yield data
            self.eight_bit = self.eight_bit or not data.isascii()
            if pending_cr:
                data, pending_cr = b"\r" + data, False
            if data.endswith(b"\r"):
                data, pending_cr = data[:-1], True
            self._spool.write(canonicalize_line_endings(data))
        if pending_cr:
            self._spool.write(b"\r\n")


@typing.runtime_checkable
class _Pieces(typing.Protocol):
    """A content stream of the preparation pipeline (read once, piece by piece)."""

    def pieces(self) -> Iterator[bytes]: ...


class SpooledContent:
    """A signed message's content as a content stream (``size``, ``consumed``, ``pieces()``):
    what a streamed source becomes once signed. Read it once; the spool is deleted after."""

    def __init__(self, signed: SignedStream) -> None:
        self._signed = signed
        self._consumed = 0
        # A message refused before its content is sent never reads it: close the spool (and
        # its temporary file) when the message is dropped.
        weakref.finalize(self, signed.close)

    @property
    def size(self) -> int | None:
        """The content size (canonical CRLF), signatures not included."""
        return (
            None if self._signed.size is None else self._signed.size - len(self._signed.signatures)
        )

    @property
    def consumed(self) -> int:
        """Bytes handed out so far."""
        return self._consumed

    @property
    def eight_bit(self) -> bool | None:
        """Whether the content has bytes over 0x7F."""
        return self._signed.eight_bit

    def pieces(self) -> Iterator[bytes]:
        """The content in bounded pieces; the spool is closed at the end (or on an error)."""
        try:
            for piece in self._signed.chunks:
                self._consumed += len(piece)
                yield piece
        finally:
            self._signed.close()
