"""Review findings in protocol/, esmtp/ and transport/: each test failed before its fix."""

from __future__ import annotations

import asyncio
import math
import socket
import ssl
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests._support.conversation import Conversation, replied
from tests._support.modes import Mode, plain_builder
from tests._support.scripted_server import Expect, ScriptedServer, Send, WaitClose, ehlo_reply

from mailsdk.errors import (
    ConfigurationError,
    ConnectError,
    InvalidInputError,
    RemoteProtocolError,
    TLSError,
)
from mailsdk.protocol import (
    ClientState,
    Command,
    CommandReplied,
    Data,
    Ehlo,
    Expn,
    Help,
    MailFrom,
    Noop,
    Raw,
    RcptTo,
    Vrfy,
)
from mailsdk.transport import AsyncTcpConnector, SocketStream, TcpConnector, TlsSettings

# -- replies that arrive before their command was sent ---------------------------------------------


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


# -- text that cannot be encoded, or that Unicode-aware servers split into lines ----------------------

#: Lone surrogates (from ``surrogateescape``-decoded headers or file names) cannot be UTF-8
#: encoded; C1 controls (NEL U+0085), LINE SEPARATOR and PARAGRAPH SEPARATOR end a line for any
#: server that splits decoded text with ``str.splitlines()`` (RFC 5198 §2 forbids them).
BAD_CHARACTERS = ["\udcff", "\ud800", "\x85", "\x9b", "\u2028", "\u2029"]


@pytest.mark.parametrize("bad", BAD_CHARACTERS)
def test_unencodable_or_line_breaking_characters_are_refused(bad: str) -> None:
    builders: list[Callable[[], Command]] = [
        lambda: MailFrom(f"a{bad}b@example.org"),
        lambda: MailFrom(f'"a{bad}b"@example.org'),
        lambda: RcptTo(f'"x{bad}"@example.com'),
        lambda: RcptTo("b@example.com", params=(f"X-P=v{bad}",)),
        lambda: Ehlo(f"me{bad}.example"),
        lambda: Noop(f"x{bad}y"),
        lambda: Vrfy(f"x{bad}y"),
        lambda: Expn(f"x{bad}y"),
        lambda: Help(f"x{bad}y"),
        lambda: Raw(f"NOOP{bad}RSET"),
    ]
    for build in builders:
        with pytest.raises(InvalidInputError):
            build().to_bytes()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, exclude_categories=()), min_size=1))
def test_a_command_that_builds_always_encodes(text: str) -> None:
    # Whatever is accepted at construction must serialise (no UnicodeEncodeError at send time)
    # and produce exactly one line.
    for build in (lambda: Noop(text), lambda: Raw("NOOP " + text), lambda: RcptTo(f'"{text}"@x')):
        try:
            command = build()
        except InvalidInputError:
            continue
        wire = command.to_bytes()
        assert wire.count(b"\n") == 1 and wire.endswith(b"\r\n")
        assert wire.decode("utf-8").count("\r") == 1
        assert len(wire.decode("utf-8").splitlines()) == 1


def test_a_failing_send_changes_nothing() -> None:
    class Broken(Noop):
        def to_bytes(self) -> bytes:
            raise InvalidInputError("cannot encode")

    conv = Conversation()
    conv.hello()
    with pytest.raises(InvalidInputError):
        conv.conn.send(Broken())
    assert conv.conn.pending == 0
    assert conv.conn.state is ClientState.READY
    conv.client(Noop(), b"NOOP\r\n")
    conv.server(b"250 ok\r\n", replied(Noop(), 250, "ok"))


# -- transport: host names that cannot be encoded ---------------------------------------------------


@pytest.mark.parametrize("host", ["a..example", "x" * 64 + ".example", "." * 3])
def test_unencodable_host_name_is_a_connect_error(host: str) -> None:
    with pytest.raises(ConnectError):
        TcpConnector(host, 25).connect(2.0)


@pytest.mark.parametrize("host", ["a..example", "x" * 64 + ".example"])
def test_unencodable_host_name_is_a_connect_error_async(host: str) -> None:
    async def main() -> None:
        await AsyncTcpConnector(host, 25).connect(2.0)

    with pytest.raises(ConnectError):
        asyncio.run(main())


@pytest.mark.parametrize("host", ["mx\x00.example", "mx\r\n.example", "mx .example"])
def test_host_with_controls_or_spaces_is_invalid_input(host: str) -> None:
    with pytest.raises(InvalidInputError):
        TcpConnector(host, 25)
    with pytest.raises(InvalidInputError):
        AsyncTcpConnector(host, 25)


def test_unencodable_tls_server_name_is_a_tls_error() -> None:
    left, right = socket.socketpair()
    try:
        stream = SocketStream(left, transport="tcp")
        with pytest.raises(TLSError):
            stream.start_tls(ssl.create_default_context(), "a..example", 1.0)
    finally:
        left.close()
        right.close()


# -- TLS settings: an ssl_context silently overriding explicit security options ----------------------


@pytest.mark.parametrize(
    "option",
    [
        {"minimum_version": ssl.TLSVersion.TLSv1_3},
        {"maximum_version": ssl.TLSVersion.TLSv1_3},
        {"verify": False},
        {"check_hostname": False},
    ],
)
def test_ssl_context_with_other_security_options_is_refused(option: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="ssl_context"):
        TlsSettings(ssl_context=ssl.create_default_context(), **option)  # type: ignore[arg-type]


# -- the same through both clients: an extra reply never answers a later command ---------------------


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


# -- a reply followed by an over-long line in the same chunk -----------------------------------------


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


# -- transport: timeouts a socket cannot hold ---------------------------------------------------------


@pytest.mark.parametrize("timeout", [math.inf, 1e12])
def test_huge_timeouts_mean_no_limit_for_blocking_streams(timeout: float) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        stream = TcpConnector("127.0.0.1", listener.getsockname()[1]).connect(timeout)
        with stream:
            peer, _ = listener.accept()
            with peer:
                peer.sendall(b"220 hi\r\n")
                assert stream.receive(100, timeout) == b"220 hi\r\n"
                stream.send_all(b"QUIT\r\n", timeout)
                assert peer.recv(100) == b"QUIT\r\n"
    finally:
        listener.close()


def test_nan_timeout_is_invalid_input() -> None:
    left, right = socket.socketpair()
    with SocketStream(left, transport="tcp") as stream, right:
        with pytest.raises(InvalidInputError):
            stream.receive(100, math.nan)
        with pytest.raises(InvalidInputError):
            stream.send_all(b"x", math.nan)

    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        try:
            with pytest.raises(InvalidInputError):
                await AsyncTcpConnector("127.0.0.1", listener.getsockname()[1]).connect(math.nan)
            stream = await AsyncTcpConnector("127.0.0.1", listener.getsockname()[1]).connect(1.0)
            try:
                with pytest.raises(InvalidInputError):
                    await stream.receive(100, math.nan)
            finally:
                await stream.aclose()
        finally:
            listener.close()

    asyncio.run(main())


def test_unencodable_tls_server_name_is_a_tls_error_async() -> None:
    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        try:
            stream = await AsyncTcpConnector("127.0.0.1", listener.getsockname()[1]).connect(1.0)
            try:
                with pytest.raises(TLSError):
                    await stream.start_tls(ssl.create_default_context(), "a..example", 1.0)
            finally:
                await stream.aclose()
        finally:
            listener.close()

    asyncio.run(main())
