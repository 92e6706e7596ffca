"""``send_many`` against servers that break the protocol, on both schedules and in both modes.

Each test runs on the express lane (``flows/express.py``) and on the general ``deliver_many``
flow (the lane turned off): a hostile server must get the same outcomes from both, one per
item, in input order, and never a message reported delivered that the server did not confirm.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator

import pytest
from tests._support.modes import Mode, plain_builder
from tests._support.policy_smtpd import PolicyServer
from tests._support.policy_smtpd import Reply as PolicyReply
from tests._support.scripted_server import (
    Close,
    Expect,
    ExpectBlock,
    ReadData,
    ScriptedServer,
    Send,
    WaitClose,
)
from tests._support.smtpd import SmtpdServer

import mailsdk
from mailsdk import DeliveryStatus, Outgoing
from mailsdk.client import _express

Scripted = Callable[..., ScriptedServer]

A, R, F, U = (
    DeliveryStatus.ACCEPTED,
    DeliveryStatus.REFUSED,
    DeliveryStatus.FAILED,
    DeliveryStatus.UNKNOWN,
)

HELLO: typing.Final = [
    Send(b"220 mx.test ESMTP\r\n"),
    Expect(b"EHLO"),
    Send(b"250-mx.test\r\n250 PIPELINING\r\n"),
]


@pytest.fixture(params=["express", "general"])
def lane(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which schedule ``send_many`` runs: the express lane or the general flow."""
    monkeypatch.setattr(_express, "ENABLED", request.param == "express")
    return typing.cast("str", request.param)


def item(i: int) -> Outgoing:
    body = b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i)
    return Outgoing(body, sender="s@example.org", recipients=["r@example.com"], key=f"k{i}")


async def test_bytes_before_an_envelope_fail_that_message_and_lose_none(
    mode: Mode, scripted: Scripted, lane: str
) -> None:
    # Message 0 is refused (no transaction left open, so no RSET); a reply nobody asked for
    # follows. Message 1's envelope cannot be sent after it: it fails, it is not dropped.
    server = scripted(
        [
            *HELLO,
            ExpectBlock((b"MAIL", b"RCPT", b"DATA")),
            Send(b"550 5.7.1 no\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n250 early\r\n"),
            WaitClose(),
        ]
    )
    async with mode.session(plain_builder(server.host, server.port)) as s:
        outcomes = await s.send_many_list([item(i) for i in range(3)])
        assert s.closed
    assert [o.index for o in outcomes] == [0, 1, 2]
    assert [o.status for o in outcomes] == [R, F, F]
    assert isinstance(outcomes[1].error, mailsdk.RemoteProtocolError)
    assert outcomes[2].never_started


async def test_bytes_before_the_empty_body_keep_the_refusal(
    mode: Mode, scripted: Scripted, lane: str
) -> None:
    # RFC 2920 §3.1: DATA got 354 after the recipient was refused, so an empty body is owed;
    # a reply already buffered stops it. The message still stands refused by the server.
    server = scripted(
        [
            *HELLO,
            ExpectBlock((b"MAIL", b"RCPT", b"DATA")),
            Send(b"250 ok\r\n550 5.1.1 no such user\r\n354 go\r\n250 early\r\n"),
            WaitClose(),
        ]
    )
    async with mode.session(plain_builder(server.host, server.port)) as s:
        outcomes = await s.send_many_list([item(i) for i in range(2)])
        assert s.closed
    assert [o.status for o in outcomes] == [R, F]
    assert isinstance(outcomes[0].error, mailsdk.RecipientsRefused)
    assert outcomes[1].never_started


async def test_a_421_sent_before_the_content_answers_its_end_at_eof(
    mode: Mode, scripted: Scripted, lane: str
) -> None:
    # RFC 5321 §3.8: a 421 may come before the command it answers. It is buffered when the
    # content is written, the server then closes: the 421 answers the end of data (refused),
    # the message is not left UNKNOWN.
    server = scripted(
        [
            *HELLO,
            ExpectBlock((b"MAIL", b"RCPT", b"DATA")),
            Send(b"250 ok\r\n250 ok\r\n354 go\r\n421 4.3.2 shutting down\r\n"),
            ReadData(),
            Close(),
        ]
    )
    async with mode.session(plain_builder(server.host, server.port)) as s:
        outcomes = await s.send_many_list([item(i) for i in range(2)])
        assert s.closed
    assert [o.status for o in outcomes] == [R, F]
    assert outcomes[0].error is not None and "421" in str(outcomes[0].error)
    assert outcomes[1].never_started


async def test_eof_in_the_middle_of_a_reply_is_a_protocol_error(
    mode: Mode, scripted: Scripted, lane: str
) -> None:
    server = scripted(
        [
            *HELLO,
            ExpectBlock((b"MAIL", b"RCPT", b"DATA")),
            Send(b"250 ok\r\n25"),
            Close(),
        ]
    )
    async with mode.session(plain_builder(server.host, server.port)) as s:
        outcomes = await s.send_many_list([item(i) for i in range(2)])
        assert s.closed
    assert [o.status for o in outcomes] == [F, F]
    assert isinstance(outcomes[0].error, mailsdk.RemoteProtocolError)
    assert "middle of a reply" in str(outcomes[0].error)
    assert outcomes[1].never_started


async def test_a_source_that_raises_mid_content_fails_alone_and_keeps_the_outcomes_before_it(
    mode: Mode, smtpd_factory: Callable[..., SmtpdServer], lane: str
) -> None:
    # Message 0's end of data is written (and answered) before message 1's content breaks:
    # its outcome must still be reported, or a caller seeing only the exception resends it.
    smtpd = smtpd_factory(pipelining=True)

    def broken() -> Iterator[bytes]:
        yield b"Subject: half\r\n\r\nfirst part\r\n"
        raise ValueError("the source broke")

    items = [item(0), Outgoing(broken(), sender="s@example.org", recipients=["r@example.com"])]
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        outcomes = await s.send_many_list([*items, item(2)])
        assert s.closed  # the DATA transfer could not be ended without sending a message
    assert [o.status for o in outcomes] == [A, F, F]
    assert isinstance(outcomes[1].error, mailsdk.InvalidInputError)
    assert isinstance(outcomes[1].error.__cause__, ValueError)
    assert outcomes[2].never_started
    assert len(smtpd.recorder.messages) == 1


async def test_binarymime_messages_each_declare_their_own_size(mode: Mode, lane: str) -> None:
    # BODY=BINARYMIME content goes as given (RFC 3030 §3), so SIZE= is its raw length: two
    # messages of the same canonical size but different raw sizes must not share one SIZE=.
    server = PolicyServer(
        lambda command: PolicyReply(), ehlo=("PIPELINING", "CHUNKING", "BINARYMIME", "SIZE 100000")
    )
    binary = mailsdk.MailOptions(body="BINARYMIME")
    bodies = [b"Subject: x\n\nbody\n", b"Subject: x\r\n\r\nbody\r\n"]
    items = [
        Outgoing(b, sender="s@example.org", recipients=["r@example.com"], mail_options=binary)
        for b in bodies
    ]
    try:
        async with mode.session(plain_builder("127.0.0.1", server.port)) as s:
            outcomes = await s.send_many_list(items)
    finally:
        server.stop()
    assert [o.status for o in outcomes] == [A, A]
    sizes = [c.line for c in server.commands if c.verb == "MAIL"]
    assert [b"SIZE=%d" % len(b) in line for b, line in zip(bodies, sizes, strict=True)] == [
        True,
        True,
    ], sizes
