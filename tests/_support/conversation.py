"""Conversation: a sans-IO script runner for ClientConnection tests.

Feed server bytes, assert the exact client bytes and the exact events (the mailsdk take on
h11's ``ConnectionPair`` and smtpproto's ``feed_bytes``). No sockets, no event loop.

Example::

    conv = Conversation()
    conv.server(b"220 mx ESMTP\\r\\n", GreetingReceived(Reply(220, (b"mx ESMTP",))))
    conv.client(Ehlo("me"), b"EHLO me\\r\\n")
"""

from __future__ import annotations

from mailsdk.protocol import (
    NEED_DATA,
    ClientConnection,
    Command,
    CommandReplied,
    ConnectionClosed,
    Dialect,
    Ehlo,
    Event,
    GreetingReceived,
    Lhlo,
    Reply,
    ReplyLimits,
)

__all__ = ["Conversation", "replied"]


def replied(
    command: Command,
    code: int,
    *texts: str,
    recipient: str | None = None,
    final: bool = True,
) -> CommandReplied:
    """Build the expected ``CommandReplied`` for ``command`` answered by ``code texts``
    (``final=False`` for an LMTP per-recipient reply that is not the command's last)."""
    return CommandReplied(command, Reply.build(code, *texts), recipient, final)


class Conversation:
    """Drive one :class:`ClientConnection` through a scripted exchange.

    Args:
        dialect: SMTP or LMTP.
        limits: optional reply limits.
    """

    def __init__(self, dialect: Dialect = Dialect.SMTP, limits: ReplyLimits | None = None) -> None:
        self.conn = (
            ClientConnection(dialect=dialect, limits=limits)
            if limits is not None
            else ClientConnection(dialect=dialect)
        )
        #: Every byte the client produced, in order (what a driver would have written).
        self.wire = bytearray()

    # -- client side ----------------------------------------------------------------------------

    def client(self, command: Command, expected: bytes | None = None) -> bytes:
        """Send ``command``; assert its wire bytes when ``expected`` is given."""
        data = self.conn.send(command)
        if expected is not None:
            assert data == expected, f"{command!r}: {data!r} != {expected!r}"
        self.wire += data
        return data

    def body(self, chunk: bytes, expected: bytes | None = None) -> bytes:
        """Send a body chunk; assert the encoded bytes when ``expected`` is given."""
        data = self.conn.send_body(chunk)
        if expected is not None:
            assert data == expected, f"{data!r} != {expected!r}"
        self.wire += data
        return data

    def end_body(self, expected: bytes | None = None) -> bytes:
        """End the body; assert the terminator bytes when ``expected`` is given."""
        data = self.conn.end_body()
        if expected is not None:
            assert data == expected, f"{data!r} != {expected!r}"
        self.wire += data
        return data

    def bdat(self, chunk: bytes, *, last: bool, expected: bytes | None = None) -> bytes:
        """Send a BDAT chunk; assert header plus payload when ``expected`` is given."""
        data = self.conn.send_bdat(chunk, last=last)
        if expected is not None:
            assert data == expected, f"{data!r} != {expected!r}"
        self.wire += data
        return data

    # -- server side ----------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """Feed server bytes and return every event they complete (until NEED_DATA)."""
        self.conn.receive_data(data)
        events: list[Event] = []
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA:
                return events
            events.append(event)
            if isinstance(event, ConnectionClosed):  # it repeats forever: stop at the first
                return events

    def server(self, data: bytes, *expected: Event) -> list[Event]:
        """Feed server bytes and assert the exact events produced."""
        events = self.receive(data)
        assert events == list(expected), f"events {events!r} != expected {list(expected)!r}"
        return events

    # -- shortcuts ------------------------------------------------------------------------------

    def greet(self, banner: bytes = b"220 mx.example ESMTP ready\r\n") -> None:
        """Receive a greeting and assert it is reported."""
        events = self.receive(banner)
        assert len(events) == 1
        assert isinstance(events[0], GreetingReceived)

    def hello(self, name: str = "client.example", capabilities: tuple[str, ...] = ()) -> None:
        """Greeting plus EHLO (LHLO for LMTP) answered by 250 with ``capabilities``."""
        self.greet()
        lmtp = self.conn.dialect is Dialect.LMTP
        command: Command = Lhlo(name) if lmtp else Ehlo(name)
        self.client(command, f"{command.verb} {name}\r\n".encode())
        lines = ["mx.example", *capabilities]
        wire = b"".join(
            b"250%s%s\r\n" % (b"-" if i < len(lines) - 1 else b" ", line.encode())
            for i, line in enumerate(lines)
        )
        self.server(wire, replied(command, 250, *lines))
