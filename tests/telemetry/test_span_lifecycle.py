"""Span pairing and lifecycle: LMTP end-of-data replies, a TLS failure at connect, an interrupted QUIT."""

from __future__ import annotations

import typing
from collections.abc import Callable

import pytest
from opentelemetry.trace import StatusCode
from tests._support.interrupted import Boom, break_receive, hello, short, traced
from tests._support.modes import Mode, plain_builder
from tests._support.scripted_server import (
    Expect,
    ScriptedServer,
    WaitClose,
)

import mailsdk
from mailsdk import (
    Timeouts,
)

Scripted = Callable[..., ScriptedServer]


class _RecordingCommand:
    def __init__(self, log: list[tuple[object, ...]], verb: str) -> None:
        self.log, self.verb = log, verb

    def replied(self, reply: mailsdk.Reply) -> None:
        self.log.append((self.verb, "replied", reply.code))

    def recipient_replied(self, recipient: str, reply: mailsdk.Reply) -> None:
        self.log.append((self.verb, "recipient", recipient, reply.code))

    def failed(self, error: BaseException) -> None:
        self.log.append((self.verb, "failed", type(error).__name__))


class _RecordingSession:
    def __init__(self) -> None:
        self.log: list[tuple[object, ...]] = []

    def command(self, verb: str, *, pipeline_size: int = 1) -> _RecordingCommand:
        return _RecordingCommand(self.log, verb)


def test_lmtp_end_of_data_replies_are_not_paired_with_commands_pipelined_behind_the_body() -> None:
    from mailsdk.client._pump import Pump
    from mailsdk.flows import BodyChunk, Exchange
    from mailsdk.protocol.commands import Data, EndOfData, Lhlo, MailFrom, RcptTo
    from mailsdk.protocol.connection import ClientConnection
    from mailsdk.protocol.dialect import Dialect

    observer = _RecordingSession()
    pump = Pump(
        ClientConnection(dialect=Dialect.LMTP), typing.cast(typing.Any, observer), Timeouts()
    )

    def exchange(action: Exchange, replies: bytes) -> None:
        assert b"".join(pump.encode(action))
        pump.feed(replies)
        assert pump.poll() is not None

    pump.greeting()
    pump.feed(b"220 lmtp\r\n")
    assert pump.poll_greeting() is not None
    exchange(Exchange((Lhlo("c.test"),)), b"250 PIPELINING\r\n")
    commands = (MailFrom("a@x.test"), RcptTo("b@y.test"), RcptTo("c@y.test"), Data())
    exchange(Exchange(commands), b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    observer.log.clear()
    exchange(
        Exchange((BodyChunk(b"hi\r\n"), EndOfData(), MailFrom("next@x.test"))),
        b"250 2.0.0 b delivered\r\n452 4.2.2 c over quota\r\n250 2.1.0 next ok\r\n",
    )
    assert observer.log == [
        ("DATA.END", "recipient", "b@y.test", 250),
        ("DATA.END", "recipient", "c@y.test", 452),
        ("DATA.END", "replied", 452),
        ("MAIL", "replied", 250),
    ]


async def test_tls_context_failure_at_connect_ends_the_session_span(mode: Mode) -> None:
    from mailsdk.transport import TlsSettings

    settings = TlsSettings(ca_file="/nonexistent/mailsdk-review/ca.pem")
    builder, exporter = traced(
        plain_builder("127.0.0.1", 9).with_tls("starttls", settings=settings)
    )
    with pytest.raises(mailsdk.MailError):
        await mode.connect(builder)
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    assert spans[0].status.status_code is StatusCode.ERROR


async def test_interrupted_quit_on_exit_still_ends_the_session_span(
    mode: Mode, scripted: Scripted
) -> None:
    server = scripted([*hello("8BITMIME"), Expect(b"QUIT"), WaitClose()])
    builder, exporter = traced(short(server))
    session = await mode.connect(builder)
    break_receive(session)
    with pytest.raises(Boom):
        async with session:
            pass
    assert session.closed
    assert [s.name for s in exporter.get_finished_spans()][-1] == "smtp.session"
