"""compat.smtplib login(): moving on after a local mechanism failure; debug output redacts AUTH."""

from __future__ import annotations

import base64
import smtplib as stdlib_smtplib
from collections.abc import Callable

import pytest
from tests._support.scripted_server import Expect, ScriptedServer, Send, WaitClose, ehlo_reply

from mailsdk.compat import smtplib

TOKEN = "ya29.a0Af/Secret+Token_value"


def test_compat_login_tries_the_next_mechanism_after_a_local_failure(
    scripted: Callable[..., ScriptedServer],
) -> None:
    """smtplib sends "john smith <digest>" for CRAM-MD5, gets 535 and then tries PLAIN.

    The compat module refuses the space locally (RFC 2195 §2) and cancels with "*"; it must then
    go on with PLAIN as smtplib does, not give up with the first mechanism.
    """
    challenge = base64.b64encode(b"<1.2@mx.test>")
    plain = base64.b64encode(b"\0john smith\0s3cret")
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"ehlo"),
            Send(ehlo_reply("AUTH CRAM-MD5 PLAIN LOGIN")),
            Expect(b"AUTH CRAM-MD5"),
            Send(b"334 " + challenge + b"\r\n"),
            Expect(b"*"),
            Send(b"501 5.7.0 cancelled\r\n"),
            Expect(b"AUTH PLAIN " + plain),
            Send(b"235 2.7.0 ok\r\n"),
            WaitClose(),
        ]
    )
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="c.test", timeout=5)
    try:
        assert smtp.login("john smith", "s3cret") == (235, b"2.7.0 ok")
    finally:
        smtp.close()
    server.check()


def test_compat_login_reports_the_server_refusal_after_local_failures(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"ehlo"),
            Send(ehlo_reply("AUTH PLAIN LOGIN")),
            # PLAIN refuses an empty password before sending anything; LOGIN sends it.
            Expect(b"AUTH LOGIN " + base64.b64encode(b"alice")),
            Send(b"334 UGFzc3dvcmQ6\r\n"),
            Expect(b""),
            Send(b"535 5.7.8 no\r\n"),
            WaitClose(),
        ]
    )
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="c.test", timeout=5)
    try:
        with pytest.raises(stdlib_smtplib.SMTPAuthenticationError) as info:
            smtp.login("alice", "")
        assert info.value.smtp_code == 535
    finally:
        smtp.close()
    server.check()


def test_compat_login_with_only_local_failures_raises_smtp_exception(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"ehlo"),
            Send(ehlo_reply("AUTH PLAIN")),
            Expect(b"noop"),
            Send(b"250 ok\r\n"),
            WaitClose(),
        ]
    )
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="c.test", timeout=5)
    try:
        with pytest.raises(stdlib_smtplib.SMTPException, match="PLAIN"):
            smtp.login("alice", "")
        assert smtp.noop() == (250, b"ok")
    finally:
        smtp.close()
    server.check()


def test_compat_debug_output_redacts_a_hand_made_auth_exchange(
    scripted: Callable[..., ScriptedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    """The usual smtplib XOAUTH2 recipe: ``docmd("AUTH", "XOAUTH2 " + b64)`` and a continuation."""
    token = base64.b64encode(b"user=a@b\x01auth=Bearer " + TOKEN.encode() + b"\x01\x01").decode()
    password = base64.b64encode(b"hunter2-pw").decode()
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"ehlo"),
            Send(ehlo_reply("AUTH XOAUTH2 LOGIN")),
            Expect(b"AUTH XOAUTH2 " + token.encode()),
            Send(b"334 eyJzdGF0dXMiOiI0MDEifQ==\r\n"),
            Expect(b"\r\n"),
            Send(b"535 5.7.8 no\r\n"),
            Expect(b"auth LOGIN YWxpY2U="),
            Send(b"334 UGFzc3dvcmQ6\r\n"),
            Expect(password.encode()),
            Send(b"235 2.7.0 ok\r\n"),
            Expect(b"noop"),
            Send(b"250 ok\r\n"),
            WaitClose(),
        ]
    )
    smtp = smtplib.SMTP(server.host, server.port, local_hostname="c.test", timeout=5)
    try:
        smtp.ehlo()
        smtp.set_debuglevel(1)
        assert smtp.docmd("AUTH", "XOAUTH2 " + token)[0] == 334
        assert smtp.docmd("")[0] == 535
        assert smtp.docmd("auth LOGIN YWxpY2U=")[0] == 334
        assert smtp.docmd(password)[0] == 235
        assert smtp.noop() == (250, b"ok")
    finally:
        smtp.close()
    server.check()
    err = capsys.readouterr().err
    assert token not in err and password not in err
    assert "AUTH XOAUTH2 ***" in err
    assert "send: 'noop\\r\\n'" in err  # redaction ends with the exchange
