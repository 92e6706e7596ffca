"""The I/O instruction set that flows yield, and the helpers flows compose with ``yield from``.

Layer: L3 flows (sans-IO). May import ``mailsdk.protocol``, ``mailsdk.esmtp``, ``mailsdk.auth``
(pure parts) and L0. Must never import transport, telemetry, client or config, nor any I/O
module of the standard library.

A *flow* is a generator ``Generator[Action, object, T]``: it yields an :data:`Action`, the driver
performs it and sends the result back (the result type for each action is documented on it), and
the flow finally returns ``T``. All SMTP traffic is one action, :class:`Exchange`: "write these
frames, then give me the replies to the next K commands", so a flow decides how much is in flight
(a PIPELINING group, a body with the next envelope behind it, pipelined BDAT chunks). When
performing an action fails with a :class:`~mailsdk.errors.MailError`, the driver throws it
into the flow (``generator.throw``) so a best-effort step can keep the error that caused it;
after a transport or protocol failure the driver has already given the connection up. Flows
never see sockets or clocks; drivers never make protocol decisions. This is httpx's
``Auth.auth_flow`` pattern applied to the whole SMTP session.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Generator

import attrs

from mailsdk.errors import LocalProtocolError
from mailsdk.protocol.commands import Command
from mailsdk.protocol.events import CommandReplied, GreetingReceived
from mailsdk.protocol.reply import Reply

if typing.TYPE_CHECKING:
    from mailsdk.auth.tokens import AccessToken

__all__ = [
    "Action",
    "AwaitGreeting",
    "BdatChunk",
    "BodyChunk",
    "Close",
    "Exchange",
    "Flow",
    "Frame",
    "ObtainToken",
    "Phase",
    "Pull",
    "Report",
    "StartTls",
    "TlsInfo",
    "await_greeting",
    "exchange",
    "obtain_token",
    "replies_of",
    "report",
    "start_tls",
    "submit",
    "submit_events",
    "submit_one",
]


class Phase(enum.Enum):
    """Which deadline applies to an action (RFC 5321 §4.5.3.2 names the timeouts)."""

    GREETING = "greeting"
    COMMAND = "command"
    DATA = "data"
    TLS = "tls"
    QUIT = "quit"


@attrs.frozen
class AwaitGreeting:
    """Read the server greeting. Result: :class:`~mailsdk.protocol.events.GreetingReceived`."""


@attrs.frozen
class BodyChunk:
    """A piece of DATA content, after the 354 (the connection canonicalises line endings and
    dot-stuffs it, RFC 5321 §4.5.2). An ``EndOfData()`` frame ends the body. ``canonical``
    says the line endings are CRLF already (the connection then skips that scan)."""

    data: bytes
    canonical: bool = False


@attrs.frozen
class BdatChunk:
    """One BDAT chunk (RFC 3030 §2): the ``BDAT n [LAST]`` header and its payload. It is a
    command: it gets one reply (per accepted recipient for LMTP's ``LAST``)."""

    data: bytes
    last: bool
    #: Convert bare CR/LF to CRLF; ``False`` for ``BODY=BINARYMIME`` content (RFC 3030 §3).
    canonicalize: bool = True


#: What an :class:`Exchange` writes: commands (``EndOfData()`` ends a DATA body), body pieces
#: and BDAT chunks, in wire order.
Frame: typing.TypeAlias = Command | BodyChunk | BdatChunk


@attrs.frozen
class Exchange:
    """Write ``frames`` (in order), then read the replies to the next ``replies`` commands.

    The one instruction for all SMTP traffic. ``replies`` counts *commands*, oldest first,
    including ones written by earlier exchanges; ``None`` means every reply still owed, ``0``
    means none. With ``0`` the frames may stay buffered: they go out, in the same write, with
    the next exchange that waits (or before any other action). That is how a flow puts message
    N's body, its end-of-data and message N+1's MAIL, RCPT and DATA into one write (RFC 2920
    §3.1) while keeping each frame's ``owner`` apart.

    Result: ``tuple[CommandReplied, ...]`` in wire order; a command's last event has
    ``final`` set (an LMTP end-of-data gets one event per accepted recipient).

    Attributes:
        frames: what to write.
        replies: how many commands' replies to wait for.
        phase: which deadline applies to the replies of these commands (the end of a body,
            ``EndOfData()`` or a ``LAST`` chunk, always waits under :attr:`Phase.DATA`).
        owner: opaque to flows and drivers alike: the transaction these frames belong to, as
            given by the caller who prepared the message (telemetry parents the commands'
            spans to it).
    """

    frames: tuple[Frame, ...]
    replies: int | None = None
    phase: Phase = Phase.COMMAND
    owner: object = None


@attrs.frozen
class Pull:
    """Ask whoever runs the flow for its next input (``send_many``: the next prepared message,
    so an asynchronous source can be awaited). Result: the input, or ``None`` when there is
    no more.

    Attributes:
        prepare: ``False`` when the flow only needs to account for the input (the connection
            is gone and it will never be sent): the runner may skip the work of preparing it.
    """

    prepare: bool = True


@attrs.frozen
class Report:
    """Hand ``value`` to whoever runs the flow, and carry on (``send_many`` yields each
    outcome this way as soon as it is known). Result: ``None``."""

    value: object


@attrs.frozen
class TlsInfo:
    """What the driver reports after a TLS upgrade."""

    version: str | None = None
    cipher: str | None = None
    channel_binding: tuple[str, bytes] | None = None


@attrs.frozen
class StartTls:
    """Upgrade the stream after the server's 220 to STARTTLS. Result: :class:`TlsInfo`."""


@attrs.frozen
class ObtainToken:
    """Ask the configured token provider for an access token. Result: ``AccessToken``."""

    force_refresh: bool = False


@attrs.frozen
class Close:
    """Close the stream (after QUIT or a 421). Result: ``None``."""


Action: typing.TypeAlias = AwaitGreeting | Exchange | Pull | Report | StartTls | ObtainToken | Close

T = typing.TypeVar("T")

#: A flow: yields actions, receives their results, returns ``T``.
Flow: typing.TypeAlias = Generator[Action, object, T]


def replies_of(result: object) -> tuple[CommandReplied, ...]:
    """The reply events a driver returned for an exchange (its contract: a tuple of them)."""
    if isinstance(result, tuple):
        # The driver's contract (a tuple of events), not checked element by element twice.
        return typing.cast("tuple[CommandReplied, ...]", result)
    raise LocalProtocolError(f"driver returned {type(result).__name__} for an exchange")


def exchange(
    *frames: Frame,
    replies: int | None = None,
    phase: Phase = Phase.COMMAND,
    owner: object = None,
) -> Generator[Action, object, tuple[CommandReplied, ...]]:
    """Yield one :class:`Exchange` and return its reply events."""
    result = yield Exchange(frames, replies, phase, owner)
    return replies_of(result)


def submit(
    *commands: Command, phase: Phase = Phase.COMMAND
) -> Generator[Action, object, tuple[Reply, ...]]:
    """Send ``commands`` (pipelined when several) and return one reply per command."""
    events = yield Exchange(commands, len(commands), phase)
    return tuple(e.reply for e in replies_of(events) if e.final)


def submit_events(
    *commands: Command, phase: Phase = Phase.COMMAND
) -> Generator[Action, object, tuple[CommandReplied, ...]]:
    """Like :func:`submit` but returns the raw :class:`CommandReplied` events."""
    return (yield from exchange(*commands, replies=len(commands), phase=phase))


def submit_one(command: Command, phase: Phase = Phase.COMMAND) -> Generator[Action, object, Reply]:
    """Send one command and return its reply."""
    events = yield Exchange((command,), 1, phase)
    return replies_of(events)[-1].reply


def report(value: object) -> Generator[Action, object, None]:
    """Hand ``value`` to the flow's runner (see :class:`Report`)."""
    yield Report(value)


def await_greeting() -> Generator[Action, object, Reply]:
    """Read the greeting and return its reply (whatever the code)."""
    result = yield AwaitGreeting()
    if not isinstance(result, GreetingReceived):
        raise LocalProtocolError(f"driver returned {type(result).__name__} for the greeting")
    return result.reply


def start_tls() -> Generator[Action, object, TlsInfo]:
    """Ask the driver to upgrade the stream; returns what it negotiated."""
    result = yield StartTls()
    if not isinstance(result, TlsInfo):
        raise LocalProtocolError(f"driver returned {type(result).__name__} for STARTTLS")
    return result


def obtain_token(*, force_refresh: bool = False) -> Generator[Action, object, AccessToken]:
    """Ask the driver for an access token from the configured provider."""
    from mailsdk.auth.tokens import AccessToken

    result = yield ObtainToken(force_refresh)
    if not isinstance(result, AccessToken):
        raise LocalProtocolError(f"driver returned {type(result).__name__} for a token request")
    return result
