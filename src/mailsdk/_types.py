"""Shared type aliases used across layers. No logic.

Layer: L0 (foundation). Imports nothing from mailsdk.
"""

from __future__ import annotations

import email.message
import os
import typing
from collections.abc import Iterable

__all__ = ["AddressLike", "MessageLike", "MessageSource"]

#: An address as users pass it: ``"user@example.com"``.
AddressLike: typing.TypeAlias = str

#: A message: an ``email.message.Message`` (including ``EmailMessage``), or raw bytes/str.
MessageLike: typing.TypeAlias = email.message.Message | bytes | str

#: Any message form a send accepts: a :data:`MessageLike`, a path to an RFC 5322 file, a binary
#: file object, or an iterable of ``bytes`` chunks. The last three are streamed (read, encoded and
#: written in bounded chunks), never held whole in memory.
MessageSource: typing.TypeAlias = MessageLike | os.PathLike[str] | typing.BinaryIO | Iterable[bytes]
