"""Shared type aliases used across layers. No logic.

Layer: L0 (foundation). Imports nothing from mailsdk.
"""

from __future__ import annotations

import email.message
import typing

__all__ = ["AddressLike", "MessageLike"]

#: An address as users pass it: ``"user@example.com"``.
AddressLike: typing.TypeAlias = str

#: A message: an ``email.message.Message`` (including ``EmailMessage``), or raw bytes/str.
MessageLike: typing.TypeAlias = email.message.Message | bytes | str
