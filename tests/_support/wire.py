"""A sans-IO runner for flows that asserts the exact bytes of every write.

Not collected. :class:`WireRun` plays a driver with a real :class:`ClientConnection` and no
sockets: it encodes each ``Exchange``'s frames, buffers those that wait for no reply (as the
real pump does), and on every wait compares the buffered write with the next scripted step,
then feeds that step's server bytes. ``Pull`` hands out the given items, ``Report`` values
are collected. A step whose reply is :data:`DROP` makes the server close the connection; one
whose reply is :data:`STALL` makes the read time out.
"""

from __future__ import annotations

import typing
from collections.abc import Generator, Iterable, Iterator

import attrs

from mailsdk.errors import CommandRefused, ConnectionLost, MailError, ReadTimeout
from mailsdk.flows import Action, BdatChunk, BodyChunk, Close, Delivery, Exchange, Pull, Report
from mailsdk.protocol.commands import Ehlo, EndOfData, Lhlo
from mailsdk.protocol.connection import ClientConnection
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.events import NEED_DATA, CommandReplied, ConnectionClosed

__all__ = ["DROP", "STALL", "Step", "WireRun"]

DROP: typing.Final = b"<drop>"
STALL: typing.Final = b"<stall>"


@attrs.frozen
class Step:
    """One write the client must make (``b""``: none, just more replies) and the answer."""

    write: bytes
    reply: bytes


class WireRun:
    """Runs a flow against a script of exact writes and server replies."""

    def __init__(self, *, dialect: Dialect = Dialect.SMTP, ehlo: bytes = b"250 mx\r\n") -> None:
        self.conn = ClientConnection(dialect=dialect)
        self.conn.receive_data(b"220 mx ESMTP\r\n")
        self.conn.next_event()
        hello = Lhlo("client.test") if dialect is Dialect.LMTP else Ehlo("client.test")
        self.conn.send(hello)
        self.conn.receive_data(ehlo)
        self.conn.next_event()
        self.out = bytearray()
        self.writes: list[bytes] = []
        self.reported: list[object] = []
        self.pulled: list[bool] = []  # the ``prepare`` flag of every Pull
        self.broken = False
        self.closing: CommandReplied | None = None
        self.closed = False  # the flow asked for the connection to be closed

    def run(
        self,
        flow: Generator[Action, object, object],
        items: Iterable[Delivery],
        steps: Iterable[Step],
    ) -> list[object]:
        """Run ``flow`` to its end; every step must be used; returns the reported values."""
        source: Iterator[Delivery] = iter(items)
        script = list(steps)
        result: object = None
        failure: MailError | None = None
        while True:
            try:
                action = flow.send(result) if failure is None else flow.throw(failure)
            except StopIteration:
                break
            result, failure = None, None
            try:
                result = self._perform(action, source, script)
            except MailError as exc:
                self.broken = True
                failure = exc
        assert not script, f"unused steps: {script}"
        return self.reported

    def _perform(self, action: Action, source: Iterator[Delivery], script: list[Step]) -> object:
        if isinstance(action, Pull):
            self.pulled.append(action.prepare)
            return next(source, None)
        if isinstance(action, Report):
            self.reported.append(action.value)
            return None
        if isinstance(action, Close):
            self.broken = True
            self.closed = True
            return None
        assert isinstance(action, Exchange), action
        if self.broken:
            raise ConnectionLost("the connection was closed")
        for frame in action.frames:
            if isinstance(frame, BodyChunk):
                self.out += self.conn.send_body(frame.data)
            elif isinstance(frame, BdatChunk):
                self.out += self.conn.send_bdat(frame.data, last=frame.last)
            elif isinstance(frame, EndOfData):
                self.out += self.conn.end_body()
            else:
                self.out += self.conn.send(frame)
        if action.replies == 0:
            return ()
        if self.out:
            self.writes.append(bytes(self.out))
            step = script.pop(0)
            assert bytes(self.out) == step.write, (bytes(self.out), step.write)
            self.out.clear()
            self._feed(step)
        want = action.replies
        events: list[CommandReplied] = []
        while (self.conn.pending > 0) if want is None else (want > 0):
            event = self.conn.next_event()
            if event is NEED_DATA:
                step = script.pop(0)
                assert step.write == b"", f"expected a write of {step.write!r}"
                self._feed(step)
                continue
            if isinstance(event, ConnectionClosed):
                self.conn.send_failed()
                if self.closing is not None:  # as the pump: the 421 is the news, not the EOF
                    raise CommandRefused(self.closing.reply, self.closing.command.verb)
                raise ConnectionLost("the server closed the connection")
            assert isinstance(event, CommandReplied), event
            if event.reply.code == 421:
                self.closing = event
            events.append(event)
            if event.final and want is not None:
                want -= 1
        return tuple(events)

    def _feed(self, step: Step) -> None:
        if step.reply == STALL:
            self.conn.send_failed()
            raise ReadTimeout("no reply within the data deadline", phase="data")
        self.conn.receive_data(b"" if step.reply == DROP else step.reply)
