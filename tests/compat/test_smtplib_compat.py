"""``mailsdk.compat.smtplib`` against aiosmtpd and scripted servers over real loopback sockets.

Every test uses the compat module exactly as smtplib code would, and checks errors with the
*standard library's* exception classes.
"""

from __future__ import annotations

import base64
import email.message
import email.mime.text
import hmac
import pathlib
import smtplib as stdlib_smtplib
import ssl
import sys
from collections.abc import Callable, Iterator

import pytest
import trustme
from tests._support.scripted_server import (
    Expect,
    ScriptedServer,
    Send,
    Step,
    Trickle,
    WaitClose,
    ehlo_reply,
)
from tests._support.smtpd import SmtpdServer

from mailsdk.compat import smtplib
from mailsdk.errors import InvalidInputError

TIMEOUT = 10.0
Factory = Callable[..., SmtpdServer]

EXCEPTIONS = (
    "SMTPException",
    "SMTPNotSupportedError",
    "SMTPServerDisconnected",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPRecipientsRefused",
    "SMTPDataError",
    "SMTPConnectError",
    "SMTPHeloError",
    "SMTPAuthenticationError",
)


def connect(server: SmtpdServer, cls: type[smtplib.SMTP] = smtplib.SMTP) -> smtplib.SMTP:
    return cls(server.host, server.port, local_hostname="client.test", timeout=TIMEOUT)


@pytest.fixture
def client_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    tls_ca.configure_trust(ctx)
    return ctx


# -- API surface ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_exceptions_are_the_stdlib_objects(name: str) -> None:
    assert getattr(smtplib, name) is getattr(stdlib_smtplib, name)


def test_module_constants_and_helpers_match_stdlib() -> None:
    for name in ("SMTP_PORT", "SMTP_SSL_PORT", "LMTP_PORT", "CRLF", "bCRLF", "_MAXLINE"):
        assert getattr(smtplib, name) == getattr(stdlib_smtplib, name), name
    assert smtplib._MAXCHALLENGE == stdlib_smtplib._MAXCHALLENGE
    assert smtplib.OLDSTYLE_AUTH.pattern == stdlib_smtplib.OLDSTYLE_AUTH.pattern
    for addr in ("a@b.c", "Name <a@b.c>", "<a@b.c>", "John", "<>", ""):
        assert smtplib.quoteaddr(addr) == stdlib_smtplib.quoteaddr(addr), addr
    for text in ("abc\n.jkl\rfoo\r\n..blue", ".", "", "x\r", "a\n\n.b", "é\n.ü"):
        assert smtplib.quotedata(text) == stdlib_smtplib.quotedata(text), text
    for module in ("socket", "email", "base64", "hmac", "sys", "re", "io", "copy", "datetime"):
        assert getattr(smtplib, module) is sys.modules[module]


# -- transactions ----------------------------------------------------------------------------------


def test_sendmail_returns_the_refused_dict(smtpd_factory: Factory) -> None:
    server = smtpd_factory(refuse_rcpt={"bad@example.com"})
    with connect(server) as smtp:
        refused = smtp.sendmail(
            "alice@example.com", ["bob@example.com", "bad@example.com"], "Subject: hi\n\nbody\n"
        )
    assert set(refused) == {"bad@example.com"}
    code, message = refused["bad@example.com"]
    assert code == 550 and b"User unknown" in message
    (msg,) = server.recorder.messages
    assert msg.rcpt_tos == ["bob@example.com"]
    assert msg.content == b"Subject: hi\r\n\r\nbody\r\n"
    assert any(opt.upper().startswith("SIZE=") for opt in msg.mail_options)


def test_all_recipients_refused_is_the_stdlib_exception(smtpd_factory: Factory) -> None:
    server = smtpd_factory(refuse_rcpt={"bad@example.com"})
    smtp = connect(server)
    caught: dict[str, tuple[int, bytes]] = {}
    try:  # written exactly as code targeting the standard library would be
        smtp.sendmail("alice@example.com", "bad@example.com", "x")
    except stdlib_smtplib.SMTPRecipientsRefused as exc:
        caught = exc.recipients
    assert set(caught) == {"bad@example.com"}
    assert caught["bad@example.com"][0] == 550
    # The transaction was reset and the session is still usable.
    assert smtp.noop()[0] == 250
    assert server.recorder.verbs[-2:] == ["RSET", "NOOP"]
    smtp.quit()
    assert smtp.sock is None


def test_sender_refused(smtpd_factory: Factory) -> None:
    server = smtpd_factory(refuse_sender={"spam@example.com"})
    with connect(server) as smtp, pytest.raises(stdlib_smtplib.SMTPSenderRefused) as info:
        smtp.sendmail("spam@example.com", "bob@example.com", "x")
    assert info.value.smtp_code == 553
    assert info.value.sender == "spam@example.com"
    assert isinstance(info.value, stdlib_smtplib.SMTPException)


def test_data_refused(smtpd_factory: Factory) -> None:
    server = smtpd_factory(data_reply="554 5.6.0 rejected")
    with connect(server) as smtp, pytest.raises(stdlib_smtplib.SMTPDataError) as info:
        smtp.sendmail("alice@example.com", "bob@example.com", "x")
    assert (info.value.smtp_code, info.value.smtp_error) == (554, b"5.6.0 rejected")


def test_send_message_envelope_and_bcc(smtpd_factory: Factory) -> None:
    server = smtpd_factory()
    msg = email.message.EmailMessage()
    msg["From"] = "Alice <alice@example.com>"
    msg["To"] = "Bob <bob@example.com>"
    msg["Cc"] = "carol@example.com"
    msg["Bcc"] = "dave@example.com"
    msg["Subject"] = "hello"
    msg.set_content("hi\n.dot line\n")
    with connect(server) as smtp:
        assert smtp.send_message(msg) == {}
    (received,) = server.recorder.messages
    assert received.mail_from == "alice@example.com"
    assert received.rcpt_tos == ["bob@example.com", "dave@example.com", "carol@example.com"]
    assert b"Bcc" not in received.content and b"dave" not in received.content
    assert b"\r\n.dot line\r\n" in received.content  # dot-stuffed on the wire, unstuffed again
    assert b"\r\n..dot line\r\n" in bytes(server.recorder.raw)
    assert msg["Bcc"] == "dave@example.com"  # the caller's message is untouched


def test_send_message_non_ascii_address_uses_smtputf8(smtpd_factory: Factory) -> None:
    server = smtpd_factory(smtputf8=True)
    msg = email.message.EmailMessage()
    msg["From"] = "Jőhn <jőhn@example.com>"
    msg["To"] = "bob@example.com"
    msg.set_content("hé")
    with connect(server) as smtp:
        assert smtp.send_message(msg) == {}
    (received,) = server.recorder.messages
    assert received.mail_from == "jőhn@example.com"
    assert {"SMTPUTF8", "BODY=8BITMIME"} <= {o.upper() for o in received.mail_options}
    assert "Jőhn".encode() in received.content


def test_send_message_legacy_message_with_non_ascii_address(smtpd_factory: Factory) -> None:
    # smtplib raises TypeError here (Compat32 has no utf8 option); compat flattens with SMTPUTF8.
    server = smtpd_factory(smtputf8=True)
    msg = email.mime.text.MIMEText("hé", "plain", "utf-8")
    msg["From"] = "jőhn@example.com"
    msg["To"] = "bob@example.com"
    with connect(server) as smtp:
        assert smtp.send_message(msg) == {}
    (received,) = server.recorder.messages
    assert "From: jőhn@example.com".encode() in received.content
    assert {"SMTPUTF8", "BODY=8BITMIME"} <= {o.upper() for o in received.mail_options}


def test_send_message_non_ascii_without_smtputf8_is_refused(smtpd_factory: Factory) -> None:
    server = smtpd_factory(smtputf8=False)
    msg = email.message.EmailMessage()
    msg["From"] = "jőhn@example.com"
    msg["To"] = "bob@example.com"
    with connect(server) as smtp, pytest.raises(stdlib_smtplib.SMTPNotSupportedError):
        smtp.send_message(msg)
    assert "MAIL" not in server.recorder.verbs


def test_bytes_messages_get_canonical_line_endings(smtpd_factory: Factory) -> None:
    server = smtpd_factory()
    with connect(server) as smtp:
        smtp.sendmail("a@example.com", "b@example.com", b"Subject: x\n\nline1\rline2\n.dot")
    (received,) = server.recorder.messages
    assert received.content == b"Subject: x\r\n\r\nline1\r\nline2\r\n.dot\r\n"
    raw = bytes(server.recorder.raw)
    assert b"\r\n..dot\r\n.\r\n" in raw
    assert b"\rline2" not in raw.replace(b"\r\n", b"")


def test_esmtp_features_and_host_port_form(smtpd_factory: Factory) -> None:
    server = smtpd_factory()
    smtp = smtplib.SMTP(f"{server.host}:{server.port}", local_hostname="client.test", timeout=5)
    try:
        assert smtp.esmtp_features == {}
        code, _ = smtp.ehlo()
        assert code == 250 and smtp.does_esmtp
        assert smtp.has_extn("SIZE") and smtp.esmtp_features["size"] == "33554432"
        assert smtp.has_extn("smtputf8") and smtp.has_extn("8bitmime")
        assert not smtp.has_extn("starttls")
        assert server.recorder.ehlo_names == ["client.test"]
        assert smtp.vrfy("bob@example.com")[0] == 252
        assert smtp.expn("staff") == (250, b"Alice <alice@example.com>\nBob <bob@example.com>")
        assert smtp.help().startswith(b"Supported commands")
    finally:
        smtp.quit()
    assert smtp.esmtp_features == {} and smtp.ehlo_resp is None


EHLO_REPLIES = [
    [b"mx.example.com Hello", b"SIZE 1000", b"AUTH PLAIN LOGIN", b"AUTH=LOGIN", b"HELP"],
    [b"mx", b"8BITMIME", b"X_WEIRD foo", b"SIZE=1000", b" STARTTLS", b"DSN"],
    [b"mx only"],
    [b"mx", b"AUTH", b"PIPELINING   ", b"ENHANCEDSTATUSCODES"],
    [b"mx", b"SIZE 1", b"SIZE 2", b"auth=plain", b"auth login"],
]


@pytest.mark.parametrize("lines", EHLO_REPLIES)
def test_esmtp_features_match_the_stdlib(
    scripted: Callable[..., ScriptedServer], lines: list[bytes]
) -> None:
    reply = b"".join(
        b"250" + (b" " if i == len(lines) - 1 else b"-") + line + b"\r\n"
        for i, line in enumerate(lines)
    )
    features = []
    for module in (stdlib_smtplib, smtplib):
        server = scripted([Send(b"220 hi\r\n"), Expect(b"ehlo"), Send(reply), WaitClose()])
        client = module.SMTP(server.host, server.port, local_hostname="c.test", timeout=5)
        try:
            assert client.ehlo()[0] == 250
            features.append(client.esmtp_features)
        finally:
            client.close()
    assert features[1] == features[0]
    assert list(features[1]) == list(features[0])  # same order too


# -- LMTP -----------------------------------------------------------------------------------------


def test_lmtp_reads_one_reply_per_accepted_recipient(smtpd_factory: Factory) -> None:
    server = smtpd_factory(lmtp=True, lmtp_fail={"full@example.com"}, refuse_rcpt={"x@example.com"})
    rcpts = ["a@example.com", "full@example.com", "x@example.com", "b@example.com"]
    with connect(server, smtplib.LMTP) as lmtp:
        refused = lmtp.sendmail("s@example.com", rcpts, "Subject: lmtp\n\nhi\n")
        assert set(refused) == {"full@example.com", "x@example.com"}
        assert refused["full@example.com"][0] == 452
        assert refused["x@example.com"][0] == 550
        # One reply per *accepted* recipient was consumed: the conversation is still in step.
        assert set(lmtp.lmtp_replies) == {"a@example.com", "full@example.com", "b@example.com"}
        assert lmtp.lmtp_replies["b@example.com"][1].endswith(b"delivered as QID0001")
        assert lmtp.noop() == (250, b"OK")
    assert server.recorder.verbs[0] == "LHLO"


def test_lmtp_low_level_data_and_all_failed(smtpd_factory: Factory) -> None:
    server = smtpd_factory(lmtp=True, lmtp_fail={"a@example.com", "b@example.com"})
    with connect(server, smtplib.LMTP) as lmtp:
        lmtp.ehlo()
        assert lmtp.mail("s@example.com") == (250, b"2.1.0 OK")
        assert lmtp.rcpt("a@example.com")[0] == 250
        assert lmtp.rcpt("b@example.com")[0] == 250
        code, _msg = lmtp.data(b"Subject: x\r\n\r\nbody\r\n")
        assert code == 452
        assert [c for c, _ in lmtp.lmtp_replies.values()] == [452, 452]
        with pytest.raises(stdlib_smtplib.SMTPDataError) as info:
            lmtp.sendmail("s@example.com", ["a@example.com", "b@example.com"], "x")
        assert info.value.smtp_code == 452
        assert lmtp.noop()[0] == 250


def test_lmtp_over_a_unix_socket(smtpd_factory: Factory) -> None:
    server = smtpd_factory(lmtp=True, unix=True)
    assert server.path is not None
    lmtp = smtplib.LMTP(server.path, local_hostname="client.test", timeout=TIMEOUT)
    try:
        assert lmtp.sendmail("s@example.com", ["a@example.com", "b@example.com"], "hi") == {}
        assert len(lmtp.lmtp_replies) == 2
        assert lmtp.noop()[0] == 250
    finally:
        lmtp.quit()
    assert server.recorder.messages[0].rcpt_tos == ["a@example.com", "b@example.com"]


# -- injection --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.mail("a@example.com>\r\nRCPT TO:<evil@example.com"),
        lambda s: s.rcpt("b@example.com\nRSET"),
        lambda s: s.mail("a@example.com", ["SIZE=1\r\nRCPT TO:<evil@example.com>"]),
        lambda s: s.putcmd("NOOP\r\nQUIT"),
        lambda s: s.docmd("VRFY", "x\ry"),
        lambda s: s.helo("host\nQUIT"),
        lambda s: s.ehlo("host\r\nQUIT"),
        lambda s: s.vrfy("a\n@b"),
        lambda s: s.expn("list\r\nQUIT"),
        lambda s: s.sendmail("a@example.com", ["b@example.com\r\nDATA"], "x"),
        lambda s: s.noop() and s.putcmd("NOOP", "a\x00b"),
    ],
)
def test_crlf_injection_raises_value_error(
    smtpd_factory: Factory, call: Callable[[smtplib.SMTP], object]
) -> None:
    server = smtpd_factory()
    with connect(server) as smtp:
        smtp.ehlo()
        with pytest.raises(ValueError, match=r"prohibited|control character") as info:
            call(smtp)
        assert isinstance(info.value, InvalidInputError)
        assert smtp.noop()[0] == 250  # nothing half-sent: the session is still in step
    assert server.recorder.verbs[-1] == "QUIT"
    assert server.recorder.verbs.count("QUIT") == 1
    assert "RSET" not in server.recorder.verbs and "DATA" not in server.recorder.verbs
    assert b"evil" not in bytes(server.recorder.raw)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"to_addrs": ["ok@example.com", "b@example.com\r\nDATA"]},
        {"to_addrs": "ok@example.com", "mail_options": ["BODY=8BITMIME\nRSET"]},
        {"to_addrs": "ok@example.com", "rcpt_options": ["NOTIFY=NEVER\rRSET"]},
    ],
)
def test_sendmail_validates_everything_before_mail(
    smtpd_factory: Factory, kwargs: dict[str, object]
) -> None:
    server = smtpd_factory()
    with connect(server) as smtp, pytest.raises(ValueError, match="prohibited newline"):
        smtp.sendmail("a@example.com", msg="x", **kwargs)  # type: ignore[arg-type]
    assert "MAIL" not in server.recorder.verbs  # no half-built transaction left open
    assert server.recorder.messages == []


def test_injection_in_local_hostname(smtpd_factory: Factory) -> None:
    server = smtpd_factory()
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="hi\nX-INJECTED", timeout=5)
    try:
        with pytest.raises(ValueError, match=r"prohibited newline characters: ehlo hi\\nX-INJ"):
            smtp.sendmail("a@example.com", "b@example.com", "x")
    finally:
        smtp.close()
    assert b"X-INJECTED" not in bytes(server.recorder.raw)


# -- TLS and AUTH ---------------------------------------------------------------------------------


def test_starttls_with_a_trustme_context(
    smtpd_factory: Factory, server_ssl_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    server = smtpd_factory(starttls=server_ssl_context)
    with connect(server) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        assert smtp.starttls(context=client_context)[0] == 220
        assert isinstance(smtp.sock, ssl.SSLSocket)
        assert smtp.esmtp_features == {} and not smtp.does_esmtp  # RFC 3207 §4.2
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        assert smtp.sendmail("a@example.com", "b@example.com", "secret") == {}
    assert server.recorder.verbs.count("EHLO") == 2
    assert server.recorder.messages[0].content == b"secret\r\n"


def test_starttls_default_does_not_verify_like_smtplib(
    smtpd_factory: Factory, untrusted_ssl_context: ssl.SSLContext
) -> None:
    server = smtpd_factory(starttls=untrusted_ssl_context)
    with connect(server) as smtp:
        assert smtp.starttls()[0] == 220  # stdlib default: no certificate verification
        assert smtp.noop()[0] == 250
    server = smtpd_factory(starttls=untrusted_ssl_context)
    smtp = connect(server)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            smtp.starttls(context=ssl.create_default_context())  # the one-line opt-in
    finally:
        smtp.close()


def test_smtp_ssl_with_a_trustme_context(
    smtpd_factory: Factory, server_ssl_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    server = smtpd_factory(implicit_tls=server_ssl_context)
    with smtplib.SMTP_SSL(
        server.host,
        server.port,
        local_hostname="client.test",
        timeout=TIMEOUT,
        context=client_context,
    ) as smtp:
        assert isinstance(smtp.sock, ssl.SSLSocket)
        assert smtp.sendmail("a@example.com", "b@example.com", "tls") == {}


def test_smtp_ssl_deprecated_certfile_and_mutual_exclusion(
    tls_ca: trustme.CA, tmp_path: pathlib.Path, client_context: ssl.SSLContext
) -> None:
    pem = tmp_path / "client.pem"
    tls_ca.issue_cert("client.example").private_key_and_cert_chain_pem.write_to_path(str(pem))
    with pytest.warns(DeprecationWarning, match="keyfile and certfile are deprecated"):
        smtp = smtplib.SMTP_SSL(certfile=str(pem))
    assert smtp.context.verify_mode == ssl.CERT_NONE  # smtplib's default: no verification
    assert smtp.sock is None
    with pytest.raises(ValueError, match="mutually exclusive"):
        smtplib.SMTP_SSL(certfile=str(pem), context=client_context)
    with pytest.raises(FileNotFoundError), pytest.warns(DeprecationWarning, match="keyfile"):
        smtplib.SMTP_SSL(certfile=str(tmp_path / "missing.pem"))


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize("initial_response_ok", [True, False])
def test_auth_plain_and_login(
    smtpd_factory: Factory, mechanism: str, initial_response_ok: bool
) -> None:
    server = smtpd_factory(users={"alice": "s3cret"}, auth_require_tls=False)
    with connect(server) as smtp:
        smtp.ehlo()
        smtp.user, smtp.password = "alice", "s3cret"
        method = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
        code, _ = smtp.auth(mechanism, method, initial_response_ok=initial_response_ok)
        assert code == 235
    assert server.recorder.auth_logins == [b"alice"]


def test_login_and_wrong_password(
    smtpd_factory: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtpd_factory(users={"alice": "s3cret"}, auth_require_tls=False)
    with connect(server) as smtp:
        smtp.set_debuglevel(1)
        assert smtp.login("alice", "s3cret")[0] == 235
    err = capsys.readouterr().err
    assert "AUTH PLAIN ***" in err
    assert base64.b64encode(b"\0alice\0s3cret").decode() not in err and "s3cret" not in err
    with connect(server) as smtp, pytest.raises(stdlib_smtplib.SMTPAuthenticationError) as info:
        smtp.login("alice", "wrong")
    assert info.value.smtp_code == 535


def test_login_without_auth_extension(smtpd_factory: Factory) -> None:
    server = smtpd_factory()
    with connect(server) as smtp, pytest.raises(stdlib_smtplib.SMTPNotSupportedError):
        smtp.login("alice", "s3cret")


def test_cram_md5_and_cancel_on_local_failure(
    scripted_server: Callable[..., ScriptedServer],
) -> None:
    challenge = b"<1896.697170952@postoffice.example.net>"
    digest = hmac.new(b"s3cret", challenge, "md5").hexdigest()
    b64_challenge = base64.b64encode(challenge)
    steps: list[Step] = [
        Send(b"220 hi\r\n"),
        Expect(b"ehlo"),
        Send(ehlo_reply("AUTH CRAM-MD5 PLAIN")),
        Expect(b"AUTH CRAM-MD5"),
        Send(b"334 " + b64_challenge + b"\r\n"),
        Expect(base64.b64encode(f"alice {digest}".encode())),
        Send(b"235 2.7.0 ok\r\n"),
        Expect(b"AUTH CRAM-MD5"),
        Send(b"334 " + b64_challenge + b"\r\n"),
        Expect(b"*"),  # the local failure cancels the exchange (RFC 4954 §4)
        Send(b"501 5.7.0 cancelled\r\n"),
        Expect(b"noop"),
        Send(b"250 ok\r\n"),
        WaitClose(),
    ]
    server = scripted_server(steps)
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="c.test", timeout=5)
    try:
        assert smtp.login("alice", "s3cret") == (235, b"2.7.0 ok")  # CRAM-MD5 preferred
        smtp.user = "bad user"  # CRAM-MD5 usernames cannot contain a space (RFC 2195 §2)
        with pytest.raises(stdlib_smtplib.SMTPException, match="CRAM-MD5"):
            smtp.auth("CRAM-MD5", smtp.auth_cram_md5)
        assert smtp.noop() == (250, b"ok")
    finally:
        smtp.close()
    server.check()


# -- hostile servers, deadlines, audit ------------------------------------------------------------


@pytest.fixture
def scripted_server(scripted: Callable[..., ScriptedServer]) -> Callable[..., ScriptedServer]:
    return scripted


def test_a_long_multiline_reply_is_read_like_smtplib(
    scripted_server: Callable[..., ScriptedServer],
) -> None:
    lines = b"".join(b"250-line %d\r\n" % i for i in range(1999)) + b"250 last\r\n"
    server = scripted_server([Send(b"220 hi\r\n"), Expect(b"NOOP"), Send(lines), WaitClose()])
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="c.test", timeout=5)
    code, text = smtp.noop()
    assert code == 250
    assert text.split(b"\n")[-1] == b"last" and len(text.split(b"\n")) == 2000
    smtp.close()


def test_endless_multiline_reply_is_bounded(scripted_server: Callable[..., ScriptedServer]) -> None:
    # bounded in bytes (1 MiB), not in lines
    lines = b"".join(b"250-line %d\r\n" % i for i in range(100_000))
    server = scripted_server([Send(b"220 hi\r\n"), Expect(b"NOOP"), Send(lines), WaitClose()])
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="c.test", timeout=5)
    with pytest.raises(stdlib_smtplib.SMTPResponseException) as info:
        smtp.noop()
    assert info.value.smtp_code == 500
    assert smtp.sock is None  # closed: the reply stream cannot be trusted any more


def test_malformed_reply_code_is_read_like_smtplib(
    scripted_server: Callable[..., ScriptedServer],
) -> None:
    steps: list[Step] = [
        Send(b"220 hi\r\n"),
        Expect(b"NOOP"),
        Send(b"250-first\r\n251 mixed\r\n"),
        Expect(b"NOOP"),
        Send(b"xyz garbage\r\n"),
        WaitClose(),
    ]
    server = scripted_server(steps)
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="c.test", timeout=5)
    try:
        assert smtp.noop() == (251, b"first\nmixed")
        assert smtp.noop() == (-1, b"garbage")
    finally:
        smtp.close()


def test_a_reply_must_complete_within_the_timeout(
    scripted_server: Callable[..., ScriptedServer],
) -> None:
    # Each byte arrives well within the timeout, so a per-recv timeout (smtplib) would wait for
    # the whole trickle; the total deadline gives up on the reply instead.
    steps: list[Step] = [
        Send(b"220 hi\r\n"),
        Expect(b"NOOP"),
        Trickle(b"250 slowly but surely\r\n", interval=0.25),
    ]
    server = scripted_server(steps)
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="c.test", timeout=1.0)
    with pytest.raises(stdlib_smtplib.SMTPServerDisconnected, match="timed out"):
        smtp.noop()
    assert smtp.sock is None


@pytest.fixture
def audit_events() -> Iterator[list[tuple[str, tuple[object, ...]]]]:
    events: list[tuple[str, tuple[object, ...]]] = []
    active = [True]

    def hook(event: str, args: tuple[object, ...]) -> None:
        if active[0] and event.startswith("smtplib."):
            events.append((event, args))

    sys.addaudithook(hook)  # cannot be removed: deactivated instead
    yield events
    active[0] = False


def test_audit_events(
    smtpd_factory: Factory, audit_events: list[tuple[str, tuple[object, ...]]]
) -> None:
    server = smtpd_factory()
    with connect(server) as smtp:
        smtp.noop()
    names = [name for name, _ in audit_events]
    assert names[0] == "smtplib.connect"
    assert audit_events[0][1][1:] == (server.host, server.port)
    sent = [args[1] for name, args in audit_events if name == "smtplib.send"]
    assert b"noop\r\n" in sent and b"QUIT\r\n" in sent


def test_not_connected_and_context_manager(smtpd_factory: Factory) -> None:
    smtp = smtplib.SMTP()
    assert smtp.sock is None
    with pytest.raises(stdlib_smtplib.SMTPServerDisconnected):
        smtp.noop()
    server = smtpd_factory()
    with connect(server) as smtp:
        assert smtp.noop()[0] == 250
    assert smtp.sock is None
    with pytest.raises(stdlib_smtplib.SMTPServerDisconnected):
        smtp.send(b"foo")


def test_send_message_refuses_header_injection_before_sending(
    scripted_server: Callable[..., ScriptedServer],
) -> None:
    import email.message

    server = scripted_server([Send(b"220 hi\r\n"), Expect(b"QUIT"), Send(b"221 bye\r\n")])
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="c.test", timeout=5)
    msg = email.message.Message()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.com\nc@evil.example"
    msg.set_payload("x\n")
    with pytest.raises(ValueError, match="'To'"):
        smtp.send_message(msg)
    smtp.quit()
    assert b"evil" not in bytes(server.received)
    assert b"MAIL" not in bytes(server.received)
