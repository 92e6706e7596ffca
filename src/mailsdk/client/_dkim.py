"""DKIM in the message-preparation pipeline: the last step, after the trace headers.

Layer: L5 client (an I/O edge: the clock, files and a temporary spool). May import L0-L4 and
``mailsdk.dkim``; never builder or L7.

The signature is a header, so it must be written before the body it covers: the body is read
twice. How depends on the source:

* bytes, ``str`` or an ``EmailMessage``: already in memory after flattening; hashed in place.
* a path, or a binary file that can seek: **two passes** over the file. The first hashes the
  body in bounded chunks, the second (reopened, or after ``seek`` back to where it started)
  sends it. The file must not change in between (a path is re-opened, so replace files
  atomically).
* anything else (an iterable of chunks, a pipe): a **bounded spool**: the chunks are hashed as
  they are copied into a :class:`tempfile.SpooledTemporaryFile` that keeps up to
  :data:`SPOOL_IN_MEMORY` bytes in memory and moves to a private temporary file beyond that;
  the spool is then sent and deleted. Memory stays bounded whatever the size.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs

from mailsdk.dkim import DkimSigner, HeaderSplitter, sign_bytes, sign_message
from mailsdk.errors import InvalidInputError
from mailsdk.flows.envelope import PreparedMessage

__all__ = ["SPOOL_IN_MEMORY", "SignedStream", "sign_prepared", "sign_stream"]

#: Bytes of a one-shot stream kept in memory before the spool moves to a temporary file.
SPOOL_IN_MEMORY: typing.Final = 8 << 20
READ_CHUNK: typing.Final = 1 << 16


def _now() -> int:
    return int(time.time())


def sign_prepared(
    prepared: PreparedMessage,
    signers: Sequence[DkimSigner],
    clock: Callable[[], int] = _now,
) -> PreparedMessage:
    """``prepared`` with its DKIM-Signature fields in front (unchanged without signers).

    Raises:
        InvalidInputError: the message header is malformed or has no From field.
        ConfigurationError: the ``dkim`` extra is not installed.
    """
    if not signers:
        return prepared
    data = prepared.data
    # ``data`` is canonical CRLF already (prepare_message/prepare_raw): split it in place and
    # hash the body in slices, so signing costs one copy of the message (the result), not four.
    end = 0 if data.startswith(b"\r\n") else data.find(b"\r\n\r\n") + 2
    if end == 1:  # no empty line: the whole message is its header
        return attrs.evolve(prepared, data=sign_bytes(signers, data, timestamp=clock()))
    head = data[:end]
    view = memoryview(data)[end + 2 :]
    slices = (bytes(view[i : i + READ_CHUNK]) for i in range(0, len(view), READ_CHUNK))
    signatures = sign_message(signers, head, slices, timestamp=clock())
    return attrs.evolve(prepared, data=signatures + data)


@attrs.frozen
class SignedStream:
    """A streamed message with its signatures: iterate :attr:`chunks` once, then :meth:`close`.

    Attributes:
        signatures: the DKIM-Signature fields to write first.
        chunks: the message itself (header block, separator, body), in bounded chunks.
        size: the total size in bytes (signatures included) when known.
    """

    signatures: bytes
    chunks: Iterator[bytes]
    size: int | None
    _cleanup: contextlib.ExitStack = attrs.field(repr=False)

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
    signers: Sequence[DkimSigner], chunks: Iterable[bytes], clock: Callable[[], int]
) -> bytes:
    """Sign a message given as chunks: split off the header block, hash the rest."""
    splitter = HeaderSplitter()
    iterator = iter(chunks)
    found: tuple[bytes, bytes] | None = None
    for chunk in iterator:
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
    source: os.PathLike[str] | typing.BinaryIO | Iterable[bytes],
    clock: Callable[[], int] = _now,
    spool_in_memory: int = SPOOL_IN_MEMORY,
) -> SignedStream:
    """Sign a streamed message (see the module docstring for how each source is read twice).

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
                signatures = _hash(signers, _read(first_pass), clock)
            second_pass = stack.enter_context(open(path, "rb"))  # noqa: SIM115
            size = os.fstat(second_pass.fileno()).st_size
            return SignedStream(signatures, _read(second_pass), size + len(signatures), stack)
        if _seekable(source):
            file = typing.cast("typing.BinaryIO", source)
            start = file.tell()
            signatures = _hash(signers, _read(file), clock)
            end = file.tell()
            file.seek(start)
            return SignedStream(signatures, _read(file), end - start + len(signatures), stack)
        spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=spool_in_memory))  # noqa: SIM115
        chunks = _read(typing.cast("typing.BinaryIO", source)) if _is_file(source) else source
        signatures = _hash(signers, _copy(chunks, spool), clock)
        size = spool.tell()
        spool.seek(0)
        return SignedStream(signatures, _read(spool), size + len(signatures), stack)  # type: ignore[arg-type]
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


def _copy(chunks: Iterable[bytes], spool: typing.IO[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise InvalidInputError(f"a message chunk must be bytes, not {type(chunk).__name__}")
        data = bytes(chunk)
        spool.write(data)
        yield data
