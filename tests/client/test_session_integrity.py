"""What a failure leaves of a session: cancellation, lost connections during RSET/AUTH, 421s, concurrent calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from opentelemetry.trace import StatusCode
from tests._support.interrupted import Boom, break_receive, hello, short, traced
from tests._support.modes import Mode
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
    RecipientsRefused,
    SenderRefused,
)

Scripted = Callable[..., ScriptedServer]


RAW = b"Subject: review\r\n\r\nreview\r\n"


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
    break_receive(session)
    with pytest.raises(Boom):
        await session.noop()
    assert session.closed
    with pytest.raises(ConnectionLost):
        await session.noop()
    await session.close()


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
