"""Review findings in flows/client/cli: each test failed before its fix.

Scripted loopback servers (both modes unless the finding is asyncio-only), a few sans-IO checks.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import typing
from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from tests._support.modes import Mode, SessionProxy, plain_builder
from tests._support.scripted_server import (
    Close,
    Expect,
    ReadData,
    ScriptedServer,
    Send,
    Sleep,
    WaitClose,
    ehlo_reply,
)

import mailsdk
from mailsdk import (
    ClientBuilder,
    ConnectionLost,
    InvalidInputError,
    RecipientsRefused,
    SenderRefused,
    Timeouts,
)

Scripted = Callable[..., ScriptedServer]
RAW = b"Subject: review\r\n\r\nreview\r\n"


def hello(*keywords: str) -> list[typing.Any]:
    return [Send(b"220 mx.test ESMTP\r\n"), Expect(b"EHLO"), Send(ehlo_reply(*keywords))]


def short(server: ScriptedServer) -> ClientBuilder:
    timeouts = Timeouts(connect=2.0, greeting=2.0, command=2.0, tls=2.0, data=2.0, quit=0.5)
    return plain_builder(server.host, server.port).with_timeouts(timeouts)


def traced(builder: ClientBuilder) -> tuple[ClientBuilder, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return builder.with_opentelemetry(tracer_provider=provider), exporter


class Boom(BaseException):
    """Stands for KeyboardInterrupt/SystemExit: a non-MailError that escapes mid-exchange."""


class _FailingReceive:
    """Wraps a driver's stream: ``receive`` raises :class:`Boom` (sync or async)."""

    def __init__(self, inner: typing.Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._inner, name)

    def receive(self, max_bytes: int, timeout: float | None) -> typing.Any:
        raise Boom

    async def areceive(self, max_bytes: int, timeout: float | None) -> bytes:
        raise Boom


def _break_receive(session: SessionProxy) -> None:
    driver = session.inner._driver
    wrapper = _FailingReceive(driver.stream)
    if isinstance(session.inner, mailsdk.AsyncSession):
        wrapper.receive = wrapper.areceive  # type: ignore[method-assign]
    driver.stream = wrapper


# -- 1. cancellation / non-MailError mid-exchange ---------------------------------------------------


async def test_cancelled_call_closes_the_session(scripted: Scripted) -> None:
    """asyncio.timeout() around a call mid-exchange: the session must be closed, not left
    waiting for a reply that would then be paired with the next command."""
    server = scripted(
        [
            *hello("8BITMIME"),
            Expect(b"NOOP"),
            Sleep(0.5),
            Send(b"250 late reply to the first NOOP\r\n"),
            WaitClose(),
        ]
    )
    builder, exporter = traced(short(server))
    session = await builder.build_async().connect()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await session.noop()
    assert session.closed
    with pytest.raises(ConnectionLost):
        await session.noop()
    await session.aclose()
    noop = [s for s in exporter.get_finished_spans() if s.name == "SMTP NOOP"]
    assert len(noop) == 1 and noop[0].status.status_code is StatusCode.ERROR


async def test_non_mail_error_mid_exchange_closes_the_session(
    mode: Mode, scripted: Scripted
) -> None:
    server = scripted([*hello("8BITMIME"), Expect(b"NOOP"), WaitClose()])
    session = await mode.connect(short(server))
    _break_receive(session)
    with pytest.raises(Boom):
        await session.noop()
    assert session.closed
    with pytest.raises(ConnectionLost):
        await session.noop()
    await session.close()


# -- 2. a failing RSET must not mask the refusal that triggered it ----------------------------------


async def test_connection_lost_during_rset_keeps_the_sender_refusal(
    mode: Mode, scripted: Scripted
) -> None:
    server = scripted(
        [*hello("8BITMIME"), Expect(b"MAIL"), Send(b"550 5.7.1 sender rejected\r\n"), Close()]
    )
    session = await mode.connect(short(server))
    with pytest.raises(SenderRefused) as info:
        await session.sendmail("a@example.org", "b@example.com", RAW)
    assert info.value.reply.code == 550
    assert session.closed
    await session.close()


async def test_connection_lost_during_rset_keeps_the_recipients_refusal(
    mode: Mode, scripted: Scripted
) -> None:
    server = scripted(
        [
            *hello("PIPELINING"),
            Expect(b"MAIL"),
            Expect(b"RCPT"),
            Expect(b"DATA"),
            Send(b"250 ok\r\n550 5.1.1 unknown\r\n354 go ahead anyway\r\n"),
            ReadData(),
            Send(b"554 5.5.1 no valid recipients\r\n"),
            Close(),
        ]
    )
    session = await mode.connect(short(server))
    with pytest.raises(RecipientsRefused) as info:
        await session.sendmail("a@example.org", "b@example.com", RAW)
    assert info.value.reply.code == 550
    assert session.closed
    await session.close()


# -- 3. a 421 to RCPT: the server is closing, the client must stop talking --------------------------


@pytest.mark.parametrize("position", ["first", "second"])
async def test_421_to_a_recipient_without_pipelining_stops_the_transaction(
    mode: Mode, scripted: Scripted, position: str
) -> None:
    first = b"421 4.3.2 shutting down\r\n" if position == "first" else b"250 2.1.5 ok\r\n"
    steps = [*hello("8BITMIME"), Expect(b"MAIL"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Send(first)]
    if position == "second":
        steps += [Expect(b"RCPT"), Send(b"421 4.3.2 shutting down\r\n")]
    server = scripted([*steps, WaitClose()])
    session = await mode.connect(short(server))
    with pytest.raises(RecipientsRefused) as info:
        await session.sendmail("a@example.org", ["b@example.com", "c@example.com"], RAW)
    assert info.value.reply.code == 421
    assert session.closed
    server.stop()
    assert server.received.count(b"RCPT") == (1 if position == "first" else 2)
    assert b"DATA" not in server.received
    assert b"RSET" not in server.received
    assert b"QUIT" not in server.received


# -- 4. messages parsed from str with non-ASCII text: no UnicodeEncodeError -------------------------


def test_str_parsed_message_with_utf8_headers_is_prepared_with_smtputf8() -> None:
    from mailsdk.flows import prepare_message

    msg = email.message_from_string(
        "From: Jörg <j@example.org>\nTo: z@example.com\nSubject: héllo\n\nbody\n",
        policy=email.policy.default,
    )
    prepared = prepare_message(msg)
    assert prepared.smtputf8
    assert prepared.data.startswith("From: Jörg <j@example.org>\r\n".encode())


@pytest.mark.parametrize("policy", [email.policy.default, email.policy.compat32])
def test_undecodable_str_body_is_an_invalid_input_error(policy: email.policy.Policy) -> None:
    from mailsdk.flows import prepare_message

    msg = email.message_from_string(
        "From: j@example.org\nTo: z@example.com\n\nbödy\n", policy=policy
    )
    with pytest.raises(InvalidInputError):
        prepare_message(msg)


async def test_connection_lost_while_cancelling_auth_keeps_the_auth_error(
    mode: Mode, scripted: Scripted
) -> None:
    server = scripted(
        [
            *hello("AUTH LOGIN"),
            Expect(b"AUTH LOGIN"),
            Send(b"334 !!!not base64!!!\r\n"),
            Expect(b"*"),
            Close(),
        ]
    )
    builder = short(server).with_credentials("u", "p", allow_plaintext=True, mechanisms=["LOGIN"])
    with pytest.raises(mailsdk.AuthError) as info:
        await mode.connect(builder)
    assert "base64" in str(info.value)


async def test_421_to_rset_closes_the_session(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [
            *hello("8BITMIME"),
            Expect(b"MAIL"),
            Send(b"550 5.7.1 sender rejected\r\n"),
            Expect(b"RSET"),
            Send(b"421 4.3.2 closing\r\n"),
            WaitClose(),
        ]
    )
    session = await mode.connect(short(server))
    with pytest.raises(SenderRefused):
        await session.sendmail("a@example.org", "b@example.com", RAW)
    assert session.closed
    await session.close()
    server.stop()
    assert b"QUIT" not in server.received


# -- 5. the reply deadline starts once the command/body is written ----------------------------------


class _SlowLinkStream:
    """A blocking Stream on a fake clock: writing costs ``len / rate`` seconds, replies are
    instant (scripted)."""

    def __init__(self, clock: list[float], rate: float, replies: list[bytes]) -> None:
        from mailsdk.transport import StreamInfo

        self.clock = clock
        self.rate = rate
        self.replies = replies
        self.info = StreamInfo(peer_address=None, local_address=None, transport="tcp")
        self.is_tls = False

    def send_all(self, data: bytes, timeout: float | None, *, stall: float | None = None) -> None:
        cost = len(data) / self.rate
        assert timeout is None or cost < timeout, "the write itself is within its deadline"
        self.clock[0] += cost

    def receive(self, max_bytes: int, timeout: float | None) -> bytes:
        return self.replies.pop(0)

    def channel_binding(self, kind: str) -> bytes | None:
        return None

    def close(self) -> None:
        pass


def test_data_reply_deadline_is_not_eaten_by_a_slow_but_allowed_body_write() -> None:
    from mailsdk.client._pump import Pump
    from mailsdk.client._sync_driver import SyncDriver
    from mailsdk.flows import greet, hello, prepare_raw, transaction
    from mailsdk.protocol.connection import ClientConnection
    from mailsdk.telemetry import NoopInstrumentation

    clock = [0.0]
    timeouts = Timeouts()  # command 300 s, data 600 s, data_rate 10 KiB/s
    body = (b"x" * 998 + b"\r\n") * 4000  # 4 MB: the write may take 300 + 390 s
    stream = _SlowLinkStream(
        clock,
        rate=6000.0,  # about 667 s for the body: slower than 600 s, within the write deadline
        replies=[
            b"220 mx\r\n",
            b"250 mx\r\n",
            b"250 ok\r\n",
            b"250 ok\r\n",
            b"354 go\r\n",
            b"250 2.0.0 queued\r\n",
        ],
    )
    observer = NoopInstrumentation().session(
        server_address="mx", server_port=25, transport="tcp", protocol="smtp"
    )
    pump = Pump(ClientConnection(), observer, timeouts, clock=lambda: clock[0])
    driver = SyncDriver(
        typing.cast("mailsdk.transport.Stream", stream),
        pump,
        tls_context=None,
        server_hostname=None,
        token_provider=None,
    )

    def flow() -> typing.Generator[typing.Any, object, mailsdk.SendResult]:
        yield from greet()
        caps = yield from hello("client.test")
        return (yield from transaction(prepare_raw("a@example.org", ["b@example.com"], body), caps))

    result = driver.run(flow())
    assert result.reply.code == 250


# -- 6. the demo's exit code -----------------------------------------------------------------------


def test_demo_exits_non_zero_when_a_message_failed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from email.message import EmailMessage

    from mailsdk.cli import demo
    from mailsdk.cli import main as cli_main

    original = demo.demo_messages

    def with_a_failure() -> list[EmailMessage]:
        broken = EmailMessage()
        broken["From"] = "bot@example.org"  # no To/Cc/Bcc: InvalidInputError, reported FAILED
        broken["Subject"] = "no recipients"
        broken.set_content("x\n")
        return [*original(), broken]

    monkeypatch.setattr(demo, "demo_messages", with_a_failure)
    code = cli_main(["demo"])
    out = capsys.readouterr().out
    assert "FAILED   InvalidInputError" in out
    assert code == 1, out


# -- 7. telemetry pairing: an LMTP end-of-data followed by pipelined commands -----------------------


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


# -- 8. any 421 means the server is closing the channel (RFC 5321 §3.8) ----------------------------


async def test_421_to_a_raw_command_closes_the_session(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [*hello("8BITMIME"), Expect(b"XFOO"), Send(b"421 4.3.2 shutting down\r\n"), WaitClose()]
    )
    async with mode.session(short(server)) as session:
        reply = await session.execute("XFOO")
        assert reply.code == 421
        assert session.closed
    server.stop()
    assert b"QUIT" not in server.received


async def test_421_to_one_lmtp_recipient_returns_the_result_and_closes(
    mode: Mode, scripted: Scripted
) -> None:
    server = scripted(
        [
            Send(b"220 lmtp.test LMTP\r\n"),
            Expect(b"LHLO"),
            Send(ehlo_reply("8BITMIME")),
            Expect(b"MAIL"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT"),
            Send(b"250 ok\r\n"),
            Expect(b"DATA"),
            Send(b"354 go\r\n"),
            ReadData(),
            Send(b"250 2.0.0 b delivered\r\n421 4.3.2 shutting down\r\n"),
            WaitClose(),
        ]
    )
    async with mode.session(short(server).with_lmtp()) as session:
        result = await session.sendmail("a@example.org", ["b@example.com", "c@example.com"], RAW)
        assert result.accepted == ("b@example.com",)
        assert result.refused["c@example.com"].code == 421
        assert session.closed
    server.stop()
    assert b"QUIT" not in server.received


# -- 9. a TLS settings failure at connect still ends the session span ------------------------------


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


# -- 10. send(): half-given credentials are not silently dropped -----------------------------------


@pytest.mark.parametrize(
    ("username", "password"), [("me@example.org", None), (None, "s3cret-review")]
)
async def test_send_with_only_half_of_the_credentials_is_a_configuration_error(
    mode: Mode, username: str | None, password: str | None
) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.com"
    msg.set_content("x\n")
    with pytest.raises(mailsdk.ConfigurationError):
        # Port 9 (discard) on loopback: without the check this would try to connect.
        await mode.send(
            msg, host="127.0.0.1", port=9, tls="none", username=username, password=password
        )


# -- 11. a raw SASL line never reaches an exception message ----------------------------------------


async def test_connection_lost_after_a_raw_sasl_line_does_not_show_it(
    mode: Mode, scripted: Scripted
) -> None:
    secret = "czNjcmV0LXJldmlldy1wdw=="  # base64 of a password, sent with execute()
    server = scripted(
        [
            *hello("AUTH LOGIN"),
            Expect(b"AUTH LOGIN"),
            Send(b"334 UGFzc3dvcmQ6\r\n"),
            Expect(b"czNj"),
            Close(),
        ]
    )
    session = await mode.connect(short(server))
    await session.execute("AUTH LOGIN")
    with pytest.raises(ConnectionLost) as info:
        await session.execute(secret)
    assert secret.upper() not in str(info.value).upper()
    await session.close()


# -- 12. SendResult.queue_id recognises the documented "<id> Message accepted" form ----------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.0.0 x3KFaQ8e012345 Message accepted for delivery", "x3KFaQ8e012345"),
        ("x3KFaQ8e012345 Message accepted for delivery", "x3KFaQ8e012345"),
        ("2.0.0 Ok: queued as 4Xyz", "4Xyz"),
        ("OK id=1abc-XYZ", "1abc-XYZ"),
        ("2.0.0 Ok", None),
        ("Message accepted", None),
    ],
)
def test_queue_id_forms(text: str, expected: str | None) -> None:
    result = mailsdk.SendResult(
        sender="a@example.org",
        accepted=("b@example.com",),
        reply=mailsdk.Reply.build(250, text),
        size=1,
    )
    assert result.queue_id == expected


# -- 13. an interrupted QUIT on leaving the block still ends the session span ----------------------


async def test_interrupted_quit_on_exit_still_ends_the_session_span(
    mode: Mode, scripted: Scripted
) -> None:
    server = scripted([*hello("8BITMIME"), Expect(b"QUIT"), WaitClose()])
    builder, exporter = traced(short(server))
    session = await mode.connect(builder)
    _break_receive(session)
    with pytest.raises(Boom):
        async with session:
            pass
    assert session.closed
    assert [s.name for s in exporter.get_finished_spans()][-1] == "smtp.session"


# -- 14. two concurrent calls on one AsyncSession ---------------------------------------------------


async def test_concurrent_calls_on_one_async_session_are_refused_cleanly(
    scripted: Scripted,
) -> None:
    server = scripted(
        [
            *hello("8BITMIME"),
            Expect(b"NOOP"),
            Sleep(0.2),
            Send(b"250 one\r\n"),
            Expect(b"NOOP"),
            Send(b"250 two\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
        ]
    )
    async with await short(server).build_async().connect() as session:
        first, second = await asyncio.gather(session.noop(), session.noop(), return_exceptions=True)
        assert isinstance(first, mailsdk.Reply) and first.text == "one"
        assert isinstance(second, mailsdk.LocalProtocolError)
        assert not session.closed
        assert (await session.noop()).text == "two"
    server.check()


# -- 15. an invalid chunk size is refused up front, not after MAIL/RCPT ----------------------------


def test_non_positive_chunk_size_is_refused_when_the_options_are_built() -> None:
    from mailsdk.flows import TransactionOptions

    with pytest.raises(mailsdk.ConfigurationError):
        TransactionOptions(chunk_size=0)


# -- 16. the default EHLO name's DNS lookup never blocks the event loop -----------------------------


async def test_async_connect_resolves_the_fqdn_off_the_event_loop(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import threading

    from mailsdk.client import _hostname as _common

    threads: list[threading.Thread] = []

    def fake_getfqdn(name: str = "") -> str:
        threads.append(threading.current_thread())
        return "client.review.example"

    monkeypatch.setattr(socket, "getfqdn", fake_getfqdn)
    _common.local_fqdn.cache_clear()
    try:
        server = scripted([*hello("8BITMIME"), Expect(b"QUIT"), Send(b"221 bye\r\n")])
        builder = ClientBuilder.smtp(server.host, server.port).with_tls("none").with_timeouts(2.0)
        async with await builder.build_async().connect():
            pass
        server.check()
        assert server.lines[0] == b"EHLO client.review.example\r\n"
        assert threads and threads[0] is not threading.main_thread()
    finally:
        _common.local_fqdn.cache_clear()
