"""The failure policy: what a failure leaves of a session. One pure decision for both drivers.

Layer: L5 client (private, pure: no I/O). May import L0-L4.

A session is only usable while every reply is paired with its command. A refusal, or a local
check that failed before anything was written, leaves the conversation in step: the session
stays open (unless the server said 421, RFC 5321 §3.8: it is closing the channel). A transport
or protocol failure, or anything else in the middle of an exchange (a cancellation,
KeyboardInterrupt), may leave replies owed, so the next command could be paired with a stale
reply: the connection is given up. The same holds for a local error raised while the
conversation is not idle (a message source that fails in the middle of its content).
"""

from __future__ import annotations

import enum
import typing

from mailsdk.errors import (
    AuthError,
    CapabilityError,
    ConfigurationError,
    ConnectionLost,
    InvalidInputError,
    LocalProtocolError,
    ReplyError,
)

__all__ = ["SAFE_TO_QUIT", "Claimable", "Verdict", "after", "claim", "refuse_if_busy"]


class Claimable(typing.Protocol):
    """A driver: one call at a time on an open connection."""

    closed: bool
    busy: bool


def claim(driver: Claimable) -> None:
    """Start a call on ``driver`` (the caller clears ``busy`` when it ends).

    Raises:
        ConnectionLost: the session is closed.
        LocalProtocolError: another call is in progress (interleaved calls would read each
            other's replies): refused before any I/O.
    """
    refuse_if_busy(driver)
    driver.busy = True


def refuse_if_busy(driver: Claimable) -> None:
    """Refuse a call on a closed or busy session before it changes anything (see :func:`claim`)."""
    if driver.closed:
        raise ConnectionLost("the session is closed")
    if driver.busy:
        raise LocalProtocolError(
            "another call is in progress on this session: a session runs one call at a time"
        )


#: Failures after which the connection is still in step and a polite QUIT makes sense (a
#: ConfigurationError, e.g. an unknown mechanism name, is found before anything is written).
SAFE_TO_QUIT: tuple[type[BaseException], ...] = (
    ReplyError,
    AuthError,
    CapabilityError,
    InvalidInputError,
    ConfigurationError,
)


class Verdict(enum.Enum):
    """What to do with the connection."""

    #: In step: the session stays usable.
    KEEP = "keep"
    #: The server is closing (421): close the stream; nothing is owed.
    CLOSE = "close"
    #: Out of step or broken: fail what is still open, close the stream.
    GIVE_UP = "give up"


def after(error: BaseException | None, *, server_closing: bool, idle: bool = False) -> Verdict:
    """Decide what ``error`` (``None``: the call succeeded) leaves of the session.

    Args:
        error: what ended the call or the action, if anything.
        server_closing: the server answered 421 at some point.
        idle: nothing is owed and nothing half-written. A refusal or local error raised
            while, say, a message's content was being written (an unreadable source) leaves
            the conversation out of step; a caller abandoning an iterator (``GeneratorExit``)
            between messages leaves it in step.
    """
    if error is None:
        return Verdict.CLOSE if server_closing else Verdict.KEEP
    if isinstance(error, SAFE_TO_QUIT) and idle:
        if server_closing or (isinstance(error, ReplyError) and error.reply.code == 421):
            return Verdict.CLOSE
        return Verdict.KEEP
    if idle and isinstance(error, GeneratorExit):
        return Verdict.CLOSE if server_closing else Verdict.KEEP
    return Verdict.GIVE_UP
