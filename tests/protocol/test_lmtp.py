"""LMTP (RFC 2033): LHLO, one end-of-data reply per accepted recipient."""

from __future__ import annotations

import pytest
from tests._support.conversation import Conversation, replied

from mailsdk.errors import LocalProtocolError, RemoteProtocolError
from mailsdk.protocol import (
    Bdat,
    ClientState,
    Data,
    Dialect,
    Ehlo,
    EndOfData,
    Helo,
    MailFrom,
    RcptTo,
)

MAIL = MailFrom("a@x.example")
R1, R2, R3 = RcptTo("b@y.example"), RcptTo("c@y.example"), RcptTo("d@y.example")


def lmtp() -> Conversation:
    conv = Conversation(Dialect.LMTP)
    conv.hello(capabilities=("PIPELINING", "CHUNKING"))
    return conv


def test_ehlo_and_helo_refused_in_lmtp() -> None:
    conv = Conversation(Dialect.LMTP)
    conv.greet()
    for command in (Ehlo("me"), Helo("me")):
        with pytest.raises(LocalProtocolError, match="LMTP"):
            conv.conn.send(command)


def test_one_reply_per_accepted_recipient_after_data() -> None:
    conv = lmtp()
    for command in (MAIL, R1, R2, R3, Data()):
        conv.client(command)
    conv.server(
        b"250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n354 go\r\n",
        replied(MAIL, 250, "ok"),
        replied(R1, 250, "ok"),
        replied(R2, 550, "5.1.1 unknown"),
        replied(R3, 250, "ok"),
        replied(Data(), 354, "go"),
    )
    conv.body(b"hello\n")
    conv.end_body()
    assert conv.conn.pending == 1
    conv.server(
        b"250 2.0.0 <b@y.example> delivered\r\n",
        replied(
            EndOfData(),
            250,
            "2.0.0 <b@y.example> delivered",
            recipient="b@y.example",
            final=False,
        ),
    )
    assert conv.conn.pending == 1  # still owed: d@y.example
    conv.server(
        b"452 4.2.2 mailbox full\r\n",
        replied(EndOfData(), 452, "4.2.2 mailbox full", recipient="d@y.example"),
    )
    assert conv.conn.pending == 0
    assert conv.conn.state is ClientState.READY
    conv.conn.receive_data(b"250 extra\r\n")
    with pytest.raises(RemoteProtocolError):
        conv.conn.next_event()


def test_lmtp_replies_in_one_packet() -> None:
    conv = lmtp()
    for command in (MAIL, R1, R2, Data()):
        conv.client(command)
    conv.receive(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    conv.body(b"x")
    conv.end_body(b"\r\n.\r\n")
    conv.server(
        b"250 one\r\n250 two\r\n",
        replied(EndOfData(), 250, "one", recipient="b@y.example", final=False),
        replied(EndOfData(), 250, "two", recipient="c@y.example"),
    )


def test_lmtp_bdat_last_gets_per_recipient_replies() -> None:
    conv = lmtp()
    conv.client(MAIL)
    conv.client(R1)
    conv.client(R2)
    conv.bdat(b"chunk\n", last=True, expected=b"BDAT 7 LAST\r\nchunk\r\n")
    conv.server(
        b"250 ok\r\n250 ok\r\n250 ok\r\n250 b done\r\n550 c failed\r\n",
        replied(MAIL, 250, "ok"),
        replied(R1, 250, "ok"),
        replied(R2, 250, "ok"),
        replied(Bdat(7, True), 250, "b done", recipient="b@y.example", final=False),
        replied(Bdat(7, True), 550, "c failed", recipient="c@y.example"),
    )
    assert conv.conn.pending == 0


def test_lmtp_no_accepted_recipient_expects_single_reply() -> None:
    conv = lmtp()
    conv.client(MAIL)
    conv.client(R1)
    conv.bdat(b"x", last=True)
    conv.server(
        b"250 ok\r\n550 no\r\n503 no valid recipients\r\n",
        replied(MAIL, 250, "ok"),
        replied(R1, 550, "no"),
        replied(Bdat(1, True), 503, "no valid recipients"),
    )
    assert conv.conn.pending == 0


def test_lmtp_cross_transaction() -> None:
    conv = lmtp()
    for command in (MAIL, R1, Data()):
        conv.client(command)
    conv.receive(b"250 ok\r\n250 ok\r\n354 go\r\n")
    conv.body(b"one\r\n")
    conv.end_body()
    m2 = MailFrom("z@x.example")
    conv.client(m2)
    conv.client(R2)
    conv.client(R3)
    conv.client(Data())
    conv.server(
        b"250 done 1\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n",
        replied(EndOfData(), 250, "done 1", recipient="b@y.example"),
        replied(m2, 250, "ok"),
        replied(R2, 250, "ok"),
        replied(R3, 250, "ok"),
        replied(Data(), 354, "go"),
    )
    conv.end_body(b".\r\n")
    conv.server(
        b"250 c\r\n250 d\r\n",
        replied(EndOfData(), 250, "c", recipient="c@y.example", final=False),
        replied(EndOfData(), 250, "d", recipient="d@y.example"),
    )


def test_lmtp_failed_chunk_then_last_expects_single_reply() -> None:
    conv = lmtp()
    conv.client(MAIL)
    conv.client(R1)
    conv.client(R2)
    conv.bdat(b"part1", last=False)
    conv.server(
        b"250 ok\r\n250 ok\r\n250 ok\r\n552 too big\r\n",
        replied(MAIL, 250, "ok"),
        replied(R1, 250, "ok"),
        replied(R2, 250, "ok"),
        replied(Bdat(5), 552, "too big"),
    )
    assert conv.conn.state is ClientState.READY
