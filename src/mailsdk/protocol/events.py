"""Events: what :class:`~mailsdk.protocol.connection.ClientConnection` reports from received bytes.

Layer: L1 (sans-IO protocol core). May import ``mailsdk.protocol.reply``,
``mailsdk.protocol.commands`` and attrs; must never import socket, ssl, asyncio, selectors,
threading, time, logging, opentelemetry or msal.

There are three events and one sentinel:

* :class:`GreetingReceived`: the server's opening reply (RFC 5321 §4.3.1, normally 220);
* :class:`CommandReplied`: a reply paired with the command it answers; in LMTP the reply after
  the body arrives once per accepted recipient, tagged with ``recipient`` (RFC 2033 §4.2);
* :class:`ConnectionClosed`: the server closed the connection (EOF). Whether that was expected
  (after QUIT's 221) or a loss is for the driver to say: it checks
  :attr:`ClientConnection.pending`;
* :data:`NEED_DATA`: nothing complete yet, feed more bytes.
"""

from __future__ import annotations

import enum
import typing

import attrs

from mailsdk.protocol.commands import Command
from mailsdk.protocol.reply import Reply

__all__ = [
    "NEED_DATA",
    "CommandReplied",
    "ConnectionClosed",
    "Event",
    "GreetingReceived",
    "NeedData",
]


@attrs.frozen
class GreetingReceived:
    """The server greeting (RFC 5321 §4.3.1).

    Attributes:
        reply: the greeting reply; 220 means "go ahead", 554/421 mean "go away".
    """

    reply: Reply


@attrs.frozen
class CommandReplied:
    """A reply and the command it answers.

    Attributes:
        command: the command (``EndOfData()`` for the reply after the message body).
        reply: the server's reply.
        recipient: in LMTP, the accepted recipient this end-of-data reply belongs to
            (RFC 2033 §4.2); ``None`` otherwise.
        final: whether this is the command's last reply. Always true except for the
            per-recipient replies of an LMTP end-of-data before the last one: the connection,
            not its user, knows how many replies a command gets.
        tag: whatever the sender attached to the command (``ClientConnection.send(...,
            tag=...)``); drivers use it to find the command's telemetry observer. Not part of
            equality.
    """

    command: Command
    reply: Reply
    recipient: str | None = None
    final: bool = True
    tag: object = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class ConnectionClosed:
    """The server closed the connection (EOF was received)."""


class NeedData(enum.Enum):
    """Sentinel type for :data:`NEED_DATA`."""

    NEED_DATA = "NEED_DATA"


#: Returned by ``next_event()`` when no complete event is buffered yet.
NEED_DATA: typing.Final = NeedData.NEED_DATA

#: Anything ``next_event()`` can return except :data:`NEED_DATA`.
Event: typing.TypeAlias = GreetingReceived | CommandReplied | ConnectionClosed
