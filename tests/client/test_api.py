"""``mailsdk.send`` / ``mailsdk.asend``: one call connects, sends, QUITs (both modes)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from email.message import EmailMessage

import pytest
from tests._support.modes import TEST_TIMEOUT, Mode, plain_builder
from tests._support.smtpd import SmtpdServer

import mailsdk
from mailsdk import ConfigurationError, RecipientsRefused
from mailsdk.transport import TlsSettings

SmtpdFactory = Callable[..., SmtpdServer]


def message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.com, nobody@example.net"
    msg["Subject"] = "one call"
    msg.set_content("sent with mailsdk.send\n")
    return msg


async def test_send_with_connection_details(mode: Mode, smtpd_factory: SmtpdFactory) -> None:
    server = smtpd_factory(refuse_rcpt={"nobody@example.net"})
    result = await mode.send(
        message(), host=server.host, port=server.port, tls="none", timeout=TEST_TIMEOUT
    )
    assert result.accepted == ("b@example.com",)
    assert list(result.refused) == ["nobody@example.net"]
    assert server.recorder.verbs == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]


async def test_send_with_starttls_and_credentials(
    mode: Mode,
    smtpd_factory: SmtpdFactory,
    server_ssl_context: ssl.SSLContext,
    client_tls: TlsSettings,
) -> None:
    server = smtpd_factory(starttls=server_ssl_context, require_starttls=True, users={"u": "pw"})
    result = await mode.send(
        message(),
        host="localhost",
        port=server.port,
        username="u",
        password="pw",
        tls_settings=client_tls,
        timeout=TEST_TIMEOUT,
    )
    assert set(result.accepted) == {"b@example.com", "nobody@example.net"}
    assert server.recorder.verbs[:4] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]
    assert server.recorder.auth_logins == [b"u"]


async def test_send_with_a_builder_and_explicit_envelope(mode: Mode, smtpd: SmtpdServer) -> None:
    result = await mode.send(
        b"Subject: raw\r\n\r\nraw body\r\n",
        builder=plain_builder(smtpd.host, smtpd.port),
        sender="bounce@example.org",
        recipients=["x@example.com"],
    )
    assert result.sender == "bounce@example.org"
    assert smtpd.recorder.messages[0].content == b"Subject: raw\r\n\r\nraw body\r\n"


async def test_send_errors_are_typed(mode: Mode, smtpd_factory: SmtpdFactory) -> None:
    server = smtpd_factory(refuse_rcpt={"b@example.com", "nobody@example.net"})
    with pytest.raises(RecipientsRefused):
        await mode.send(
            message(), host=server.host, port=server.port, tls="none", timeout=TEST_TIMEOUT
        )
    assert server.recorder.verbs[-1] == "QUIT"
    with pytest.raises(ConfigurationError):
        await mode.send(message())
    with pytest.raises(ConfigurationError):
        await mode.send(
            message(), host="127.0.0.1", port=server.port, tls="none", username="u", password="p"
        )


def test_send_is_exported() -> None:
    assert mailsdk.send.__doc__ and mailsdk.asend.__doc__


async def test_send_with_both_a_builder_and_details_is_refused(
    mode: Mode, smtpd: SmtpdServer
) -> None:
    builder = plain_builder(smtpd.host, smtpd.port)
    for details in ({"host": "other.example"}, {"port": 2525}, {"timeout": 1.0}):
        with pytest.raises(ConfigurationError, match="builder"):
            await mode.send(message(), builder=builder, **details)
    assert smtpd.recorder.verbs == []  # refused before connecting


async def test_send_accepts_a_port_string(mode: Mode, smtpd: SmtpdServer) -> None:
    result = await mode.send(
        message(), host=smtpd.host, port=str(smtpd.port), tls="none", timeout=TEST_TIMEOUT
    )
    assert result.accepted
