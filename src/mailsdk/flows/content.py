"""A prepared message's content as frames: body pieces for DATA, chunks for BDAT.

Layer: L3 flows (sans-IO). May import ``mailsdk.protocol`` and L0. Must never import transport,
telemetry or client, nor any I/O module of the standard library.

Content is consumed piece by piece, so a streamed source is never held whole: a DATA body goes
out as :class:`~mailsdk.flows.BodyChunk` frames (the connection canonicalises line endings and
dot-stuffs them, carrying state across pieces), BDAT content as chunks of at most
``chunk_size`` bytes with ``LAST`` on the final one (found by reading one piece ahead).
"""

from __future__ import annotations

from collections.abc import Iterator

from mailsdk.errors import InvalidInputError
from mailsdk.flows.actions import BdatChunk, BodyChunk
from mailsdk.flows.envelope import PreparedMessage

__all__ = ["bdat_chunks", "body_chunks"]


def body_chunks(prepared: PreparedMessage) -> Iterator[BodyChunk]:
    """The DATA content of ``prepared``, piece by piece (no terminator: ``EndOfData()``)."""
    for piece in prepared.pieces():
        if piece:
            # Only the prepared bytes themselves may be known canonical, never added headers.
            yield BodyChunk(piece, prepared.canonical and piece is prepared.data)


def _sized(prepared: PreparedMessage, chunk_size: int, binary: bool) -> Iterator[bytes]:
    rest = b""
    for piece in prepared.pieces(binary=binary):
        if rest:
            piece, rest = rest + piece, b""
        start = 0
        while len(piece) - start >= chunk_size:
            yield piece[start : start + chunk_size]
            start += chunk_size
        rest = piece[start:]
    if rest:
        yield rest


def bdat_chunks(
    prepared: PreparedMessage, chunk_size: int, *, binary: bool = False
) -> Iterator[BdatChunk]:
    """The content of ``prepared`` as BDAT chunks of at most ``chunk_size`` bytes (RFC 3030);
    the last is marked ``LAST`` (an empty message is one ``BDAT 0 LAST``). With ``binary``
    (``BODY=BINARYMIME``) the content goes exactly as given, never canonicalised.

    Raises:
        InvalidInputError: ``chunk_size`` is not positive.
    """
    if chunk_size <= 0:
        raise InvalidInputError("chunk_size must be positive")
    ahead: bytes | None = None
    canonicalize = not binary
    for chunk in _sized(prepared, chunk_size, binary):
        if ahead is not None:
            yield BdatChunk(ahead, False, canonicalize)
        ahead = chunk
    yield BdatChunk(ahead or b"", True, canonicalize)
