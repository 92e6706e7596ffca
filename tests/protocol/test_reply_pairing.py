"""Replies stay paired with their commands: unsolicited, early, extra and over-long replies."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests._support.conversation import Conversation, replied
from tests._support.modes import Mode, plain_builder
from tests._support.scripted_server import Expect, ScriptedServer, Send, WaitClose, ehlo_reply

from mailsdk.errors import (
    RemoteProtocolError,
)
from mailsdk.protocol import (
    ClientState,
    CommandReplied,
    Data,
    Ehlo,
    MailFrom,
    Noop,
    RcptTo,
)


def test_leftover_reply_is_never_paired_with_the_next_command() -> None:
    # A driver stops reading once every command is answered; an extra reply buffered behind the
    # last one must not become the reply to the next command (replies out of step).
    conv = Conversation()
    conv.hello()
    conv.client(Noop())
    conv.conn.receive_data(b"250 ok\r\n250 2.0.0 queued as FAKE\r\n")
    assert conv.conn.next_event() == replied(Noop(), 250, "ok")
    assert conv.conn.pending == 0
    with pytest.raises(RemoteProtocolError, match="before"):
        conv.conn.send(MailFrom("a@example.org"))
    assert conv.conn.state is ClientState.ERROR


def test_reply_sent_with_the_354_is_not_taken_as_the_end_of_data_reply() -> None:
    # "354 go" and a premature "250 accepted" in one packet: the 250 cannot answer a body the
    # server has not seen yet.
    conv = Conversation()
    conv.hello()
    conv.client(MailFrom("a@example.org"))
    conv.server(b"250 ok\r\n", replied(MailFrom("a@example.org"), 250, "ok"))
    conv.client(RcptTo("b@example.com"))
    conv.server(b"250 ok\r\n", replied(RcptTo("b@example.com"), 250, "ok"))
    conv.client(Data())
    conv.conn.receive_data(b"354 go\r\n250 2.0.0 accepted\r\n")
    assert conv.conn.next_event() == replied(Data(), 354, "go")
    conv.body(b"Subject: x\r\n\r\nhi\r\n")
    with pytest.raises(RemoteProtocolError, match="before"):
        conv.end_body()


def test_data_sent_right_after_the_greeting_is_unsolicited() -> None:
    conv = Conversation()
    conv.conn.receive_data(b"220 mx ESMTP\r\n250 mx.example\r\n")
    conv.conn.next_event()
    with pytest.raises(RemoteProtocolError):
        conv.client(Ehlo("me.example"))


def test_partial_unsolicited_bytes_are_refused_too() -> None:
    conv = Conversation()
    conv.hello()
    conv.conn.receive_data(b"250 fak")
    with pytest.raises(RemoteProtocolError):
        conv.client(Noop())


def test_asynchronous_421_still_answers_the_next_command() -> None:
    # RFC 5321 §3.8: a 421 may be sent "asynchronously from command receipt (on the assumption
    # that the client will receive it after the next command is issued)".
    conv = Conversation()
    conv.hello()
    conv.conn.receive_data(b"421 4.3.2 shutting down\r\n")
    conv.client(Noop(), b"NOOP\r\n")
    assert conv.conn.next_event() == replied(Noop(), 421, "4.3.2 shutting down")


async def test_extra_reply_is_not_paired_with_the_next_command_end_to_end(
    mode: Mode, scripted: Callable[..., ScriptedServer]
) -> None:
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply("8BITMIME")),
            Expect(b"NOOP"),
            Send(b"250 ok\r\n250 2.0.0 queued as FAKE\r\n"),
            WaitClose(),
        ]
    )
    session = await mode.connect(plain_builder(server.host, server.port))
    first = await session.noop()
    assert first.code == 250
    with pytest.raises(RemoteProtocolError):
        await session.noop()
    assert session.closed
    server.stop()
    assert server.received.count(b"NOOP") == 1


def _replies_until_error(chunks: list[bytes]) -> tuple[list[int], bool]:
    conv = Conversation()
    conv.hello()
    conv.client(Noop())
    conv.client(Noop())
    codes: list[int] = []
    try:
        for chunk in chunks:
            conv.conn.receive_data(chunk)
            while isinstance(event := conv.conn.next_event(), CommandReplied):
                codes.append(event.reply.code)
    except RemoteProtocolError:
        return codes, True
    return codes, False


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=9_100), max_size=4))
def test_replies_before_an_over_long_line_do_not_depend_on_chunking(cuts: list[int]) -> None:
    # "250 queued" (the message was accepted) followed by junk must be reported as accepted,
    # then fail, however the bytes were split: losing it would make the caller send it again.
    stream = b"250 ok\r\n250 2.0.0 queued\r\n" + b"x" * 9_000
    points = sorted({min(c, len(stream)) for c in cuts})
    bounds = zip([0, *points], [*points, len(stream)], strict=True)
    chunks = [stream[a:b] for a, b in bounds if b > a]  # b"" would mean EOF
    assert _replies_until_error(chunks) == ([250, 250], True)


def test_final_reply_with_junk_behind_it_is_still_delivered() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(Noop())
    conv.conn.receive_data(b"250 ok\r\n" + b"x" * 9_000)
    assert conv.conn.next_event() == replied(Noop(), 250, "ok")
    with pytest.raises(RemoteProtocolError, match="longer than"):
        conv.conn.next_event()
    assert conv.conn.state is ClientState.ERROR


def test_receiving_again_without_draining_stays_bounded() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(Noop())
    conv.conn.receive_data(b"250 ok\r\n" + b"x" * 9_000)
    with pytest.raises(RemoteProtocolError):
        conv.conn.receive_data(b"x" * 9_000)
    assert conv.conn.state is ClientState.ERROR


def test_over_long_line_alone_still_fails_in_receive_data() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(Noop())
    with pytest.raises(RemoteProtocolError):
        conv.conn.receive_data(b"250 " + b"x" * 9_000)
