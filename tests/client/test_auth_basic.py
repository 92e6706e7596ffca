"""Password AUTH against aiosmtpd (PLAIN, LOGIN) and the secrecy of the password, both modes.

The protocol log (``mailsdk.wire`` at DEBUG) shows commands and replies but never an AUTH
payload nor the password; ``repr()`` of builder, config, client and session never shows it.
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import Callable

import pytest
from tests._support.modes import TEST_TIMEOUT, Mode, plain_builder
from tests._support.scripted_server import Expect, ScriptedServer, Send, WaitClose, ehlo_reply
from tests._support.smtpd import SmtpdServer

from mailsdk import AuthenticationFailed, AuthError, ClientBuilder, ConfigurationError, MailError
from mailsdk.transport import TlsSettings

Scripted = Callable[..., ScriptedServer]
SmtpdFactory = Callable[..., SmtpdServer]
USER = "alice@example.org"
PASSWORD = "s3cr3t-Pa55word!"


def auth_builder(
    server: SmtpdServer, settings: TlsSettings, **credential_options: object
) -> ClientBuilder:
    return (
        ClientBuilder.smtp(server.host, server.port)
        .with_tls("starttls", settings=settings, server_hostname="localhost")
        .with_credentials(USER, PASSWORD, **credential_options)  # type: ignore[arg-type]
        .with_timeouts(TEST_TIMEOUT)
        .with_local_hostname("client.test")
    )


@pytest.fixture
def auth_server(smtpd_factory: SmtpdFactory, server_ssl_context: ssl.SSLContext) -> SmtpdServer:
    return smtpd_factory(starttls=server_ssl_context, require_starttls=True, users={USER: PASSWORD})


def secret_forms() -> list[bytes]:
    """The password and every encoding of it that could leak from PLAIN or LOGIN."""
    return [
        PASSWORD.encode(),
        base64.b64encode(PASSWORD.encode()),
        base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()),
    ]


async def test_auth_after_starttls(
    mode: Mode, auth_server: SmtpdServer, client_tls: TlsSettings
) -> None:
    async with mode.session(auth_builder(auth_server, client_tls)) as s:
        assert s.mechanism in ("PLAIN", "LOGIN")
        assert s.tls is not None
        await s.sendmail(USER, "b@example.com", b"Subject: a\r\n\r\nauthenticated\r\n")
    assert auth_server.recorder.auth_logins == [USER.encode()]
    assert auth_server.recorder.verbs[:4] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_chosen_mechanism(
    mode: Mode, auth_server: SmtpdServer, client_tls: TlsSettings, mechanism: str
) -> None:
    async with mode.session(auth_builder(auth_server, client_tls, mechanisms=[mechanism])) as s:
        assert s.mechanism == mechanism
    auth_args = [arg for verb, arg in auth_server.recorder.commands if verb == "AUTH"]
    assert auth_args and auth_args[0] is not None and auth_args[0].upper().startswith(mechanism)


async def test_wrong_password_is_authentication_failed(
    mode: Mode, auth_server: SmtpdServer, client_tls: TlsSettings
) -> None:
    builder = auth_builder(auth_server, client_tls).with_credentials(USER, "wrong-password")
    with pytest.raises(AuthenticationFailed) as info:
        await mode.connect(builder)
    assert info.value.reply.code == 535
    assert "wrong-password" not in str(info.value)
    assert "wrong-password" not in repr(info.value)
    assert "MAIL" not in auth_server.recorder.verbs


async def test_no_auth_offered_is_auth_error(mode: Mode, smtpd: SmtpdServer) -> None:
    # aiosmtpd advertises AUTH only over TLS: on this plain session there is none
    builder = plain_builder(smtpd.host, smtpd.port).with_credentials(
        USER, PASSWORD, allow_plaintext=True
    )
    with pytest.raises(AuthError, match="AUTH"):
        await mode.connect(builder)
    assert "AUTH" not in smtpd.recorder.verbs
    # the failure is local and the connection in step: the client says goodbye politely
    assert smtpd.recorder.verbs[-1] == "QUIT"


async def test_plaintext_auth_only_with_allow_plaintext(
    mode: Mode, smtpd_factory: SmtpdFactory
) -> None:
    server = smtpd_factory(users={USER: PASSWORD}, auth_require_tls=False)
    builder = plain_builder(server.host, server.port).with_credentials(
        USER, PASSWORD, allow_plaintext=True
    )
    async with mode.session(builder) as s:
        assert s.tls is None
        assert s.mechanism in ("PLAIN", "LOGIN")


async def test_login_on_an_open_session(mode: Mode, smtpd_factory: SmtpdFactory) -> None:
    server = smtpd_factory(users={USER: PASSWORD}, auth_require_tls=False)
    async with mode.session(plain_builder(server.host, server.port)) as s:
        assert s.mechanism is None
        with pytest.raises(AuthError):
            # plaintext, not explicitly allowed: no mechanism that sends the password qualifies
            await s.login(USER, PASSWORD)
        assert "AUTH" not in server.recorder.verbs
        assert not s.closed
        mech = await s.login(USER, PASSWORD, allow_plaintext=True, mechanisms=["LOGIN"])
        assert mech == "LOGIN"
        assert s.mechanism == "LOGIN"


async def test_wire_log_shows_commands_but_never_the_password(
    mode: Mode, auth_server: SmtpdServer, client_tls: TlsSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailsdk.wire")
    for mechanism in ("PLAIN", "LOGIN"):
        async with mode.session(auth_builder(auth_server, client_tls, mechanisms=[mechanism])) as s:
            await s.sendmail(USER, "b@example.com", b"Subject: log\r\n\r\nlogged\r\n")
    text = caplog.text
    wire = [r.getMessage() for r in caplog.records if r.name == "mailsdk.wire"]
    assert any(m.startswith("C: EHLO client.test") for m in wire)
    assert any(m.startswith("C: STARTTLS") for m in wire)
    assert any(m.startswith("C: MAIL FROM:<alice@example.org>") for m in wire)
    assert any(m.startswith("S: 250") for m in wire)
    assert any(m.startswith("C: AUTH PLAIN") for m in wire)
    assert any(m.startswith("C: AUTH LOGIN") for m in wire)
    for form in secret_forms():
        assert form.decode() not in text
    # the LOGIN username/password continuation lines are redacted as well
    assert base64.b64encode(USER.encode()).decode() not in text


async def test_password_never_in_repr(
    mode: Mode, auth_server: SmtpdServer, client_tls: TlsSettings
) -> None:
    builder = auth_builder(auth_server, client_tls)
    client = mode.build(builder)
    session = await mode.connect(builder)
    try:
        for obj in (builder, builder.config(), builder.auth, client, client.config, session.inner):
            assert PASSWORD not in repr(obj)
            assert PASSWORD not in str(obj)
    finally:
        await session.quit()


async def test_failed_auth_error_and_log_hold_no_secret(
    mode: Mode, auth_server: SmtpdServer, client_tls: TlsSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "Another-S3cret-That-Fails"
    with pytest.raises(MailError) as info:
        await mode.connect(auth_builder(auth_server, client_tls).with_credentials(USER, bad))
    for text in (str(info.value), repr(info.value), caplog.text):
        assert bad not in text
        assert base64.b64encode(f"\0{USER}\0{bad}".encode()).decode() not in text


async def test_login_with_an_unknown_mechanism_is_a_configuration_error(
    mode: Mode, smtpd_factory: SmtpdFactory
) -> None:
    server = smtpd_factory(users={USER: PASSWORD}, auth_require_tls=False)
    async with mode.session(plain_builder(server.host, server.port)) as s:
        with pytest.raises(ConfigurationError, match=r"unknown SASL mechanism 'PLIAN'"):
            await s.login(USER, PASSWORD, allow_plaintext=True, mechanisms=["PLIAN"])
        with pytest.raises(ConfigurationError, match="username"):
            await s.login(None, None)
        assert "AUTH" not in server.recorder.verbs
        assert not s.closed
        assert await s.login(USER, PASSWORD, allow_plaintext=True, mechanisms="plain") == "PLAIN"


async def test_wire_log_redacts_the_servers_auth_challenges(
    mode: Mode, scripted: Scripted, caplog: pytest.LogCaptureFixture
) -> None:
    # A 334 challenge can carry what must not be logged (a SCRAM nonce and salt, an OAuth
    # error with account details): the wire log shows that a challenge came, never its text.
    challenge = base64.b64encode(b"challenge-secret-4711").decode()
    server = scripted(
        [
            Send(b"220 mx.test\r\n"),
            Expect(b"EHLO"),
            Send(ehlo_reply("AUTH LOGIN")),
            Expect(b"AUTH LOGIN " + base64.b64encode(USER.encode())),
            Send(f"334 {challenge}\r\n".encode()),
            Expect(base64.b64encode(PASSWORD.encode())),
            Send(b"235 2.7.0 ok\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            WaitClose(),
        ]
    )
    caplog.set_level(logging.DEBUG, logger="mailsdk.wire")
    builder = plain_builder(server.host, server.port).with_credentials(
        USER, PASSWORD, mechanisms=["LOGIN"], allow_plaintext=True
    )
    async with mode.session(builder) as s:
        assert s.mechanism == "LOGIN"
    server.check()
    wire = [r.getMessage() for r in caplog.records if r.name == "mailsdk.wire"]
    assert any(m.startswith("S: 334") for m in wire)
    assert any(m.startswith("S: 235") for m in wire)
    assert challenge not in caplog.text
    assert "challenge-secret-4711" not in caplog.text
    assert PASSWORD not in caplog.text
