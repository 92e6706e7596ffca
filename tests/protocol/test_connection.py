"""ClientConnection: greeting, EHLO, AUTH, STARTTLS, QUIT/EOF, errors (pure, via Conversation)."""

from __future__ import annotations

import pytest
from tests._support.conversation import Conversation, replied

from mailsdk.errors import InvalidInputError, LocalProtocolError, RemoteProtocolError
from mailsdk.protocol import (
    NEED_DATA,
    Auth,
    AuthResponse,
    ClientConnection,
    ClientState,
    Command,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfData,
    EnhancedStatus,
    GreetingReceived,
    Helo,
    Lhlo,
    MailFrom,
    Noop,
    Quit,
    Raw,
    RcptTo,
    Reply,
    ReplyLimits,
    Rset,
    StartTls,
    Vrfy,
)


def test_greeting_and_ehlo() -> None:
    conv = Conversation()
    assert conv.conn.state is ClientState.CONNECTED
    assert conv.conn.pending == 1  # the greeting is owed
    conv.server(
        b"220 mx.example ESM",
    )
    conv.server(b"TP\r\n", GreetingReceived(Reply(220, (b"mx.example ESMTP",))))
    assert conv.conn.state is ClientState.GREETED
    assert conv.conn.pending == 0
    conv.client(Ehlo("me.example"), b"EHLO me.example\r\n")
    assert conv.conn.state is ClientState.HELLO_SENT
    conv.server(
        b"250-mx.example\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n",
        replied(Ehlo("me.example"), 250, "mx.example", "PIPELINING", "ENHANCEDSTATUSCODES"),
    )
    assert conv.conn.state is ClientState.READY


def test_ehlo_refused_then_helo() -> None:
    conv = Conversation()
    conv.greet()
    conv.client(Ehlo("me"), b"EHLO me\r\n")
    conv.server(b"502 5.5.1 no\r\n", replied(Ehlo("me"), 502, "5.5.1 no"))
    assert conv.conn.state is ClientState.GREETED
    with pytest.raises(LocalProtocolError, match="MAIL"):
        conv.conn.send(MailFrom("a@b.example"))
    conv.client(Helo("me"), b"HELO me\r\n")
    conv.server(b"250 ok\r\n", replied(Helo("me"), 250, "ok"))
    assert conv.conn.state is ClientState.READY


def test_no_command_before_greeting_except_quit() -> None:
    conn = ClientConnection()
    for command in (Ehlo("me"), Noop(), MailFrom("a@b.example"), Rset()):
        with pytest.raises(LocalProtocolError, match="CONNECTED"):
            conn.send(command)
    assert conn.state is ClientState.CONNECTED  # a refused send changes nothing
    conv = Conversation()
    conv.client(Quit(), b"QUIT\r\n")
    conv.server(
        b"554 go away\r\n221 bye\r\n",
        GreetingReceived(Reply(554, (b"go away",))),
        replied(Quit(), 221, "bye"),
    )
    conv.server(b"", ConnectionClosed())
    assert conv.conn.state is ClientState.CLOSED


def test_greeting_refused_is_reported_not_raised() -> None:
    conv = Conversation()
    conv.server(b"554 5.7.1 no service\r\n", GreetingReceived(Reply.build(554, "5.7.1 no service")))


def test_simple_commands_keep_state() -> None:
    conv = Conversation()
    conv.hello()
    cases: list[tuple[Command, bytes]] = [
        (Noop(), b"NOOP\r\n"),
        (Vrfy("bob"), b"VRFY bob\r\n"),
        (Raw("XYZ 1"), b"XYZ 1\r\n"),
    ]
    for command, wire in cases:
        conv.client(command, wire)
        conv.server(b"252 maybe\r\n", replied(command, 252, "maybe"))
        assert conv.conn.state is ClientState.READY


def test_illegal_commands_in_state() -> None:
    conv = Conversation()
    conv.hello()
    with pytest.raises(LocalProtocolError):
        conv.conn.send(RcptTo("b@example.org"))
    with pytest.raises(LocalProtocolError):
        conv.conn.send(Data())
    with pytest.raises(LocalProtocolError):
        conv.conn.send_body(b"x")
    with pytest.raises(LocalProtocolError):
        conv.conn.end_body()
    with pytest.raises(LocalProtocolError):
        conv.conn.send(AuthResponse(b"abc="))
    with pytest.raises(LocalProtocolError, match="end_body"):
        conv.conn.send(EndOfData())
    with pytest.raises(LocalProtocolError):
        conv.conn.tls_started()
    # None of that broke the connection.
    assert conv.conn.state is ClientState.READY
    conv.client(MailFrom("a@b.example"))
    with pytest.raises(LocalProtocolError, match="AUTH"):
        conv.conn.send(Auth("PLAIN", b"AGEAYg=="))  # RFC 4954 §4: not inside a transaction
    with pytest.raises(LocalProtocolError):
        conv.conn.send(Data())  # no RCPT yet
    with pytest.raises(LocalProtocolError):
        conv.conn.send(StartTls())


def test_lhlo_refused_in_smtp_and_ehlo_in_lmtp() -> None:
    conv = Conversation()
    conv.greet()
    with pytest.raises(LocalProtocolError, match="LHLO"):
        conv.conn.send(Lhlo("me"))


def test_invalid_input_never_reaches_the_connection() -> None:
    conv = Conversation()
    conv.hello()
    with pytest.raises(InvalidInputError):
        conv.conn.send(MailFrom("a@b.example\r\nRCPT TO:<evil@x>"))
    assert conv.conn.pending == 0


def test_auth_334_loop() -> None:
    conv = Conversation()
    conv.hello(capabilities=("AUTH LOGIN PLAIN",))
    conv.client(Auth("LOGIN"), b"AUTH LOGIN\r\n")
    assert conv.conn.state is ClientState.AUTH
    with pytest.raises(LocalProtocolError):
        conv.conn.send(AuthResponse(b"YWxpY2U="))  # no challenge yet
    conv.server(b"334 VXNlcm5hbWU6\r\n", replied(Auth("LOGIN"), 334, "VXNlcm5hbWU6"))
    assert conv.conn.state is ClientState.AUTH_CHALLENGE
    with pytest.raises(LocalProtocolError):
        conv.conn.send(Noop())
    conv.client(AuthResponse(b"YWxpY2U="), b"YWxpY2U=\r\n")
    conv.server(b"334 UGFzc3dvcmQ6\r\n", replied(AuthResponse(b"YWxpY2U="), 334, "UGFzc3dvcmQ6"))
    conv.client(AuthResponse(b"c2VjcmV0"), b"c2VjcmV0\r\n")
    conv.server(
        b"235 2.7.0 Authentication successful\r\n",
        replied(AuthResponse(b"c2VjcmV0"), 235, "2.7.0 Authentication successful"),
    )
    assert conv.conn.state is ClientState.READY


def test_auth_failure_and_cancel() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(Auth("PLAIN", b"AGEAYg=="), b"AUTH PLAIN AGEAYg==\r\n")
    conv.server(b"535 5.7.8 bad\r\n", replied(Auth("PLAIN", b"AGEAYg=="), 535, "5.7.8 bad"))
    assert conv.conn.state is ClientState.READY
    conv.client(Auth("XOAUTH2", b"dG9rZW4="))
    conv.server(
        b"334 eyJzdGF0dXMiOiI0MDEifQ==\r\n",
        replied(Auth("XOAUTH2", b"dG9rZW4="), 334, "eyJzdGF0dXMiOiI0MDEifQ=="),
    )
    conv.client(AuthResponse(b""), b"\r\n")
    conv.server(b"535 5.7.8 nope\r\n", replied(AuthResponse(b""), 535, "5.7.8 nope"))
    conv.client(Auth("LOGIN"))
    conv.server(b"334 VXNlcm5hbWU6\r\n", replied(Auth("LOGIN"), 334, "VXNlcm5hbWU6"))
    conv.client(AuthResponse(b"*"), b"*\r\n")
    conv.server(b"501 5.0.0 cancelled\r\n", replied(AuthResponse(b"*"), 501, "5.0.0 cancelled"))
    assert conv.conn.state is ClientState.READY


def test_starttls_then_ehlo_again() -> None:
    conv = Conversation()
    conv.hello(capabilities=("STARTTLS",))
    conv.conn.enhanced_status_codes = True
    conv.client(StartTls(), b"STARTTLS\r\n")
    with pytest.raises(LocalProtocolError):
        conv.conn.send(Noop())  # STARTTLS ends a pipelined group
    conv.server(b"220 2.0.0 go ahead\r\n", replied(StartTls(), 220, "2.0.0 go ahead"))
    assert conv.conn.state is ClientState.TLS_READY
    with pytest.raises(LocalProtocolError):
        conv.conn.send(MailFrom("a@b.example"))
    conv.conn.tls_started()
    assert conv.conn.state is ClientState.GREETED
    assert conv.conn.enhanced_status_codes is False  # pre-TLS knowledge discarded
    with pytest.raises(LocalProtocolError):
        conv.conn.send(MailFrom("a@b.example"))  # EHLO needed again (RFC 3207 §4.2)
    conv.client(Ehlo("me"), b"EHLO me\r\n")
    conv.server(b"250 mx\r\n", replied(Ehlo("me"), 250, "mx"))
    assert conv.conn.state is ClientState.READY


def test_starttls_refused() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(StartTls())
    conv.server(
        b"454 4.7.0 TLS not available\r\n", replied(StartTls(), 454, "4.7.0 TLS not available")
    )
    assert conv.conn.state is ClientState.READY


def test_starttls_injection_in_same_packet() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(StartTls())
    conv.conn.receive_data(b"220 go ahead\r\n250-injected\r\n")
    with pytest.raises(RemoteProtocolError, match="STARTTLS injection"):
        conv.conn.next_event()
    assert conv.conn.state is ClientState.ERROR


def test_starttls_injection_in_later_packet() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(StartTls())
    conv.server(b"220 go ahead\r\n", replied(StartTls(), 220, "go ahead"))
    with pytest.raises(RemoteProtocolError, match="STARTTLS injection"):
        conv.conn.receive_data(b"250 injected\r\n")
    assert conv.conn.state is ClientState.ERROR


def test_unsolicited_reply_is_an_error() -> None:
    conv = Conversation()
    conv.hello()
    conv.conn.receive_data(b"250 surprise\r\n")
    with pytest.raises(RemoteProtocolError, match="no command pending"):
        conv.conn.next_event()


def test_extra_reply_after_pipelined_group_is_an_error() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(Noop())
    conv.conn.receive_data(b"250 ok\r\n250 extra\r\n")
    assert conv.conn.next_event() == replied(Noop(), 250, "ok")
    with pytest.raises(RemoteProtocolError):
        conv.conn.next_event()


def test_error_state_is_sticky() -> None:
    conv = Conversation()
    conv.conn.receive_data(b"xyz garbage\r\n")
    with pytest.raises(RemoteProtocolError):
        conv.conn.next_event()
    assert conv.conn.state is ClientState.ERROR
    with pytest.raises(LocalProtocolError, match="ERROR"):
        conv.conn.next_event()
    with pytest.raises(LocalProtocolError, match="ERROR"):
        conv.conn.receive_data(b"220 ok\r\n")
    with pytest.raises(LocalProtocolError, match="ERROR"):
        conv.conn.send(Quit())


def test_send_failed_moves_to_error() -> None:
    conv = Conversation()
    conv.hello()
    conv.conn.send_failed()
    assert conv.conn.state is ClientState.ERROR
    with pytest.raises(LocalProtocolError):
        conv.conn.send(Noop())


def test_oversized_reply_line_errors_before_newline() -> None:
    conv = Conversation(limits=ReplyLimits(max_line_length=100))
    conv.greet()
    conv.client(Ehlo("me"))
    with pytest.raises(RemoteProtocolError, match="longer than 100"):
        conv.conn.receive_data(b"250-" + b"A" * 200)
    assert conv.conn.state is ClientState.ERROR


def test_quit_221_then_eof() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(Quit(), b"QUIT\r\n")
    assert conv.conn.state is ClientState.CLOSING
    with pytest.raises(LocalProtocolError):
        conv.conn.send(Noop())
    conv.server(b"221 2.0.0 bye\r\n", replied(Quit(), 221, "2.0.0 bye"))
    assert conv.conn.pending == 0
    conv.server(b"", ConnectionClosed())
    assert conv.conn.state is ClientState.CLOSED
    assert conv.conn.next_event() == ConnectionClosed()  # repeats
    with pytest.raises(LocalProtocolError):
        conv.conn.receive_data(b"more")


def test_eof_while_waiting_reports_closed_with_pending() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(MailFrom("a@b.example"))
    conv.server(b"", ConnectionClosed())
    assert conv.conn.pending == 1  # the driver maps this to ConnectionLost


def test_eof_in_the_middle_of_a_reply_is_remote_error() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(Noop())
    conv.conn.receive_data(b"250-partial\r\n250 no newl")
    assert conv.conn.next_event() is NEED_DATA
    conv.conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a reply"):
        conv.conn.next_event()


def test_eof_before_greeting() -> None:
    conv = Conversation()
    conv.server(b"", ConnectionClosed())
    assert conv.conn.pending == 1


def test_enhanced_status_flag_reaches_the_parser() -> None:
    conv = Conversation()
    conv.hello(capabilities=("ENHANCEDSTATUSCODES",))
    conv.conn.enhanced_status_codes = True
    conv.client(Noop())
    (event,) = conv.receive(b"250 4.0.0 odd but advertised\r\n")
    assert event.reply.enhanced == EnhancedStatus(4, 0, 0)  # type: ignore[union-attr]


def test_reply_split_byte_by_byte() -> None:
    conv = Conversation()
    data = b"220-mx.example\r\n220 ready\r\n"
    events = []
    for i in range(len(data)):
        events += conv.receive(data[i : i + 1])
    assert events == [GreetingReceived(Reply(220, (b"mx.example", b"ready")))]


def test_body_only_after_354() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(MailFrom("a@b.example"))
    conv.client(RcptTo("c@d.example"))
    conv.client(Data())
    with pytest.raises(LocalProtocolError):
        conv.conn.send_body(b"too early")
    conv.server(
        b"250 ok\r\n250 ok\r\n354 go\r\n",
        replied(MailFrom("a@b.example"), 250, "ok"),
        replied(RcptTo("c@d.example"), 250, "ok"),
        replied(Data(), 354, "go"),
    )
    conv.body(b"Subject: hi\n\n.dot\n", b"Subject: hi\r\n\r\n..dot\r\n")
    conv.end_body(b".\r\n")
    conv.server(b"250 2.0.0 queued\r\n", replied(EndOfData(), 250, "2.0.0 queued"))
    assert conv.conn.state is ClientState.READY
    assert conv.conn.pending == 0


def test_data_refused_returns_to_ready() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(MailFrom("a@b.example"))
    conv.client(RcptTo("c@d.example"))
    conv.client(Data())
    conv.server(
        b"250 ok\r\n250 ok\r\n554 5.5.1 no valid recipients\r\n",
        replied(MailFrom("a@b.example"), 250, "ok"),
        replied(RcptTo("c@d.example"), 250, "ok"),
        replied(Data(), 554, "5.5.1 no valid recipients"),
    )
    assert conv.conn.state is ClientState.READY
    with pytest.raises(LocalProtocolError):
        conv.conn.send_body(b"x")


def test_rset_aborts_transaction() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(MailFrom("a@b.example"))
    conv.client(RcptTo("c@d.example"))
    conv.client(Rset(), b"RSET\r\n")
    assert conv.conn.state is ClientState.READY
    conv.server(
        b"250 ok\r\n250 ok\r\n250 flushed\r\n",
        replied(MailFrom("a@b.example"), 250, "ok"),
        replied(RcptTo("c@d.example"), 250, "ok"),
        replied(Rset(), 250, "flushed"),
    )
    assert conv.conn.state is ClientState.READY


def test_reply_then_eof_buffered_together() -> None:
    conv = Conversation()
    conv.hello()
    conv.client(Quit())
    conv.conn.receive_data(b"221 bye\r\n")
    conv.server(b"", replied(Quit(), 221, "bye"), ConnectionClosed())
    assert conv.conn.pending == 0


def test_trailing_data_shows_unparsed_bytes() -> None:
    conv = Conversation()
    conv.conn.receive_data(b"220 hi\r\n250-part")
    assert isinstance(conv.conn.next_event(), GreetingReceived)
    assert conv.conn.trailing_data == b"250-part"
