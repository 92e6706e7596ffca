"""Hostile servers (scripted, real loopback sockets), both modes: every scenario ends in its
documented typed error, or in success, within its deadline.

Greeting (garbage, silent, trickling), replies (unterminated line, endless multi-line, bad and
mixed codes, non-UTF-8 text, malformed EHLO keywords), deadlines as totals, disconnects (mid-DATA,
reset), 421 at every step, STARTTLS injection and garbage instead of a handshake, an AUTH loop.
"""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Callable

import pytest
from tests._support.modes import Mode, plain_builder
from tests._support.scripted_server import (
    Close,
    Expect,
    Loop,
    ReadBytes,
    ReadData,
    Reset,
    ScriptedServer,
    Send,
    Sleep,
    StartTls,
    Trickle,
    WaitClose,
    ehlo_reply,
)

from mailsdk import (
    AuthError,
    ClientBuilder,
    ConnectionLost,
    DataRefused,
    DeliveryUnknown,
    GreetingRefused,
    HeloRefused,
    MailError,
    MailTimeout,
    ReadTimeout,
    RecipientsRefused,
    RemoteProtocolError,
    ReplyError,
    SenderRefused,
    StartTLSRefused,
    Timeouts,
    TLSError,
    WriteTimeout,
)
from mailsdk.transport import TlsSettings

Scripted = Callable[..., ScriptedServer]
DEADLINE = 1.0
#: Scheduling slack for "the call ended near its deadline" (a correctness check, not a benchmark).
SLACK = 1.0
RAW = b"Subject: h\r\n\r\nhostile\r\n"
HELLO = [Send(b"220 mx.test ESMTP\r\n"), Expect(b"EHLO"), Send(ehlo_reply("8BITMIME"))]


def short(server: ScriptedServer) -> ClientBuilder:
    timeouts = Timeouts(
        connect=2.0, greeting=DEADLINE, command=DEADLINE, tls=DEADLINE, data=DEADLINE, quit=0.5
    )
    return plain_builder(server.host, server.port).with_timeouts(timeouts)


async def expect_error(mode: Mode, builder: ClientBuilder, error: type[MailError]) -> MailError:
    with pytest.raises(error) as info:
        await mode.connect(builder)
    return info.value


# -- greeting -------------------------------------------------------------------------------------


async def test_garbage_greeting(mode: Mode, scripted: Scripted) -> None:
    server = scripted([Send(b"\x00\x16\x03\x01garbage that is no reply\r\n"), WaitClose()])
    await expect_error(mode, short(server), RemoteProtocolError)


async def test_silent_greeting_times_out(mode: Mode, scripted: Scripted) -> None:
    server = scripted([WaitClose()])
    started = time.monotonic()
    error = await expect_error(mode, short(server), ReadTimeout)
    elapsed = time.monotonic() - started
    assert DEADLINE * 0.9 <= elapsed < DEADLINE + SLACK
    assert isinstance(error, TimeoutError)
    assert isinstance(error, MailTimeout) and error.phase == "greeting"
    assert "the greeting did not come within the greeting deadline (1 s)" in str(error)
    assert error.hint is None  # a loopback test port says nothing about TLS


async def test_a_silent_greeting_on_an_implicit_tls_port_carries_a_hint(
    mode: Mode, scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An implicit-TLS server waits for a ClientHello that a plaintext client never sends.
    from mailsdk.client import _setup

    server = scripted([WaitClose()])
    monkeypatch.setattr(_setup, "IMPLICIT_TLS_PORTS", frozenset({server.port}))
    error = await expect_error(mode, short(server), ReadTimeout)
    assert isinstance(error, MailTimeout) and error.phase == "greeting"
    assert error.hint is not None and "with_tls('implicit')" in error.hint
    assert f"port {server.port} usually expects TLS" in str(error)


async def test_implicit_tls_against_a_plaintext_port_carries_a_hint(
    mode: Mode,
    scripted: Scripted,
    monkeypatch: pytest.MonkeyPatch,
    client_tls: TlsSettings,
) -> None:
    # The plaintext banner arrives where the TLS handshake expects a ServerHello.
    from mailsdk.client import _setup

    server = scripted([Send(b"220 mx.test ESMTP\r\n"), WaitClose()])
    monkeypatch.setattr(_setup, "PLAINTEXT_FIRST_PORTS", frozenset({server.port}))
    builder = short(server).with_tls("implicit", settings=client_tls, server_hostname="localhost")
    with pytest.raises((TLSError, MailTimeout)) as info:
        await mode.connect(builder)
    assert "with_tls('starttls')" in str(info.value)


async def test_trickling_greeting_cannot_extend_the_deadline(
    mode: Mode, scripted: Scripted
) -> None:
    # one byte every 0.2 s: each recv succeeds, only a *total* deadline stops it
    server = scripted([Trickle(b"220 slow.test ESMTP hello\r\n", 0.2)])
    started = time.monotonic()
    await expect_error(mode, short(server), ReadTimeout)
    assert time.monotonic() - started < DEADLINE + SLACK


async def test_trickling_reply_to_a_command(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [Send(b"220 mx.test\r\n"), Expect(b"EHLO"), Trickle(ehlo_reply("PIPELINING"), 0.2)]
    )
    started = time.monotonic()
    error = await expect_error(mode, short(server), ReadTimeout)
    assert time.monotonic() - started < DEADLINE + SLACK
    assert isinstance(error, MailTimeout) and error.phase == "command"
    assert "the reply to EHLO did not come within the command deadline" in str(error)


async def test_silent_after_data_times_out_on_the_data_deadline(
    mode: Mode, scripted: Scripted
) -> None:
    server = scripted(
        [
            *HELLO,
            Expect(b"MAIL"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT"),
            Send(b"250 ok\r\n"),
            Expect(b"DATA"),
            Send(b"354 go\r\n"),
            ReadData(),
            WaitClose(),
        ]
    )
    session = await mode.connect(short(server))
    started = time.monotonic()
    # The end of the data was written and no reply came: the message may have been delivered.
    with pytest.raises(DeliveryUnknown) as info:
        await session.sendmail("a@example.org", "b@example.com", RAW)
    assert isinstance(info.value, ConnectionLost)
    assert isinstance(info.value.cause, ReadTimeout)
    assert time.monotonic() - started < DEADLINE + SLACK
    assert session.closed
    assert info.value.cause.phase == "data"
    assert "the end-of-data reply did not come within the data deadline (1 s)" in str(
        info.value.cause
    )


@pytest.mark.parametrize("code", [421, 554])
async def test_greeting_refused(mode: Mode, scripted: Scripted, code: int) -> None:
    server = scripted([Send(f"{code} 4.3.2 go away\r\n".encode()), WaitClose()])
    error = await expect_error(mode, short(server), GreetingRefused)
    assert isinstance(error, GreetingRefused)
    assert error.reply.code == code
    server.stop()
    if code == 421:
        assert server.received == b""  # closed at once: not even QUIT


# -- malformed replies ------------------------------------------------------------------------------


async def test_unterminated_reply_line_is_bounded(mode: Mode, scripted: Scripted) -> None:
    flood = b"220 " + b"a" * (16 * 1024 * 1024)
    server = scripted([Send(flood), WaitClose()])
    await expect_error(mode, short(server), RemoteProtocolError)
    server.stop()
    # the client gave up long before taking everything: the server could not deliver it all
    assert server.errors and isinstance(server.errors[0], OSError)


async def test_endless_multiline_reply(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [Send(b"220 mx.test\r\n"), Expect(b"EHLO"), Send(b"250-more\r\n" * 50_000), WaitClose()]
    )
    await expect_error(mode, short(server), RemoteProtocolError)


async def test_an_ehlo_reply_of_2000_keywords_is_accepted(mode: Mode, scripted: Scripted) -> None:
    # Real servers and smtplib accept it; only the total size is bounded (1 MiB).
    keywords = [f"X-VENDOR-{i:04d} some parameters" for i in range(1998)]
    server = scripted(
        [
            Send(b"220 mx.test\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply(*keywords, "PIPELINING")),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            WaitClose(),
        ]
    )
    async with mode.session(short(server)) as s:
        assert s.capabilities.pipelining
        assert len(s.capabilities.keywords) == 1999
        assert s.capabilities.raw["X-VENDOR-1997"] == "some parameters"
    server.check()


@pytest.mark.parametrize(
    "greeting", [b"2x0 hi\r\n", b"hello there\r\n", b"22 short\r\n", b"220-a\r\n250 b\r\n"]
)
async def test_non_numeric_and_mixed_codes(mode: Mode, scripted: Scripted, greeting: bytes) -> None:
    server = scripted([Send(greeting), WaitClose()])
    await expect_error(mode, short(server), RemoteProtocolError)


async def test_mixed_codes_in_ehlo_reply(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [Send(b"220 mx\r\n"), Expect(b"EHLO"), Send(b"250-mx\r\n251 PIPELINING\r\n"), WaitClose()]
    )
    await expect_error(mode, short(server), RemoteProtocolError)


async def test_non_utf8_reply_text_is_decoded_with_replacement(
    mode: Mode, scripted: Scripted
) -> None:
    server = scripted(
        [
            Send(b"220 mx \xff\xfe ESMTP\r\n"),
            Expect(b"EHLO"),
            Send(b"250-mx.test \xe9t\xe9\r\n250 8BITMIME\r\n"),
            Expect(b"NOOP"),
            Send(b"250 caf\xe9 ok\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
        ]
    )
    async with mode.session(short(server)) as s:
        reply = await s.noop()
        assert reply.code == 250
        assert reply.message == b"caf\xe9 ok"
        assert reply.text == "caf\ufffd ok"
        assert s.capabilities.eightbitmime
    server.check()


async def test_malformed_ehlo_keywords_are_tolerated(mode: Mode, scripted: Scripted) -> None:
    ehlo = b"250-mx.test\r\n250-SIZE notanumber\r\n250-\r\n250-=weird\r\n250-AUTH\r\n250-X-\xff\r\n250 8BITMIME\r\n"
    server = scripted(
        [
            Send(b"220 mx\r\n"),
            Expect(b"EHLO"),
            Send(ehlo),
            Expect(b"MAIL FROM:<a@example.org>"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT"),
            Send(b"250 ok\r\n"),
            Expect(b"DATA"),
            Send(b"354 go\r\n"),
            ReadData(),
            Send(b"250 queued as WEIRD\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
        ]
    )
    async with mode.session(short(server)) as s:
        assert s.capabilities.eightbitmime
        assert s.capabilities.max_size is None
        result = await s.sendmail("a@example.org", "b@example.com", RAW)
    assert result.queue_id == "WEIRD"
    server.check()


# -- disconnects -----------------------------------------------------------------------------------


async def test_disconnect_mid_data(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [
            *HELLO,
            Expect(b"MAIL"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT"),
            Send(b"250 ok\r\n"),
            Expect(b"DATA"),
            Send(b"354 go\r\n"),
            ReadBytes(5),
            Close(),
        ]
    )
    session = await mode.connect(short(server))
    with pytest.raises(ConnectionLost):
        await session.sendmail("a@example.org", "b@example.com", RAW)
    assert session.closed


async def test_connection_reset(mode: Mode, scripted: Scripted) -> None:
    server = scripted([Send(b"220 mx\r\n"), Expect(b"EHLO"), Reset()])
    error = await expect_error(mode, short(server), ConnectionLost)
    assert isinstance(error, ConnectionError)


async def test_closed_before_greeting(mode: Mode, scripted: Scripted) -> None:
    server = scripted([Close()])
    await expect_error(mode, short(server), ConnectionLost)


async def test_reset_while_waiting_for_a_command_reply(mode: Mode, scripted: Scripted) -> None:
    server = scripted([*HELLO, Expect(b"NOOP"), Reset()])
    session = await mode.connect(short(server))
    with pytest.raises(ConnectionLost):
        await session.noop()
    assert session.closed
    with pytest.raises(ConnectionLost):
        await session.noop()


# -- 421: the server is closing ------------------------------------------------------------------


async def test_421_at_ehlo(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [Send(b"220 mx\r\n"), Expect(b"EHLO"), Send(b"421 4.3.2 shutting down\r\n"), WaitClose()]
    )
    error = await expect_error(mode, short(server), HeloRefused)
    assert isinstance(error, ReplyError) and error.reply.code == 421
    server.stop()
    assert server.received.count(b"\r\n") == 1  # EHLO only: no HELO fallback, no QUIT


STEP_421 = {
    "MAIL": ([Expect(b"MAIL"), Send(b"421 4.4.5 bye\r\n")], SenderRefused),
    "RCPT": (
        [Expect(b"MAIL"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Send(b"421 4.4.5 bye\r\n")],
        RecipientsRefused,
    ),
    "DATA": (
        [
            Expect(b"MAIL"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT"),
            Send(b"250 ok\r\n"),
            Expect(b"DATA"),
            Send(b"421 4.4.5 bye\r\n"),
        ],
        DataRefused,
    ),
    "END": (
        [
            Expect(b"MAIL"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT"),
            Send(b"250 ok\r\n"),
            Expect(b"DATA"),
            Send(b"354 go\r\n"),
            ReadData(),
            Send(b"421 4.4.5 bye\r\n"),
        ],
        DataRefused,
    ),
}


@pytest.mark.parametrize("step", list(STEP_421))
async def test_421_during_a_transaction_closes_the_session(
    mode: Mode, scripted: Scripted, step: str
) -> None:
    steps, error_type = STEP_421[step]
    server = scripted([*HELLO, *steps, WaitClose()])
    session = await mode.connect(short(server))
    with pytest.raises(error_type) as info:
        await session.sendmail("a@example.org", "b@example.com", RAW)
    assert info.value.reply.code == 421
    assert info.value.is_transient
    assert session.closed
    server.stop()
    assert b"RSET" not in server.received
    assert b"QUIT" not in server.received


# -- STARTTLS ---------------------------------------------------------------------------------------


def starttls_builder(server: ScriptedServer, client_tls: TlsSettings) -> ClientBuilder:
    return short(server).with_tls("starttls", settings=client_tls, server_hostname="localhost")


async def test_starttls_injection_is_refused(
    mode: Mode, scripted: Scripted, server_ssl_context: ssl.SSLContext, client_tls: TlsSettings
) -> None:
    # RFC 3207 §4.2 / CVE-2011-0411: bytes sent right after the 220 in plaintext must not be
    # taken as the answer to the first command under TLS.
    server = scripted(
        [
            Send(b"220 mx\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply("STARTTLS")),
            Expect(b"STARTTLS"),
            Send(b"220 2.0.0 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n"),
            WaitClose(),
        ]
    )
    await expect_error(mode, starttls_builder(server, client_tls), RemoteProtocolError)


async def test_garbage_instead_of_a_tls_handshake(
    mode: Mode, scripted: Scripted, client_tls: TlsSettings
) -> None:
    server = scripted(
        [
            Send(b"220 mx\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply("STARTTLS")),
            Expect(b"STARTTLS"),
            Send(b"220 go ahead\r\n"),
            Expect(b""),  # wait for the ClientHello before answering with garbage
            Send(b"this is not a TLS record at all\r\n" * 20),
            WaitClose(),
        ]
    )
    await expect_error(mode, starttls_builder(server, client_tls), TLSError)


async def test_starttls_refused_when_required(
    mode: Mode, scripted: Scripted, client_tls: TlsSettings
) -> None:
    server = scripted(
        [
            Send(b"220 mx\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply("STARTTLS")),
            Expect(b"STARTTLS"),
            Send(b"454 4.7.0 TLS not available\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            WaitClose(),
        ]
    )
    error = await expect_error(mode, starttls_builder(server, client_tls), StartTLSRefused)
    assert isinstance(error, StartTLSRefused)
    assert error.reply.code == 454
    server.check()


async def test_tls_server_that_hangs_mid_handshake(
    mode: Mode, scripted: Scripted, server_ssl_context: ssl.SSLContext, client_tls: TlsSettings
) -> None:
    server = scripted(
        [
            Send(b"220 mx\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply("STARTTLS")),
            Expect(b"STARTTLS"),
            Send(b"220 go\r\n"),
            WaitClose(),
        ]
    )
    started = time.monotonic()
    with pytest.raises((MailTimeout, TLSError)):
        await mode.connect(starttls_builder(server, client_tls))
    assert time.monotonic() - started < DEADLINE + SLACK
    del server_ssl_context  # the handshake never starts on the server side


async def test_scripted_starttls_then_auth_and_send(
    mode: Mode, scripted: Scripted, server_ssl_context: ssl.SSLContext, client_tls: TlsSettings
) -> None:
    server = scripted(
        [
            Send(b"220 mx\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply("STARTTLS")),
            Expect(b"STARTTLS"),
            Send(b"220 go\r\n"),
            StartTls(server_ssl_context),
            Expect(b"EHLO"),
            Send(ehlo_reply("AUTH PLAIN")),
            Expect(b"AUTH PLAIN " + base64.b64encode(b"\0u\0p")),
            Send(b"235 ok\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
        ]
    )
    async with mode.session(starttls_builder(server, client_tls).with_credentials("u", "p")) as s:
        assert s.mechanism == "PLAIN"
    server.check()


# -- AUTH ---------------------------------------------------------------------------------------------


async def test_endless_auth_challenges(mode: Mode, scripted: Scripted) -> None:
    challenge = b"334 " + base64.b64encode(b"Password:") + b"\r\n"
    server = scripted(
        [
            Send(b"220 mx\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply("AUTH LOGIN")),
            Loop(challenge, until=b"*", final=b"501 5.7.0 cancelled\r\n", limit=30),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            WaitClose(),
        ]
    )
    builder = short(server).with_credentials("u", "p", allow_plaintext=True, mechanisms=["LOGIN"])
    await expect_error(mode, builder, AuthError)
    server.check()
    assert server.lines[-2].strip() == b"*"


async def test_auth_challenge_that_is_not_base64(mode: Mode, scripted: Scripted) -> None:
    server = scripted(
        [
            Send(b"220 mx\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply("AUTH LOGIN")),
            Expect(b"AUTH LOGIN"),
            Send(b"334 !!!not base64!!!\r\n"),
            Expect(b"*"),
            Send(b"501 cancelled\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            WaitClose(),
        ]
    )
    builder = short(server).with_credentials("u", "p", allow_plaintext=True, mechanisms=["LOGIN"])
    error = await expect_error(mode, builder, AuthError)
    assert "base64" in str(error)
    server.check()


async def test_server_that_stops_reading_hits_the_write_deadline(
    mode: Mode, scripted: Scripted
) -> None:
    # Larger than any loopback socket buffering, so the write blocks once the server stops reading.
    body = b"x" * 1000 + b"\r\n"
    body *= 24_000
    server = scripted(
        [
            *HELLO,
            Expect(b"MAIL"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT"),
            Send(b"250 ok\r\n"),
            Expect(b"DATA"),
            Send(b"354 go\r\n"),
            Sleep(DEADLINE + SLACK),  # longer than the client deadline: the server never reads
        ]
    )
    timeouts = Timeouts(
        connect=2.0, greeting=DEADLINE, command=DEADLINE, data=DEADLINE, data_rate=1e12
    )
    session = await mode.connect(short(server).with_timeouts(timeouts))
    started = time.monotonic()
    with pytest.raises(WriteTimeout):
        await session.sendmail("a@example.org", "b@example.com", body)
    assert time.monotonic() - started < DEADLINE + SLACK + 0.5
    assert session.closed


async def test_each_reply_of_a_pipelined_group_restarts_the_deadline(
    mode: Mode, scripted: Scripted
) -> None:
    # Every reply comes within the command deadline of the previous one, but the whole group
    # takes far longer: deadlines are per reply (restarted by each), never one for the group.
    gap = DEADLINE * 0.6
    server = scripted(
        [
            Send(b"220 mx.test\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply("PIPELINING")),
            Expect(b"MAIL"),
            Send(b"250 ok\r\n"),
            Sleep(gap),
            Send(b"250 ok\r\n"),
            Sleep(gap),
            Send(b"250 ok\r\n"),
            Sleep(gap),
            Send(b"354 go\r\n"),
            ReadData(),
            Send(b"250 queued\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            WaitClose(),
        ]
    )
    async with mode.session(short(server)) as s:
        started = time.monotonic()
        result = await s.sendmail("a@example.org", ["b@example.com", "c@example.com"], RAW)
        assert time.monotonic() - started > DEADLINE  # the group outlived one deadline
    assert result.accepted == ("b@example.com", "c@example.com")
    server.check()


async def test_a_stalled_write_fails_after_the_command_deadline_whatever_the_size(
    mode: Mode, scripted: Scripted
) -> None:
    # with_timeouts(1): the default data rate would stretch each 128 KiB block's deadline to
    # 1 + 12.8 s; a server that takes no byte at all is given up after the command deadline.
    body = (b"x" * 1000 + b"\r\n") * 24_000
    server = scripted(
        [
            *HELLO,
            Expect(b"MAIL"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT"),
            Send(b"250 ok\r\n"),
            Expect(b"DATA"),
            Send(b"354 go\r\n"),
            Sleep(DEADLINE * 3.5),  # never reads again (the client gives up before)
        ]
    )
    session = await mode.connect(plain_builder(server.host, server.port).with_timeouts(DEADLINE))
    started = time.monotonic()
    with pytest.raises(WriteTimeout) as info:
        await session.sendmail("a@example.org", "b@example.com", body)
    assert time.monotonic() - started < DEADLINE + SLACK + 1.0
    assert info.value.phase == "data"
    assert "the server did not take the message content in time" in str(info.value)
    assert session.closed
