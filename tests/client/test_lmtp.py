"""LMTP (RFC 2033) against aiosmtpd's LMTP server, over a unix socket and TCP, both modes.

One reply per accepted recipient after the data: the result has one entry per recipient, and a
recipient whose delivery fails after DATA shows in ``refused``.
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

import pytest
from tests._support.modes import TEST_TIMEOUT, Mode, plain_builder
from tests._support.scripted_server import Close, Expect, ReadData, ScriptedServer, Send
from tests._support.smtpd import SmtpdServer

from mailsdk import (
    AsyncLMTPClient,
    ClientBuilder,
    ConnectionLost,
    DeliveryStatus,
    DeliveryUnknown,
    LMTPClient,
    Outgoing,
    RecipientsRefused,
)

Scripted = Callable[..., ScriptedServer]
SmtpdFactory = Callable[..., SmtpdServer]
RAW = b"Subject: lmtp\r\n\r\nlocal delivery\r\n"


def unix_builder(server: SmtpdServer) -> ClientBuilder:
    assert server.path is not None
    return (
        ClientBuilder.unix(server.path)
        .with_timeouts(TEST_TIMEOUT)
        .with_local_hostname("client.test")
    )


async def test_lmtp_over_unix_socket_per_recipient_results(
    mode: Mode, smtpd_factory: SmtpdFactory
) -> None:
    server = smtpd_factory(lmtp=True, unix=True, lmtp_fail={"full@example.com"})
    client = mode.build(unix_builder(server))
    assert isinstance(client, AsyncLMTPClient if mode.is_async else LMTPClient)
    async with mode.session(unix_builder(server)) as s:
        result = await s.sendmail(
            "a@example.org", ["one@example.com", "full@example.com", "two@example.com"], RAW
        )
    assert result.lmtp
    assert result.accepted == ("one@example.com", "two@example.com")
    assert list(result.refused) == ["full@example.com"]
    assert result.refused["full@example.com"].code == 452
    assert result.recipient_replies["one@example.com"].code == 250
    assert "one@example.com" in result.recipient_replies["one@example.com"].text
    assert set(result.recipient_replies) == {
        "one@example.com",
        "full@example.com",
        "two@example.com",
    }
    assert server.recorder.verbs[0] == "LHLO"
    assert "EHLO" not in server.recorder.verbs
    assert server.recorder.messages[0].content == RAW


async def test_lmtp_rcpt_refusal_and_data_failure_combined(
    mode: Mode, smtpd_factory: SmtpdFactory
) -> None:
    server = smtpd_factory(
        lmtp=True, unix=True, refuse_rcpt={"ghost@example.com"}, lmtp_fail={"full@example.com"}
    )
    async with mode.session(unix_builder(server)) as s:
        result = await s.sendmail(
            "a@example.org", ["ghost@example.com", "full@example.com", "ok@example.com"], RAW
        )
    assert result.accepted == ("ok@example.com",)
    assert result.refused["ghost@example.com"].code == 550
    assert result.refused["full@example.com"].code == 452
    # only the recipients accepted at RCPT got a reply after the data
    assert server.recorder.messages[0].rcpt_tos == ["full@example.com", "ok@example.com"]


async def test_lmtp_every_delivery_failing_raises(mode: Mode, smtpd_factory: SmtpdFactory) -> None:
    server = smtpd_factory(lmtp=True, unix=True, lmtp_fail={"a@example.com", "b@example.com"})
    async with mode.session(unix_builder(server)) as s:
        with pytest.raises(RecipientsRefused) as info:
            await s.sendmail("x@example.org", ["a@example.com", "b@example.com"], RAW)
        assert set(info.value.refused) == {"a@example.com", "b@example.com"}
        assert not s.closed
        ok = await s.sendmail("x@example.org", ["c@example.com"], RAW)
        assert ok.accepted == ("c@example.com",)


async def test_lmtp_over_tcp(mode: Mode, smtpd_factory: SmtpdFactory) -> None:
    server = smtpd_factory(lmtp=True)
    builder = plain_builder(server.host, server.port).with_lmtp()
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.com, c@example.com"
    msg.set_content("hi\n")
    async with mode.session(builder) as s:
        result = await s.send_message(msg)
    assert result.lmtp
    assert result.accepted == ("b@example.com", "c@example.com")
    assert server.recorder.commands[0] == ("LHLO", "client.test")


async def test_lmtp_pipelined(mode: Mode, smtpd_factory: SmtpdFactory) -> None:
    server = smtpd_factory(lmtp=True, unix=True, pipelining=True, lmtp_fail={"full@example.com"})
    async with mode.session(unix_builder(server)) as s:
        assert s.capabilities.pipelining
        result = await s.sendmail("a@example.org", ["one@example.com", "full@example.com"], RAW)
    assert result.accepted == ("one@example.com",)
    assert result.refused["full@example.com"].code == 452
    # MAIL, both RCPTs and DATA went out in one write
    assert any(
        chunk.startswith(b"MAIL FROM:") and chunk.endswith(b"DATA\r\n")
        for chunk in server.recorder.chunks
    )


def _lmtp_drop_after_two_replies(scripted: Scripted) -> ScriptedServer:
    return scripted(
        [
            Send(b"220 lmtp.test LMTP\r\n"),
            Expect(b"LHLO"),
            Send(b"250 lmtp.test\r\n"),
            Expect(b"MAIL"),
            Send(b"250 ok\r\n"),
            *[step for _ in RECIPIENTS for step in (Expect(b"RCPT"), Send(b"250 ok\r\n"))],
            Expect(b"DATA"),
            Send(b"354 go\r\n"),
            ReadData(),
            # two of three per-recipient replies (RFC 2033 §4.2), then the connection drops
            Send(b"250 2.1.5 <a@example.com> delivered\r\n452 4.2.2 <b@example.com> full\r\n"),
            Close(),
        ]
    )


RECIPIENTS = ["a@example.com", "b@example.com", "c@example.com"]


async def test_lmtp_drop_after_some_replies_says_who_has_the_message(
    mode: Mode, scripted: Scripted
) -> None:
    server = _lmtp_drop_after_two_replies(scripted)
    builder = plain_builder(server.host, server.port).with_lmtp()
    session = await mode.connect(builder)
    with pytest.raises(DeliveryUnknown) as info:
        await session.sendmail("s@example.org", RECIPIENTS, b"Subject: s\r\n\r\nx\r\n")
    replies = info.value.recipient_replies
    assert {r: reply.code for r, reply in replies.items()} == {
        "a@example.com": 250,
        "b@example.com": 452,
    }  # c@example.com's fate is the unknown part
    assert isinstance(info.value.cause, ConnectionLost)
    assert info.value.cause.recipient_replies == replies
    assert session.closed


async def test_lmtp_drop_in_send_many_keeps_the_replies_received(
    mode: Mode, scripted: Scripted
) -> None:
    server = _lmtp_drop_after_two_replies(scripted)
    session = await mode.connect(plain_builder(server.host, server.port).with_lmtp())
    item = Outgoing(b"Subject: s\r\n\r\nx\r\n", sender="s@example.org", recipients=RECIPIENTS)
    (outcome,) = await session.send_many_list([item])
    assert outcome.status is DeliveryStatus.UNKNOWN
    assert isinstance(outcome.error, DeliveryUnknown)
    assert set(outcome.error.recipient_replies) == {"a@example.com", "b@example.com"}
