"""The I/O instruction set that flows yield, and the helpers flows compose with ``yield from``.

Layer: L3 flows (sans-IO). May import ``mailsdk.protocol``, ``mailsdk.esmtp``, ``mailsdk.auth``
(pure parts) and L0. Must never import transport, telemetry, client or config, nor any I/O
module of the standard library.

A *flow* is a generator ``Generator[Action, object, T]``: it yields an :data:`Action`, the driver
performs it and sends the result back (the result type for each action is documented on it), and
the flow finally returns ``T``. When performing an action fails with a
:class:`~mailsdk.errors.MailError`, the driver throws it into the flow (``generator.throw``) so a
best-effort step can keep the error that caused it; after a transport or protocol failure the
driver has already given the connection up. Flows never see sockets or clocks; drivers never make
protocol decisions. This is httpx's ``Auth.auth_flow`` pattern applied to the whole SMTP session.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Generator, Iterable

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
    "Close",
    "Flow",
    "ObtainToken",
    "Phase",
    "SendBdat",
    "SendBody",
    "StartTls",
    "Submit",
    "TlsInfo",
    "await_greeting",
    "obtain_token",
    "send_bdat",
    "send_body",
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
class Submit:
    """Send ``commands`` in one write (a pipelining group when more than one) and wait for every
    outstanding reply. Result: ``tuple[CommandReplied, ...]`` in wire order.
    """

    commands: tuple[Command, ...]
    phase: Phase = Phase.COMMAND


@attrs.frozen
class SendBody:
    """After a 354: stream ``body`` (canonicalised and dot-stuffed by the connection), the
    end-of-data terminator, then ``then`` (commands pipelined behind the body, RFC 2920 §3.1),
    and wait for every reply. Result: ``tuple[CommandReplied, ...]`` (LMTP: one per recipient).
    """

    body: bytes
    then: tuple[Command, ...] = ()


@attrs.frozen
class SendBdat:
    """Send one BDAT chunk (RFC 3030) and wait for its reply(s).
    Result: ``tuple[CommandReplied, ...]``.
    """

    chunk: bytes
    last: bool


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


Action: typing.TypeAlias = (
    AwaitGreeting | Submit | SendBody | SendBdat | StartTls | ObtainToken | Close
)

T = typing.TypeVar("T")

#: A flow: yields actions, receives their results, returns ``T``.
Flow: typing.TypeAlias = Generator[Action, object, T]


def _replies(result: object) -> tuple[CommandReplied, ...]:
    if isinstance(result, tuple) and all(isinstance(e, CommandReplied) for e in result):
        return typing.cast("tuple[CommandReplied, ...]", result)
    raise LocalProtocolError(f"driver returned {type(result).__name__} for a command submission")


def submit(
    *commands: Command, phase: Phase = Phase.COMMAND
) -> Generator[Action, object, tuple[Reply, ...]]:
    """Send ``commands`` (pipelined when several) and return one reply per command.

    For an LMTP end-of-data the per-recipient replies are available through :func:`submit_events`.
    """
    events = yield from submit_events(*commands, phase=phase)
    return tuple(e.reply for e in events)


def submit_events(
    *commands: Command, phase: Phase = Phase.COMMAND
) -> Generator[Action, object, tuple[CommandReplied, ...]]:
    """Like :func:`submit` but returns the raw :class:`CommandReplied` events."""
    result = yield Submit(tuple(commands), phase)
    return _replies(result)


def submit_one(command: Command, phase: Phase = Phase.COMMAND) -> Generator[Action, object, Reply]:
    """Send one command and return its reply."""
    (reply,) = yield from submit(command, phase=phase)
    return reply


def send_body(
    body: bytes, then: Iterable[Command] = ()
) -> Generator[Action, object, tuple[CommandReplied, ...]]:
    """Send the message content after a 354 and return the end-of-data reply event(s)."""
    result = yield SendBody(body, tuple(then))
    return _replies(result)


def send_bdat(chunk: bytes, *, last: bool) -> Generator[Action, object, tuple[CommandReplied, ...]]:
    """Send one BDAT chunk and return its reply event(s)."""
    result = yield SendBdat(chunk, last)
    return _replies(result)


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
