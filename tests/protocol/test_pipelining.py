"""PIPELINING (RFC 2920): grouped commands, reply pairing, optimistic state and corrections."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests._support.conversation import Conversation, replied

from mailsdk.errors import LocalProtocolError
from mailsdk.protocol import (
    Bdat,
    ClientState,
    Command,
    CommandReplied,
    Data,
    EndOfData,
    MailFrom,
    Quit,
    Raw,
    RcptTo,
    Rset,
)

MAIL = MailFrom("a@x.example", ("BODY=8BITMIME",))
R1, R2, R3 = RcptTo("b@y.example"), RcptTo("c@y.example"), RcptTo("d@y.example")


def test_group_with_one_refused_rcpt() -> None:
    conv = Conversation()
    conv.hello(capabilities=("PIPELINING",))
    for command in (MAIL, R1, R2, R3, Data()):
        conv.client(command)
    assert bytes(conv.wire).endswith(
        b"MAIL FROM:<a@x.example> BODY=8BITMIME\r\nRCPT TO:<b@y.example>\r\n"
        b"RCPT TO:<c@y.example>\r\nRCPT TO:<d@y.example>\r\nDATA\r\n"
    )
    assert conv.conn.pending == 5
    assert conv.conn.state is ClientState.DATA_SENT
    conv.server(
        b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n250 2.1.5 ok\r\n354 go\r\n",
        replied(MAIL, 250, "2.1.0 ok"),
        replied(R1, 250, "2.1.5 ok"),
        replied(R2, 550, "5.1.1 no such user"),
        replied(R3, 250, "2.1.5 ok"),
        replied(Data(), 354, "go"),
    )
    assert conv.conn.accepted_recipients == ("b@y.example", "d@y.example")
    assert conv.conn.state is ClientState.BODY
    conv.body(b"hi\n")
    conv.end_body()
    conv.server(b"250 2.0.0 queued as X\r\n", replied(EndOfData(), 250, "2.0.0 queued as X"))


def test_replies_split_arbitrarily_still_pair() -> None:
    conv = Conversation()
    conv.hello()
    for command in (MAIL, R1, Data()):
        conv.client(command)
    wire = b"250 ok\r\n250 ok\r\n354 go\r\n"
    events = []
    for i in range(0, len(wire), 5):
        events += conv.receive(wire[i : i + 5])
    assert [type(e.command).__name__ for e in events if isinstance(e, CommandReplied)] == [
        "MailFrom",
        "RcptTo",
        "Data",
    ]


def test_mail_refused_returns_to_ready() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(MAIL)
    conv.client(R1)
    conv.server(b"550 5.7.1 sender rejected\r\n", replied(MAIL, 550, "5.7.1 sender rejected"))
    assert conv.conn.state is ClientState.READY  # corrected: no DATA may follow
    with pytest.raises(LocalProtocolError):
        conv.conn.send(Data())
    conv.server(b"503 5.5.1 need MAIL\r\n", replied(R1, 503, "5.5.1 need MAIL"))
    assert conv.conn.state is ClientState.READY


def test_mail_refused_with_data_pipelined() -> None:
    conv = Conversation()
    conv.hello()
    for command in (MAIL, R1, Data()):
        conv.client(command)
    conv.server(
        b"550 no\r\n503 no\r\n503 no\r\n",
        replied(MAIL, 550, "no"),
        replied(R1, 503, "no"),
        replied(Data(), 503, "no"),
    )
    assert conv.conn.state is ClientState.READY


def test_cross_transaction_pipelining() -> None:
    """RFC 2920 §3.1: body, end-of-data and the next MAIL/RCPT/DATA in one write."""
    conv = Conversation()
    conv.hello(capabilities=("PIPELINING",))
    m2, r2 = MailFrom("second@x.example"), RcptTo("z@y.example")
    for command in (MAIL, R1, Data()):
        conv.client(command)
    conv.server(
        b"250 ok\r\n250 ok\r\n354 go\r\n",
        replied(MAIL, 250, "ok"),
        replied(R1, 250, "ok"),
        replied(Data(), 354, "go"),
    )
    start = len(conv.wire)
    conv.body(b"first message\n")
    conv.end_body()
    conv.client(m2)
    conv.client(r2)
    conv.client(Data())
    assert bytes(conv.wire[start:]) == (
        b"first message\r\n.\r\nMAIL FROM:<second@x.example>\r\nRCPT TO:<z@y.example>\r\nDATA\r\n"
    )
    assert conv.conn.pending == 4
    # A late reply of transaction 1 must not rewind transaction 2's state.
    conv.server(b"250 queued 1\r\n", replied(EndOfData(), 250, "queued 1"))
    assert conv.conn.state is ClientState.DATA_SENT
    conv.server(
        b"250 ok\r\n250 ok\r\n354 go\r\n",
        replied(m2, 250, "ok"),
        replied(r2, 250, "ok"),
        replied(Data(), 354, "go"),
    )
    conv.body(b".second\r\n", b"..second\r\n")
    conv.end_body(b".\r\n")
    conv.client(Quit())
    conv.server(
        b"250 queued 2\r\n221 bye\r\n",
        replied(EndOfData(), 250, "queued 2"),
        replied(Quit(), 221, "bye"),
    )


def test_stale_mail_refusal_does_not_rewind_new_transaction() -> None:
    conv = Conversation()
    conv.hello()
    m2 = MailFrom("other@x.example")
    conv.client(MAIL)
    conv.client(Rset())
    conv.client(m2)
    conv.client(R1)
    assert conv.conn.state is ClientState.RCPT
    conv.server(b"550 refused\r\n", replied(MAIL, 550, "refused"))
    assert conv.conn.state is ClientState.RCPT  # the refusal was for the old transaction


def test_bdat_pipelined() -> None:
    conv = Conversation()
    conv.hello(capabilities=("CHUNKING", "PIPELINING"))
    conv.client(MAIL)
    conv.client(R1)
    conv.bdat(b"line1\n", last=False, expected=b"BDAT 7\r\nline1\r\n")
    assert conv.conn.state is ClientState.BDAT
    with pytest.raises(LocalProtocolError):
        conv.conn.send(Data())
    conv.bdat(b"line2\r", last=False, expected=b"BDAT 5\r\nline2")
    conv.bdat(b"\n.x", last=True, expected=b"BDAT 4 LAST\r\n\r\n.x")
    assert conv.conn.state is ClientState.READY
    conv.server(
        b"250 ok\r\n250 ok\r\n250 7 octets\r\n250 5 octets\r\n250 2.0.0 queued\r\n",
        replied(MAIL, 250, "ok"),
        replied(R1, 250, "ok"),
        replied(Bdat(7), 250, "7 octets"),
        replied(Bdat(5), 250, "5 octets"),
        replied(Bdat(4, True), 250, "2.0.0 queued"),
    )


def test_failed_bdat_chunk_returns_to_ready() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(MAIL)
    conv.client(R1)
    conv.bdat(b"abc", last=False)
    conv.server(
        b"250 ok\r\n250 ok\r\n552 too big\r\n",
        replied(MAIL, 250, "ok"),
        replied(R1, 250, "ok"),
        replied(Bdat(3), 552, "too big"),
    )
    assert conv.conn.state is ClientState.READY
    with pytest.raises(LocalProtocolError):
        conv.conn.send_bdat(b"more", last=True)


def test_bdat_via_send_and_raw_payload() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(MAIL)
    conv.client(R1)
    conv.client(Bdat(5, True), b"BDAT 5 LAST\r\n")
    assert conv.conn.state is ClientState.READY


reply_codes = st.sampled_from([250, 251, 450, 451, 550, 553])


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=6),
    st.data(),
    st.lists(st.integers(min_value=0, max_value=500), max_size=8),
)
def test_pipelined_group_pairs_in_order(n: int, data: st.DataObject, cuts: list[int]) -> None:
    conv = Conversation()
    conv.hello()
    commands: list[Command] = [MAIL, *(RcptTo(f"r{i}@y.example") for i in range(n)), Data()]
    for command in commands:
        conv.client(command)
    codes = [data.draw(reply_codes) for _ in range(n + 1)]
    data_code = data.draw(st.sampled_from([354, 503, 554]))
    wire = b"".join(b"%d x\r\n" % c for c in [*codes, data_code])
    points = sorted({c % (len(wire) + 1) for c in cuts})
    events = []
    for a, b in itertools.pairwise([0, *points, len(wire)]):
        if b > a:  # an empty slice would mean EOF
            events += conv.receive(wire[a:b])
    assert [e.command for e in events if isinstance(e, CommandReplied)] == commands
    assert conv.conn.pending == 0
    expected = ClientState.BODY if data_code == 354 else ClientState.READY
    assert conv.conn.state is expected
    accepted = tuple(f"r{i}@y.example" for i in range(n) if 200 <= codes[i + 1] < 300)
    assert conv.conn.accepted_recipients == accepted


def test_raw_is_state_neutral_inside_transaction() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(MAIL)
    conv.client(Raw("XFORWARD NAME=spike.example"), b"XFORWARD NAME=spike.example\r\n")
    assert conv.conn.state is ClientState.MAIL
    conv.server(
        b"250 ok\r\n250 ok\r\n",
        replied(MAIL, 250, "ok"),
        replied(Raw("XFORWARD NAME=spike.example"), 250, "ok"),
    )
    assert conv.conn.state is ClientState.MAIL


def test_body_smuggling_split_across_send_body_calls() -> None:
    conv = Conversation()
    conv.hello()
    for command in (MAIL, R1, Data()):
        conv.client(command)
    conv.receive(b"250 ok\r\n250 ok\r\n354 go\r\n")
    start = len(conv.wire)
    for chunk in (b"x\r", b"\n", b".", b"\r", b"\nMAIL FROM:<evil@x>\n", b"\r"):
        conv.body(chunk)
    conv.end_body()
    sent = bytes(conv.wire[start:])
    assert sent == b"x\r\n..\r\nMAIL FROM:<evil@x>\r\n\r\n.\r\n"
    assert sent.count(b"\r\n.\r\n") == 1


def test_send_bdat_binary_keeps_bytes() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(MAIL)
    conv.client(R1)
    assert conv.conn.send_bdat(b"a\rb\n", last=True, canonicalize=False) == b"BDAT 4 LAST\r\na\rb\n"
