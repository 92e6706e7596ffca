"""The reply pump: turns a flow's frames into write blocks and bytes read into reply events.

Layer: L5 client (private). May import L0-L4. No I/O happens here: the drivers write the blocks
this module produces and feed it what they read; it decides what to write, which deadline
applies, what the replies mean to telemetry and what goes into the wire log.

Who keeps what: :class:`~mailsdk.protocol.connection.ClientConnection` owns the only queue of
commands awaiting a reply, tells when a command's last reply arrived (LMTP runs included) and
whether the server said 421. The pump attaches a small tag to each command it queues (verb,
owning transaction, deadline phase, telemetry observer once written) and reads it back from the
reply events; it keeps no second queue and makes no guess about reply counts.
"""

from __future__ import annotations

import logging
import time
import typing
from collections.abc import Callable

from mailsdk.client._policy import Verdict, after
from mailsdk.errors import (
    CommandRefused,
    ConnectionLost,
    LocalProtocolError,
    MailError,
    MailTimeout,
    ReadTimeout,
    RemoteProtocolError,
    TransportError,
    WriteTimeout,
)
from mailsdk.esmtp import Capabilities
from mailsdk.flows import BdatChunk, BodyChunk, Exchange, Phase
from mailsdk.protocol import commands as _commands
from mailsdk.protocol.commands import Auth, AuthResponse, Command, EndOfData, Raw
from mailsdk.protocol.connection import ClientConnection
from mailsdk.protocol.events import NEED_DATA, CommandReplied, ConnectionClosed, GreetingReceived
from mailsdk.protocol.reply import Reply
from mailsdk.protocol.state import ClientState
from mailsdk.telemetry.base import NoopSessionObserver

if typing.TYPE_CHECKING:
    from mailsdk.config import Timeouts
    from mailsdk.telemetry import CommandObserver, SessionObserver, TransactionObserver

__all__ = ["RECEIVE_SIZE", "WRITE_BLOCK", "Pump", "wire_log", "write_timeout_error"]

_E = typing.TypeVar("_E", bound=TransportError)

#: The protocol log. DEBUG shows every command and reply; AUTH payloads are redacted.
wire_log = logging.getLogger("mailsdk.wire")

#: How much a driver asks the stream for at a time.
RECEIVE_SIZE: typing.Final = 65536
#: Encoded output is written once this much is buffered (bounded memory for streamed bodies);
#: smaller exchanges go out in one write.
WRITE_BLOCK: typing.Final = 128 * 1024


#: The frame types ``Pump.encode`` dispatches on by identity (anything else: ``_frame_type``).
_FRAME_TYPES: typing.Final[frozenset[type]] = frozenset(
    {BodyChunk, BdatChunk, *(getattr(_commands, name) for name in _commands.__all__)}
) - {Command}


def _frame_type(frame: object) -> type:
    """The frame type ``frame`` is an instance of (a subclass made by a custom flow), so
    that the exact-type dispatch treats it as its base: e.g. an ``Auth`` subclass still gets
    its challenges redacted. Anything else is a typed refusal, never an AttributeError."""
    for kind in _FRAME_TYPES:
        if isinstance(frame, kind):
            return kind
    raise LocalProtocolError(
        f"an Exchange frame is a command, BodyChunk or BdatChunk, not {type(frame).__name__}"
    )


def _label(command: Command) -> str:
    """The command's verb for a message, or its redacted form for a raw line that is no
    command (a SASL response sent with ``execute()``: its first word would be the secret)."""
    if isinstance(command, Raw):
        return command.redacted().decode("utf-8", "replace").split(None, 1)[0]
    return command.verb


def _seconds(limit: float | None) -> str:
    return "no limit" if limit is None else f"{limit:g} s"


def _printable(line: bytes) -> str:
    """Reply text for the log: a server must not be able to forge log lines with CR, LF or
    other controls, so they are shown escaped (``\\r``)."""
    text = line.decode("utf-8", "replace")
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


#: States in which the conversation is not idle even with no reply owed.
_BUSY: typing.Final = frozenset({ClientState.BODY, ClientState.ERROR})


def write_timeout_error(timeouts: Timeouts, error: MailTimeout, *, content: bool) -> WriteTimeout:
    """The error for a write that did not finish (``content``: it held message content)."""
    if content:
        phase, what = Phase.DATA, "the message content"
    else:
        phase, what = Phase.COMMAND, "the commands"
    return WriteTimeout(
        f"the server did not take {what} in time: no progress for "
        f"{_seconds(timeouts.command)} or more than the total of "
        f"{_seconds(timeouts.command)} + size / data_rate ({error})",
        phase=phase.value,
    )


class _Tag:
    """What the pump attaches to each queued command (``CommandReplied.tag``)."""

    __slots__ = ("label", "observer", "owner", "phase", "verb")

    def __init__(self, verb: str, label: str, owner: object, phase: Phase) -> None:
        self.verb = verb
        self.label = label
        self.owner = owner
        self.phase = phase
        self.observer: CommandObserver | None = None  # set when the bytes are written


class Pump:
    """Pairs bytes read with the commands written, for one session.

    A driver writes every block :meth:`encode` yields for an :class:`Exchange`, then (when the
    exchange waits) alternates :meth:`poll` and :meth:`feed` until ``poll`` returns the reply
    events. :meth:`remaining` gives the time left on the current reply deadline, which starts
    when the driver first waits, i.e. once the bytes are written (the write has its own
    deadline, scaled by size); each reply restarts it for the next command (deadlines are per
    command and total, never per recv).
    """

    def __init__(
        self,
        connection: ClientConnection,
        observer: SessionObserver,
        timeouts: Timeouts,
        clock: Callable[[], float] = time.monotonic,
        *,
        greeting_hint: str | None = None,
    ) -> None:
        self.connection = connection
        #: Why a greeting may never come with this configuration (see ``_setup.port_hint``).
        self.greeting_hint = greeting_hint
        self.observer = observer
        # Telemetry off: every command gets the shared no-op observer, so the per-command hooks
        # are skipped altogether (decided once per session).
        self._silent: CommandObserver | None = (
            observer.command("NOOP") if isinstance(observer, NoopSessionObserver) else None
        )
        self._content_queued = False  # a BDAT or end-of-data is among the unwritten commands
        self.timeouts = timeouts
        self._clock = clock
        self._out: list[bytes] = []
        self._out_size = 0
        self._content_size = 0  # for the wire log
        self._unwritten: list[_Tag] = []
        self._events: list[CommandReplied] = []
        self._want: int | None = None
        self._phase = Phase.COMMAND
        self._deadline: float | None = None
        self._waiting = False
        self._in_auth = False
        self._closing_event: CommandReplied | None = None
        self._content_written = False  # the last block taken held message content
        self._debug = wire_log.isEnabledFor(logging.DEBUG)  # refreshed by encode()

    @property
    def server_closing(self) -> bool:
        """The server answered 421: it is closing the channel (RFC 5321 §3.8)."""
        return self.connection.closing

    @property
    def silent(self) -> bool:
        """Telemetry is off for this session: commands need no observer."""
        return self._silent is not None

    @property
    def buffered(self) -> bool:
        """Encoded output is waiting to be written."""
        return bool(self._out)

    @property
    def idle(self) -> bool:
        """Nothing is owed, buffered or half-written: the conversation is in step."""
        conn = self.connection
        return not self._out and conn.pending == 0 and conn.state not in _BUSY

    def verdict(self, error: BaseException | None) -> Verdict:
        """What ``error`` (``None``: success) leaves of the session (``_policy.after``)."""
        return after(error, server_closing=self.connection.closing, idle=self.idle)

    def use_capabilities(self, capabilities: Capabilities) -> None:
        """Apply what an EHLO reply negotiated to the connection (ENHANCEDSTATUSCODES)."""
        self.connection.enhanced_status_codes = capabilities.enhanced_status_codes

    # -- writing --------------------------------------------------------------------------------

    def encode(self, action: Exchange) -> tuple[bytes, ...]:
        """Encode ``action``'s frames; return the blocks to write now, in order.

        Output is kept for the next exchange's write until this one waits for replies or
        :data:`WRITE_BLOCK` bytes are buffered (memory stays bounded by one exchange's frames).
        A frame the connection refuses raises; the frames before it stay buffered.
        """
        conn = self.connection
        frames = action.frames
        if frames:  # the wire log's level, looked up once per exchange that writes
            self._debug = wire_log.isEnabledFor(logging.DEBUG)
        debug = self._debug
        owner, phase = action.owner, action.phase
        out, unwritten = self._out, self._unwritten  # take() clears them in place
        size = self._out_size
        # Dispatch on the exact frame type (frames are final attrs classes): cheaper than an
        # isinstance chain, and this runs for every frame of every message.
        for frame in frames:
            kind = type(frame)
            if kind not in _FRAME_TYPES:  # a subclass, or not a frame at all
                kind = _frame_type(frame)
            # Each tag is queued before its bytes are encoded (a refused frame leaves it).
            if kind is BodyChunk:
                chunk: BodyChunk = frame  # type: ignore[assignment]  # (typing.cast is a call)
                data = conn.send_body(chunk.data, canonical=chunk.canonical)
                self._content_size += len(chunk.data)
            elif kind is EndOfData:
                tag = _Tag("DATA.END", "DATA.END", owner, Phase.DATA)
                unwritten.append(tag)
                self._content_queued = True
                data = conn.end_body(tag)
                if debug:
                    wire_log.debug("C: <message content, %d bytes> .", self._content_size)
                self._content_size = 0
            elif kind is BdatChunk:
                bdat: BdatChunk = frame  # type: ignore[assignment]
                data_phase = Phase.DATA if bdat.last else phase
                self._content_queued = True
                tag = _Tag("BDAT", "BDAT", owner, data_phase)
                unwritten.append(tag)
                data = conn.send_bdat(
                    bdat.data, last=bdat.last, canonicalize=bdat.canonicalize, tag=tag
                )
                if debug:
                    last = " LAST" if bdat.last else ""
                    wire_log.debug("C: BDAT %d%s <chunk>", len(bdat.data), last)
            else:
                command: Command = frame  # type: ignore[assignment]
                verb = command.verb
                self._in_auth = kind is Auth or kind is AuthResponse
                tag = _Tag(verb, _label(command) if kind is Raw else verb, owner, phase)
                unwritten.append(tag)
                data = conn.send(command, tag)
                if debug:
                    wire_log.debug("C: %s", command.redacted().decode("utf-8", "replace").rstrip())
            out.append(data)
            size += len(data)
            self._out_size = size
        if action.replies != 0:
            self._want = action.replies
            self._events = []
            self._waiting = False  # the deadline starts at the first wait, after the write
            return (self.take(),) if out else ()
        if size >= WRITE_BLOCK:
            return (self.take(),)
        return ()

    def take(self) -> bytes:
        """The buffered output, to be written now; starts the spans of the commands in it."""
        self._content_written = self._content_size > 0 or self._content_queued
        self._content_queued = False
        data = b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        size = len(self._unwritten)
        silent = self._silent
        if silent is not None:
            for tag in self._unwritten:
                tag.observer = silent
            self._unwritten.clear()
            return data
        for tag in self._unwritten:
            if tag.owner is None:
                tag.observer = self.observer.command(tag.verb, pipeline_size=size)
            else:
                owner = typing.cast("TransactionObserver", tag.owner)
                tag.observer = self.observer.command(
                    tag.verb, pipeline_size=size, transaction=owner
                )
        self._unwritten.clear()
        return data

    def write_timeout(self, size: int) -> float | None:
        """Deadline for writing ``size`` bytes."""
        return self.timeouts.for_write(size)

    @property
    def stall_timeout(self) -> float | None:
        """How long a write may make no progress at all (the command deadline)."""
        return self.timeouts.command

    def write_timed_out(self, error: MailTimeout) -> WriteTimeout:
        """The error for a write that did not finish: which phase, and what was being sent."""
        return write_timeout_error(self.timeouts, error, content=self._content_written)

    def _awaited(self) -> str:
        if self._phase is Phase.GREETING:
            return "the greeting"
        tag = self.connection.oldest_tag
        label = tag.label if isinstance(tag, _Tag) else None
        if label == "DATA.END":
            return "the end-of-data reply"
        if label == "BDAT" and self._phase is Phase.DATA:
            return "the reply to BDAT LAST (the end of the data)"
        return f"the reply to {label}" if label else "a reply"

    def read_timed_out(self) -> ReadTimeout:
        """The error for a reply deadline that passed: its phase and what was awaited."""
        limit = self.timeouts.for_phase(self._phase)
        hint = self.greeting_hint if self._phase is Phase.GREETING else None
        error = ReadTimeout(
            f"{self._awaited()} did not come within the {self._phase.value} deadline "
            f"({_seconds(limit)})",
            phase=self._phase.value,
            hint=hint,
        )
        return self._with_partial(error)

    def _with_partial(self, error: _E) -> _E:
        """Attach the LMTP per-recipient replies that did arrive (RFC 2033 §4.2): those
        recipients' fates are known although the exchange broke."""
        received = {e.recipient: e.reply for e in self._events if e.recipient is not None}
        if received:
            error.recipient_replies = received
        return error

    # -- reading --------------------------------------------------------------------------------

    def greeting(self) -> None:
        """Prepare to read the greeting."""
        self._phase = Phase.GREETING
        self._waiting = False

    def _restart_deadline(self) -> float | None:
        """Start the deadline of the reply awaited now; returns its limit (None: no limit)."""
        tag = self.connection.oldest_tag
        if type(tag) is _Tag:
            self._phase = tag.phase
        limit = self.timeouts.for_phase(self._phase)
        self._deadline = None if limit is None else self._clock() + limit
        self._waiting = True
        return limit

    def remaining(self) -> float | None:
        """Seconds left before the current reply deadline.

        Raises:
            ReadTimeout: the deadline has passed.
        """
        if not self._waiting:
            limit = self._restart_deadline()
            if limit is None or limit > 0:  # just started: no second clock read
                return limit
            raise self.read_timed_out()
        if self._deadline is None:
            return None
        left = self._deadline - self._clock()
        if left <= 0:
            raise self.read_timed_out()
        return left

    def feed(self, data: bytes) -> None:
        """Give the connection bytes read from the stream (``b""`` for EOF)."""
        self.connection.receive_data(data)

    def poll_greeting(self) -> GreetingReceived | None:
        """The greeting once complete, else ``None`` (read more)."""
        event = self.connection.next_event()
        if event is NEED_DATA:
            return None
        if isinstance(event, GreetingReceived):
            self._log_reply(event.reply)
            return event
        if isinstance(event, ConnectionClosed):
            raise ConnectionLost("the server closed the connection before its greeting")
        raise RemoteProtocolError(f"unexpected {type(event).__name__} before the greeting")

    def poll(self) -> tuple[CommandReplied, ...] | None:
        """The events of the awaited replies once all arrived, else ``None`` (read more)."""
        conn = self.connection
        next_event = conn.next_event
        events = self._events
        # Telemetry silent and no wire log: pairing is all there is to do per reply (the
        # general _on_reply below does the same plus the hooks and the log).
        # As of the last exchange that wrote: a level changed meanwhile applies from the next.
        quiet = self._silent is not None and not self._debug
        while (conn.pending > 0) if self._want is None else (self._want > 0):
            event = next_event()
            if event is NEED_DATA:
                return None
            if type(event) is CommandReplied:
                if not quiet:
                    self._on_reply(event)
                    continue
                if event.reply.code == 421:
                    self._closing_event = event
                events.append(event)
                tag = event.tag
                if type(tag) is not _Tag or tag.observer is None:
                    raise LocalProtocolError("a reply arrived for no tracked command")
                if event.final and self._want is not None:
                    self._want -= 1
                self._waiting = False  # the next command's deadline starts at the next wait
            elif isinstance(event, ConnectionClosed):
                raise self._closed()
            else:
                raise RemoteProtocolError(f"unexpected {type(event).__name__}")
        self._events = []
        return tuple(events)

    def _closed(self) -> MailError:
        tags = [t for t in self.connection.outstanding if isinstance(t, _Tag)]
        waiting = ", ".join(t.label for t in tags) or "a reply"
        closing = self._closing_event
        if closing is None:
            lost = ConnectionLost(f"the server closed the connection while waiting for {waiting}")
            return self._with_partial(lost)
        # RFC 5321 §3.8: a 421 says the server is closing; in a pipelined group the later
        # commands get no reply. The 421 is the news, not the EOF.
        error = CommandRefused(
            closing.reply,
            closing.tag.label if isinstance(closing.tag, _Tag) else closing.command.verb,
            f"the server is closing the connection ({closing.reply}); no reply came for {waiting}",
        )
        self.fail(error)
        return error

    def _on_reply(self, event: CommandReplied) -> None:
        self._log_reply(event.reply)
        if event.reply.code == 421:
            self._closing_event = event
        self._events.append(event)
        tag = event.tag
        if not isinstance(tag, _Tag) or tag.observer is None:
            raise LocalProtocolError("a reply arrived for no tracked command")
        if self._silent is None:
            if event.recipient is not None:
                tag.observer.recipient_replied(event.recipient, event.reply)
            if event.final:
                tag.observer.replied(event.reply)
        if event.final and self._want is not None:
            self._want -= 1
        self._waiting = False  # the next command's deadline starts at the next wait

    def _log_reply(self, reply: Reply) -> None:
        if not wire_log.isEnabledFor(logging.DEBUG):
            return
        if self._in_auth and reply.code == 334:
            wire_log.debug("S: 334 <challenge redacted>")
            return
        for i, line in enumerate(reply.lines or (b"",)):
            sep = " " if i == len(reply.lines) - 1 or not reply.lines else "-"
            wire_log.debug("S: %d%s%s", reply.code, sep, _printable(line))

    def fail(self, error: BaseException) -> None:
        """Mark every written, unanswered command as failed and the connection as broken."""
        for tag in self.connection.outstanding:
            if isinstance(tag, _Tag) and tag.observer is not None:
                tag.observer.failed(error)
                tag.observer = None
        self._out.clear()
        self._out_size = 0
        self._unwritten.clear()
        self._content_queued = False
        if isinstance(error, MailError) and not isinstance(error, LocalProtocolError):
            self.connection.send_failed()
