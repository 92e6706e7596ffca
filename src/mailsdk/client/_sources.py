"""Streamed message sources: a path, a binary file object, an iterable of bytes chunks.

Layer: L5 client (private, drivers' side: this module reads files). May import L0-L4.

Each source becomes a :class:`~mailsdk.flows.ContentStream` read in bounded pieces when the
message is sent, never held whole. A path, or a seekable file, is scanned once beforehand (in
pieces too) for its canonical size, announced with ``SIZE=``, and for 8-bit data; a
non-seekable file or an iterable can only be read once, so its size is unknown. Read errors,
chunks that are not bytes and whatever the source itself raises become
:class:`~mailsdk.errors.InvalidInputError`.
"""

from __future__ import annotations

import io
import os
import typing
from collections.abc import Iterable, Iterator

from mailsdk.errors import InvalidInputError
from mailsdk.protocol.body import scan_content

__all__ = ["READ_SIZE", "FileContent", "IterableContent", "PathContent", "content_of"]

_END: typing.Final = object()

#: How much is read from a source at a time.
READ_SIZE: typing.Final = 64 * 1024


def _unreadable(what: str, exc: OSError) -> InvalidInputError:
    return InvalidInputError(f"cannot read the message {what}: {exc.strerror or exc}")


def _broken(what: str, exc: Exception) -> InvalidInputError:
    # Whatever the caller's source raises becomes the message's own failure (a MailError):
    # the messages in flight beside it still get their outcomes (one already delivered
    # would otherwise be reported nowhere, and sent again by a caller seeing only this).
    return InvalidInputError(f"the message {what} failed: {type(exc).__name__}: {exc}")


def _read_file(file: typing.BinaryIO, what: str) -> Iterator[bytes]:
    try:
        while chunk := file.read(READ_SIZE):
            if not isinstance(chunk, bytes):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise InvalidInputError(f"the message {what} must be opened in binary mode")
            yield chunk
    except OSError as exc:  # InvalidInputError included (it is one)
        raise _unreadable(what, exc) from exc
    except Exception as exc:  # a file object's own failure (e.g. read after close)
        raise _broken(what, exc) from exc


class PathContent:
    """An RFC 5322 message in a file, opened when it is sent (and scanned once before)."""

    def __init__(self, path: os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self.consumed = 0
        try:
            with open(self._path, "rb") as file:
                self.size, self.eight_bit = scan_content(_read_file(file, "file"))
        except OSError as exc:
            raise _unreadable(f"file {self._path!r}", exc) from exc

    def pieces(self) -> Iterator[bytes]:
        """The file's bytes, in pieces of :data:`READ_SIZE`."""
        try:
            file = open(self._path, "rb")  # noqa: SIM115 - closed by the finally below
        except OSError as exc:
            raise _unreadable(f"file {self._path!r}", exc) from exc
        try:
            for chunk in _read_file(file, "file"):
                self.consumed += len(chunk)
                yield chunk
        finally:
            file.close()


class FileContent:
    """A binary file object; scanned first and rewound when it is seekable. Not closed."""

    def __init__(self, file: typing.BinaryIO) -> None:
        self._file = file
        self.consumed = 0
        self.size: int | None = None
        self.eight_bit: bool | None = None
        try:
            seekable = file.seekable()
        except (OSError, ValueError, AttributeError):
            seekable = False
        if seekable:
            try:
                start = file.tell()
                self.size, self.eight_bit = scan_content(_read_file(file, "stream"))
                file.seek(start)
            except OSError as exc:
                raise _unreadable("stream", exc) from exc

    def pieces(self) -> Iterator[bytes]:
        """The stream's bytes from its position, in pieces of :data:`READ_SIZE`."""
        for chunk in _read_file(self._file, "stream"):
            self.consumed += len(chunk)
            yield chunk


class IterableContent:
    """An iterable of bytes chunks, read once as it is sent (size unknown)."""

    size: None = None
    eight_bit: None = None

    def __init__(self, chunks: Iterable[object]) -> None:
        self._chunks = chunks
        self.consumed = 0

    def pieces(self) -> Iterator[bytes]:
        """The chunks, checked to be bytes.

        Raises:
            InvalidInputError: a chunk is not bytes, or the iterable raised.
        """
        chunks = iter(self._chunks)
        while True:
            try:
                chunk = next(chunks, _END)
            except InvalidInputError:
                raise
            except Exception as exc:
                raise _broken("chunks", exc) from exc
            if chunk is _END:
                return
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise InvalidInputError(f"message chunks must be bytes, not {type(chunk).__name__}")
            piece = bytes(typing.cast("bytes | bytearray | memoryview[int]", chunk))
            self.consumed += len(piece)
            yield piece


def content_of(source: object) -> PathContent | FileContent | IterableContent | None:
    """The stream for a streamed source, or ``None`` for an in-memory message form.

    Raises:
        InvalidInputError: a path that cannot be read.
    """
    if isinstance(source, os.PathLike):
        return PathContent(typing.cast("os.PathLike[str]", source))
    if isinstance(source, io.IOBase) or hasattr(source, "read"):
        if isinstance(source, io.TextIOBase):
            raise InvalidInputError("the message file must be opened in binary mode")
        return FileContent(typing.cast("typing.BinaryIO", source))
    if isinstance(source, Iterable) and not isinstance(source, bytes | str | bytearray):
        return IterableContent(typing.cast("Iterable[object]", source))
    return None
