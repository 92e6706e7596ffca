"""mailsdk.testing.MailServer with real mailsdk clients, both modes: recording, scripted
refusals and faults, TLS with the throwaway CA, AUTH with passwords and tokens, extensions."""

from __future__ import annotations

import socket
from collections.abc import Callable
from email.message import EmailMessage

import attrs
import pytest
from tests._support.modes import Mode

import mailsdk.client._express
from mailsdk import (
    AuthenticationFailed,
    ConfigurationError,
    ConnectionLost,
    DeliveryStatus,
    DeliveryUnknown,
    GreetingRefused,
    MailError,
    MailTimeout,
    Outgoing,
    RecipientsRefused,
    SenderRefused,
    Timeouts,
)
from mailsdk.testing import MailServer, Rule, serve


def message(subject: str = "kit", to: str = "bob@example.org, carol@example.org") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Hello,\n.leading dot\n")
    return msg


async def test_records_envelope_raw_bytes_and_parsed_message(
    mode: Mode, mail_server: MailServer
) -> None:
    async with mode.session(mail_server.client_builder()) as s:
        result = await s.send_message(message("recorded"))
    assert sorted(result.accepted) == ["bob@example.org", "carol@example.org"]
    (received,) = mail_server.messages
    assert received.mail_from == "alice@example.com"
    assert received.rcpt_tos == ("bob@example.org", "carol@example.org")
    assert received.confirmed == received.rcpt_tos
    assert received.message["Subject"] == "recorded"
    assert b"\r\n.leading dot\r\n" in received.data  # dots un-stuffed, CRLF kept
    assert any(opt.startswith("SIZE=") for opt in received.mail_options)
    assert mail_server.verbs[:4] == ["EHLO", "MAIL", "RCPT", "RCPT"]
    assert b"..leading dot" in mail_server.transcript  # the wire form, dot-stuffed
    assert mail_server.sessions == 1


async def test_refused_recipient_is_a_partial_result(mode: Mode, mail_server: MailServer) -> None:
    mail_server.refuse_recipient("carol@example.org")
    async with mode.session(mail_server.client_builder()) as s:
        result = await s.send_message(message())
        assert list(result.refused) == ["carol@example.org"]
        assert result.refused["carol@example.org"].code == 550
        with pytest.raises(RecipientsRefused):
            await s.send_message(message(to="carol@example.org"))
    assert [m.rcpt_tos for m in mail_server.messages] == [("bob@example.org",)]


async def test_a_4xx_burst_then_service(mode: Mode, mail_server: MailServer) -> None:
    mail_server.transient("MAIL", times=2)
    async with mode.session(mail_server.client_builder()) as s:
        for _ in range(2):
            with pytest.raises(SenderRefused) as info:
                await s.send_message(message())
            assert info.value.is_transient
        await s.send_message(message("third time"))
    assert [m.message["Subject"] for m in mail_server.messages] == ["third time"]


async def test_421_closes_the_session(mode: Mode, mail_server: MailServer) -> None:
    mail_server.shutdown_on("RCPT")
    with pytest.raises(MailError) as info:
        async with mode.session(mail_server.client_builder()) as s:
            await s.send_message(message())
    assert "421" in str(info.value)
    assert mail_server.received == []


async def test_drop_after_the_dot_is_an_unknown_outcome(
    mode: Mode, mail_server: MailServer
) -> None:
    mail_server.drop_after_dot()
    with pytest.raises(DeliveryUnknown):
        async with mode.session(mail_server.client_builder()) as s:
            await s.send_message(message("maybe"))
    (received,) = mail_server.received
    assert received.message["Subject"] == "maybe"
    assert received.confirmed == () and mail_server.messages == []


async def test_drop_before_the_dot_records_nothing(mode: Mode, mail_server: MailServer) -> None:
    mail_server.drop_before_dot()
    big = message("big")
    big.set_content("x" * 1000 + "\n" * 1 + ("y" * 998 + "\n") * 8000)  # ~8 MB: outlasts buffers
    with pytest.raises(ConnectionLost):
        async with mode.session(mail_server.client_builder()) as s:
            await s.send_message(big)
    assert mail_server.received == []
    async with mode.session(mail_server.client_builder()) as s:  # the server carries on
        await s.send_message(message("after"))
    assert [m.message["Subject"] for m in mail_server.messages] == ["after"]


async def test_slow_reply_meets_the_client_deadline(mode: Mode, mail_server: MailServer) -> None:
    mail_server.slow("MAIL", 3.0, times=1)
    with pytest.raises(MailTimeout):
        async with mode.session(mail_server.client_builder(timeout=0.5)) as s:
            await s.send_message(message())
    assert mail_server.received == []


async def test_stalled_reader_makes_the_client_give_up(mode: Mode, mail_server: MailServer) -> None:
    mail_server.stall("DATA")
    big = message("stalled")
    big.set_content(("z" * 998 + "\n") * 20_000)  # 20 MB: more than the socket buffers hold
    # The body's write deadline scales with its size (Timeouts.data_rate): ask for a fast link.
    timeouts = attrs.evolve(Timeouts.uniform(1.0), data_rate=1e9)
    with pytest.raises((MailTimeout, ConnectionLost)):
        async with mode.session(mail_server.client_builder().with_timeouts(timeouts)) as s:
            await s.send_message(big)
    assert mail_server.received == []


async def test_greeting_refused(mode: Mode, mail_server: MailServer) -> None:
    mail_server.add_rule(Rule("GREETING", "554 5.3.2 not today", close=True))
    with pytest.raises(GreetingRefused):
        async with mode.session(mail_server.client_builder()):
            pass


@pytest.mark.mail_server(tls="starttls", require_tls=True, users={"me": "pw"})
async def test_starttls_with_the_throwaway_ca_and_auth(mode: Mode, mail_server: MailServer) -> None:
    async with mode.session(mail_server.client_builder(username="me", password="pw")) as s:
        assert s.tls is not None
        assert s.mechanism in ("PLAIN", "LOGIN")
        await s.send_message(message())
    assert [(x.username, x.success) for x in mail_server.logins] == [("me", True)]
    assert b"pw" not in mail_server.transcript.split(b"STARTTLS", 1)[0]
    with pytest.raises(AuthenticationFailed):
        async with mode.session(mail_server.client_builder(username="me", password="wrong")):
            pass


@pytest.mark.mail_server(tls="implicit")
async def test_implicit_tls(mode: Mode, mail_server: MailServer) -> None:
    async with mode.session(mail_server.client_builder()) as s:
        assert s.tls is not None
        await s.send_message(message())
    assert len(mail_server.messages) == 1


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
async def test_oauth_tokens(
    mode: Mode, mail_server_factory: Callable[..., MailServer], mechanism: str
) -> None:
    server = mail_server_factory(tls="starttls", tokens={"me@example.com": "ya29.token"})
    builder = server.client_builder(username="me@example.com", token="ya29.token")
    builder = builder.with_token_provider(
        "me@example.com",
        builder.config().auth.token_provider,
        mechanisms=[mechanism],  # type: ignore[union-attr,arg-type]
    )
    async with mode.session(builder) as s:
        assert s.mechanism == mechanism
    bad = server.client_builder(username="me@example.com", token="expired")
    with pytest.raises(AuthenticationFailed):
        async with mode.session(bad):
            pass
    assert [(x.mechanism, x.success) for x in server.logins][-1][1] is False


async def test_extensions_as_configured(
    mode: Mode, mail_server_factory: Callable[..., MailServer]
) -> None:
    lean = mail_server_factory(pipelining=False, smtputf8=False, eightbitmime=False, size=None)
    async with mode.session(lean.client_builder()) as s:
        caps = s.capabilities
        for keyword in ("PIPELINING", "SMTPUTF8", "8BITMIME", "SIZE", "CHUNKING", "AUTH"):
            assert keyword not in caps.keywords
    rich = mail_server_factory(chunking=True, size=1000)
    async with mode.session(rich.client_builder()) as s:
        assert {"PIPELINING", "CHUNKING", "SMTPUTF8", "8BITMIME", "SIZE"} <= set(
            s.capabilities.keywords
        )
        await s.send_message(message("by bdat"))
        with pytest.raises(MailError):
            await s.send_message(message("x" * 2000))
    assert "BDAT" in rich.verbs
    assert [m.message["Subject"] for m in rich.messages] == ["by bdat"]


async def test_lmtp_per_recipient_refusal_over_a_unix_socket(
    mode: Mode,
    mail_server_factory: Callable[..., MailServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    import tempfile

    path = tempfile.mkdtemp(prefix="mkt") + "/lmtp"
    server = mail_server_factory(lmtp=True, unix_path=path)
    server.refuse_delivery("452 4.2.2 mailbox full", recipient="carol@example.org")
    async with mode.session(server.client_builder()) as s:
        result = await s.send_message(message())
    assert result.accepted == ("bob@example.org",) or list(result.accepted) == ["bob@example.org"]
    assert result.refused["carol@example.org"].code == 452
    assert server.received[0].confirmed == ("bob@example.org",)
    assert "LHLO" in server.verbs


def test_a_client_that_drops_mid_data_leaves_the_server_serving() -> None:
    with serve() as server:
        with socket.create_connection((server.host, server.port), timeout=5) as raw:
            raw.recv(1024)
            raw.sendall(
                b"EHLO raw\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
            )
            seen = b""
            while b"354" not in seen:
                seen += raw.recv(4096)
            raw.sendall(b"Subject: half\r\n\r\nonly part of the bo")
        with server.client().connect() as session:
            session.send_message(message("whole"))
        assert [m.message["Subject"] for m in server.received] == ["whole"]
        assert server.sessions == 2


def test_rules_are_validated_and_scripts_retire_used_rules() -> None:
    with pytest.raises(ValueError, match="not an SMTP reply"):
        Rule("RCPT", "hello")
    with pytest.raises(ValueError, match="not an SMTP reply"):
        Rule("RCPT", "550 x\r\nRCPT injected")
    server = MailServer()
    server.transient("RCPT", times=1)
    assert server.script.match("RCPT", "TO:<a@b>") is not None
    assert server.script.match("RCPT", "TO:<a@b>") is None
    assert server.script.rules == ()


def test_client_builder_needs_a_started_server() -> None:
    from mailsdk import ConfigurationError

    with pytest.raises(ConfigurationError, match="start the MailServer"):
        MailServer().client_builder()
    with pytest.raises(ConfigurationError, match="require_tls"):
        MailServer(require_tls=True)


@pytest.mark.mail_server(chunking=True)
def test_a_client_that_drops_mid_bdat_leaves_the_server_serving(mail_server: MailServer) -> None:
    with socket.create_connection((mail_server.host, mail_server.port), timeout=5) as raw:
        raw.recv(1024)
        raw.sendall(b"EHLO raw\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n")
        seen = b""
        while seen.count(b"\r\n250 ") < 2 and b"250 2.1.5" not in seen:
            seen += raw.recv(4096)
        raw.sendall(b"BDAT 100 LAST\r\nSubject: cut\r\n\r\nonly ten")
    with mail_server.client().connect() as session:
        session.send_message(message("whole"))
    assert [m.message["Subject"] for m in mail_server.received] == ["whole"]


async def test_send_many_outcomes_under_faults(mode: Mode, mail_server: MailServer) -> None:
    mail_server.refuse_recipient("nobody@example.org", times=1)
    mail_server.add_rule(Rule("END-OF-DATA", close=True, times=1))  # the 2nd message's reply
    items = [
        Outgoing(message(f"m{i}", to=to))
        for i, to in enumerate(["nobody@example.org", "bob@example.org", "bob@example.org"])
    ]
    async with mode.session(mail_server.client_builder()) as s:
        outcomes = await s.send_many_list(items)
    assert [o.status for o in outcomes] == [
        DeliveryStatus.REFUSED,
        DeliveryStatus.UNKNOWN,  # read to its end, never confirmed: never resent
        DeliveryStatus.FAILED,  # not started when the connection went
    ]
    assert [m.message["Subject"] for m in mail_server.received] == ["m1"]
    assert mail_server.messages == []


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback on this machine")
async def test_ipv6_loopback_with_starttls(
    mode: Mode, mail_server_factory: Callable[..., MailServer]
) -> None:
    server = mail_server_factory(host="::1", tls="starttls")
    async with mode.session(server.client_builder()) as s:
        assert s.tls is not None
        await s.send_message(message("v6"))
    assert [m.message["Subject"] for m in server.messages] == ["v6"]


@pytest.mark.mail_server(chunking=True, size=100)
def test_bdat_over_the_size_limit_is_read_and_refused(mail_server: MailServer) -> None:
    with socket.create_connection((mail_server.host, mail_server.port), timeout=5) as raw:
        raw.recv(1024)
        raw.sendall(b"EHLO raw\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n")
        raw.sendall(b"BDAT 300 LAST\r\n" + b"x" * 300 + b"NOOP\r\n")
        seen = b""
        while not (b"552" in seen and b"\r\n250" in seen.split(b"552", 1)[1]):
            seen += raw.recv(4096)
    assert b"552 5.3.4" in seen  # refused, and the NOOP after the chunk still understood
    assert mail_server.received == []


@pytest.mark.mail_server(chunking=True)
def test_chunks_pipelined_after_a_refused_one_are_discarded(mail_server: MailServer) -> None:
    # RFC 3030 §2: the chunks a pipelining client sent behind a refused one are read and
    # discarded up to LAST; they used to be delivered as a (truncated) message of their own.
    mail_server.transient("BDAT")
    with socket.create_connection((mail_server.host, mail_server.port), timeout=5) as raw:
        raw.recv(1024)
        raw.sendall(b"EHLO raw\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n")
        raw.sendall(b"BDAT 3\r\none" + b"BDAT 3\r\ntwo" + b"BDAT 5 LAST\r\nthree")
        raw.sendall(b"NOOP\r\nQUIT\r\n")
        seen = b""
        while chunk := raw.recv(4096):  # until the server closes after QUIT
            seen += chunk
    replies = [line[:3] for line in seen.split(b"\r\n") if line[3:4] == b" "]
    assert replies[-5:] == [b"451", b"554", b"554", b"250", b"221"]  # NOOP still understood
    assert mail_server.received == []


@pytest.mark.mail_server(chunking=True)
@pytest.mark.parametrize("which", ["first", "last"])
async def test_a_scripted_bdat_refusal_reads_the_chunk_and_keeps_the_session(
    mode: Mode, mail_server: MailServer, which: str
) -> None:
    # A refused chunk must still be read (RFC 3030 §2): its bytes used to be parsed as
    # commands ("unrecognised: SUBJECT:"), the client saw replies out of step and the session
    # was lost.
    big = b"From: a@example.com\r\nSubject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 600
    if which == "first":
        mail_server.transient("BDAT")
    else:
        size = len(big) % (1 << 18)  # the client's last chunk (262144-byte chunks before it)
        mail_server.refuse("BDAT", "452 4.3.1 Out of storage", argument=f"{size} LAST", times=1)
    async with mode.session(mail_server.client_builder().with_chunking(True)) as s:
        with pytest.raises(MailError) as refused:
            await s.sendmail("a@example.com", ["b@example.org"], big)
        assert refused.value.is_transient
        await s.sendmail("a@example.com", ["b@example.org"], b"Subject: next\r\n\r\nok\r\n")
    assert [m.data for m in mail_server.received] == [b"Subject: next\r\n\r\nok\r\n"]
    assert b"unrecognised" not in b"".join(str(c).encode() for c in mail_server.commands)
    assert mail_server.verbs.count("MAIL") == 2


async def test_rules_added_before_start_are_not_used_up_by_the_start_up_probe(mode: Mode) -> None:
    # setUp style: script first, then start(). aiosmtpd's own start-up connection used to
    # take the GREETING rule, so the test's client was greeted normally.
    server = MailServer()
    server.add_rule(Rule("GREETING", "554 5.3.2 closed for maintenance", close=True, times=1))
    server.slow("GREETING", 0.01, times=1)
    server.start()
    try:
        with pytest.raises(GreetingRefused):
            async with mode.session(server.client_builder()):
                pass
        assert [r.command for r in server.script.rules] == ["GREETING"]  # the slow one is left
        async with mode.session(server.client_builder()) as s:
            await s.send_message(message())
        assert server.sessions == 2
        assert len(server.messages) == 1
    finally:
        server.stop()


def test_refusing_one_recipients_delivery_needs_lmtp(mail_server: MailServer) -> None:
    # On SMTP the rule could never match (one reply for all): it used to be a silent no-op.
    with pytest.raises(ConfigurationError, match="LMTP"):
        mail_server.refuse_delivery(recipient="bob@example.org")
    assert mail_server.script.rules == ()
    assert mail_server.refuse_delivery().command == "END-OF-DATA"


@pytest.mark.mail_server(chunking=True)
@pytest.mark.parametrize("express", [True, False], ids=["express-lane", "general-flow"])
async def test_chunks_pipelined_behind_a_refused_one_are_discarded(
    mode: Mode, mail_server: MailServer, express: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RFC 3030 §2: the server "MUST be prepared to accept and discard additional BDAT chunks
    # already in the pipeline after the failed BDAT". The kit used to start a new message with
    # them, and delivered the tail of the refused message (glued to the next one).
    big = b"From: a@example.com\r\nSubject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 600
    small = b"Subject: next\r\n\r\nok\r\n"
    # The client's side of it: the refused chunk's transaction stays open on this server, so
    # the next message's MAIL must wait for the chunks' replies and an RSET (it was pipelined
    # behind BDAT LAST and refused as a nested MAIL).
    monkeypatch.setattr(mailsdk.client._express, "ENABLED", express)
    mail_server.transient("BDAT")
    items = [
        Outgoing(big, sender="a@example.com", recipients=["b@example.org"]),
        Outgoing(small, sender="a@example.com", recipients=["b@example.org"]),
    ]
    async with mode.session(mail_server.client_builder().with_chunking(True)) as s:
        outcomes = await s.send_many_list(items)
    assert [o.status for o in outcomes] == [
        DeliveryStatus.REFUSED,
        DeliveryStatus.ACCEPTED,
    ]
    assert [m.data for m in mail_server.received] == [small]
