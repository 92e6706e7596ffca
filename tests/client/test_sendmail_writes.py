"""``sendmail`` on the wire: the envelope in one write, in-memory content and its end of data in
the next; what a drop or an out-of-step server leaves (both modes, against a scripted server)."""

from __future__ import annotations

import typing
from collections.abc import Callable

import pytest
from tests._support.modes import Mode, plain_builder
from tests._support.scripted_server import (
    Close,
    Expect,
    ExpectBlock,
    ReadData,
    ScriptedServer,
    Send,
    WaitClose,
    ehlo_reply,
)

from mailsdk import ClientBuilder, DeliveryUnknown, MailError, Timeouts

Scripted = Callable[..., ScriptedServer]

RAW = b"Subject: wire\r\n\r\n.dot first\r\nlast line\r\n"


def hello(*keywords: str) -> list[typing.Any]:
    return [Send(b"220 mx.test ESMTP\r\n"), Expect(b"EHLO"), Send(ehlo_reply(*keywords))]


def short(server: ScriptedServer) -> ClientBuilder:
    timeouts = Timeouts(connect=2.0, greeting=2.0, command=2.0, tls=2.0, data=2.0, quit=0.5)
    return plain_builder(server.host, server.port).with_timeouts(timeouts)


async def test_envelope_in_one_write_then_content_with_its_end(
    mode: Mode, scripted: Scripted
) -> None:
    server = scripted(
        [
            *hello("PIPELINING"),
            ExpectBlock((b"MAIL FROM:<a@example.org>", b"RCPT TO:<b@example.com>", b"DATA")),
            Send(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"),
            ReadData(),
            Send(b"250 2.0.0 queued as W1\r\n"),
            Expect(b"MAIL FROM:<a@example.org>"),  # the session stays usable: a second one
            Expect(b"RCPT TO:<c@example.com>"),
            Expect(b"DATA"),
            Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
            ReadData(),
            Send(b"250 2.0.0 queued as W2\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
        ]
    )
    session = await mode.connect(short(server))
    first = await session.sendmail("a@example.org", "b@example.com", RAW)
    second = await session.sendmail("a@example.org", ["c@example.com"], RAW)
    await session.quit()
    server.check()
    assert server.block_reads == [1]  # MAIL, RCPT and DATA arrived together
    assert (first.queue_id, second.queue_id) == ("W1", "W2")
    assert server.data == [b"Subject: wire\r\n\r\n..dot first\r\nlast line\r\n"] * 2


async def test_a_drop_after_the_end_of_data_leaves_the_message_unknown(
    mode: Mode, scripted: Scripted
) -> None:
    server = scripted(
        [
            *hello("PIPELINING"),
            ExpectBlock((b"MAIL", b"RCPT", b"DATA")),
            Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
            ReadData(),
            Close(),
        ]
    )
    session = await mode.connect(short(server))
    with pytest.raises(DeliveryUnknown):
        await session.sendmail("a@example.org", "b@example.com", RAW)
    server.check()
    assert server.data == [b"Subject: wire\r\n\r\n..dot first\r\nlast line\r\n"]
    await session.close()


@pytest.mark.parametrize(
    "replies",
    [
        b"250 ok\r\n250 ok\r\n354 go\r\n250 too early\r\n",  # a 250 before the content
        b"250 ok\r\n250 ok\r\n250 ok\r\n",  # a 250 to DATA
        b"250 ok\r\n354 go\r\n",  # one reply too few: RCPT's is missing
    ],
    ids=["early-250", "250-to-data", "missing-reply"],
)
async def test_an_out_of_step_server_never_confirms_the_message(
    mode: Mode, scripted: Scripted, replies: bytes
) -> None:
    server = scripted(
        [*hello("PIPELINING"), ExpectBlock((b"MAIL", b"RCPT", b"DATA")), Send(replies), WaitClose()]
    )
    session = await mode.connect(short(server))
    with pytest.raises(MailError):
        await session.sendmail("a@example.org", "b@example.com", RAW)
    assert session.closed  # out of step: the session is given up, never reused
    await session.close()


async def test_a_reply_behind_the_354_fails_the_message_without_sending_it(
    mode: Mode, scripted: Scripted
) -> None:
    # The end of data is refused before a byte of the content is written (the 250 cannot
    # answer it): the message was not sent, so the error is not DeliveryUnknown.
    server = scripted(
        [
            *hello("PIPELINING"),
            ExpectBlock((b"MAIL", b"RCPT", b"DATA")),
            Send(b"250 ok\r\n250 ok\r\n354 go\r\n250 too early\r\n"),
            WaitClose(),
        ]
    )
    session = await mode.connect(short(server))
    with pytest.raises(MailError) as caught:
        await session.sendmail("a@example.org", "b@example.com", RAW)
    assert not isinstance(caught.value, DeliveryUnknown)
    assert "before the command" in str(caught.value)
    assert session.closed
    assert server.data == []
    await session.close()
