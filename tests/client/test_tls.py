"""Transports and TLS policies end to end (trustme certificates, real loopback sockets), both modes.

Plain TCP, IPv6, a caller-supplied socket; implicit TLS, STARTTLS required (and the refusal to
go on when it is not offered, checked on what the server received), opportunistic, none;
verification on by default; capabilities re-read after STARTTLS.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

import pytest
from tests._support.modes import TEST_TIMEOUT, Mode, plain_builder
from tests._support.scripted_server import (
    Expect,
    ReadData,
    ScriptedServer,
    Send,
    StartTls,
    WaitClose,
    ehlo_reply,
)
from tests._support.smtpd import SmtpdServer

from mailsdk import (
    CapabilityError,
    ClientBuilder,
    ConfigurationError,
    ConnectError,
    MailOptions,
    Outgoing,
    TLSError,
)
from mailsdk.transport import TlsSettings

SmtpdFactory = Callable[..., SmtpdServer]
RAW = b"Subject: tls\r\n\r\nover tls\r\n"


def tls_builder(
    server: SmtpdServer, mode: str, settings: TlsSettings, hostname: str | None = "localhost"
) -> ClientBuilder:
    return (
        ClientBuilder.smtp(server.host, server.port)
        .with_tls(mode, settings=settings, server_hostname=hostname)
        .with_timeouts(TEST_TIMEOUT)
        .with_local_hostname("client.test")
    )


def _ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_nothing_listening_is_a_connect_error(mode: Mode) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectError) as info:
        await mode.connect(plain_builder("127.0.0.1", port))
    assert isinstance(info.value, ConnectionError)


async def test_plain_tcp_has_no_tls(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        assert s.tls is None
        result = await s.sendmail("a@example.org", "b@example.com", RAW)
    assert result.accepted == ("b@example.com",)


@pytest.mark.skipif(not _ipv6_available(), reason="no IPv6 loopback")
async def test_ipv6_loopback(mode: Mode, smtpd_factory: SmtpdFactory) -> None:
    server = smtpd_factory(host="::1")
    async with mode.session(plain_builder(f"[::1]:{server.port}", None)) as s:  # type: ignore[arg-type]
        await s.sendmail("a@example.org", "b@example.com", RAW)
    assert len(server.recorder.messages) == 1


async def test_caller_supplied_socket(mode: Mode, smtpd: SmtpdServer) -> None:
    sock = socket.create_connection((smtpd.host, smtpd.port), timeout=TEST_TIMEOUT)
    try:
        builder = (
            ClientBuilder.from_socket(sock)
            .with_tls("none")
            .with_timeouts(TEST_TIMEOUT)
            .with_local_hostname("sock.test")
        )
        async with mode.session(builder) as s:
            result = await s.sendmail("a@example.org", "b@example.com", RAW)
        assert result.accepted == ("b@example.com",)
        assert smtpd.recorder.ehlo_names == ["sock.test"]
    finally:
        sock.close()


async def test_implicit_tls(
    mode: Mode,
    smtpd_factory: SmtpdFactory,
    server_ssl_context: ssl.SSLContext,
    client_tls: TlsSettings,
) -> None:
    server = smtpd_factory(implicit_tls=server_ssl_context)
    async with mode.session(tls_builder(server, "implicit", client_tls)) as s:
        assert s.tls is not None
        assert s.tls.version in ("TLSv1.2", "TLSv1.3")
        assert s.tls.cipher
        assert not s.capabilities.starttls
        await s.sendmail("a@example.org", "b@example.com", RAW)
    assert server.recorder.messages[0].content == RAW
    assert "STARTTLS" not in server.recorder.verbs


async def test_port_465_selects_implicit_tls(client_tls: TlsSettings) -> None:
    builder = ClientBuilder.smtp("mail.example.com", 465).with_tls_settings(client_tls)
    assert builder.config().tls_mode.value == "implicit"
    assert ClientBuilder.smtp("mail.example.com:587").config().tls_mode.value == "starttls"


async def test_starttls_required_upgrades_and_rereads_capabilities(
    mode: Mode,
    smtpd_factory: SmtpdFactory,
    server_ssl_context: ssl.SSLContext,
    client_tls: TlsSettings,
) -> None:
    server = smtpd_factory(starttls=server_ssl_context, require_starttls=True, users={"u": "p"})
    async with mode.session(tls_builder(server, "starttls", client_tls)) as s:
        assert s.tls is not None
        caps = s.capabilities
        # aiosmtpd (auth_require_tls) offers AUTH only after TLS: the caps are the post-TLS ones
        assert "PLAIN" in caps.auth_mechanisms
        assert not caps.starttls
        await s.sendmail("a@example.org", "b@example.com", RAW)
    assert server.recorder.verbs[:3] == ["EHLO", "STARTTLS", "EHLO"]
    pre_tls_reply = server.recorder.replies[
        : server.recorder.replies.index("220 Ready to start TLS")
    ]
    assert not any("AUTH" in line for line in pre_tls_reply)
    assert server.recorder.messages[0].content == RAW
    # after the upgrade the recorder sees decrypted bytes; before it, only EHLO and STARTTLS
    assert bytes(server.recorder.raw).startswith(
        b"EHLO client.test\r\nSTARTTLS\r\nEHLO client.test\r\n"
    )


async def test_starttls_required_but_not_offered_stops_before_auth_and_mail(
    mode: Mode, smtpd_factory: SmtpdFactory, client_tls: TlsSettings
) -> None:
    # AUTH is advertised in plaintext: a careless client would send the password now.
    server = smtpd_factory(users={"u": "p"}, auth_require_tls=False)
    builder = tls_builder(server, "starttls", client_tls).with_credentials("u", "p")
    with pytest.raises(CapabilityError) as info:
        await mode.connect(builder)
    assert info.value.extension == "STARTTLS"
    verbs = server.recorder.verbs
    assert "AUTH" not in verbs
    assert "MAIL" not in verbs
    assert b"AUTH" not in bytes(server.recorder.raw)
    assert verbs[0] == "EHLO"


async def test_opportunistic_upgrades_when_offered(
    mode: Mode,
    smtpd_factory: SmtpdFactory,
    server_ssl_context: ssl.SSLContext,
    client_tls: TlsSettings,
) -> None:
    server = smtpd_factory(starttls=server_ssl_context)
    async with mode.session(tls_builder(server, "opportunistic", client_tls)) as s:
        assert s.tls is not None
    assert "STARTTLS" in server.recorder.verbs


async def test_opportunistic_stays_plain_when_not_offered(
    mode: Mode, smtpd: SmtpdServer, client_tls: TlsSettings
) -> None:
    async with mode.session(tls_builder(smtpd, "opportunistic", client_tls)) as s:
        assert s.tls is None
        await s.sendmail("a@example.org", "b@example.com", RAW)
    assert "STARTTLS" not in smtpd.recorder.verbs


async def test_tls_none_ignores_an_offered_starttls(
    mode: Mode, smtpd_factory: SmtpdFactory, server_ssl_context: ssl.SSLContext
) -> None:
    server = smtpd_factory(starttls=server_ssl_context)
    async with mode.session(plain_builder(server.host, server.port)) as s:
        assert s.capabilities.starttls
        assert s.tls is None
    assert "STARTTLS" not in server.recorder.verbs


async def test_explicit_starttls_on_a_plain_session(
    mode: Mode,
    smtpd_factory: SmtpdFactory,
    server_ssl_context: ssl.SSLContext,
    client_tls: TlsSettings,
) -> None:
    server = smtpd_factory(starttls=server_ssl_context)
    builder = tls_builder(server, "none", client_tls)
    async with mode.session(builder) as s:
        assert s.tls is None
        info = await s.starttls()
        assert s.tls == info
        assert not s.capabilities.starttls
        await s.sendmail("a@example.org", "b@example.com", RAW)
    assert server.recorder.verbs[:3] == ["EHLO", "STARTTLS", "EHLO"]


@pytest.mark.parametrize("tls_mode", ["implicit", "starttls"])
async def test_untrusted_certificate_is_a_tls_error(
    mode: Mode,
    smtpd_factory: SmtpdFactory,
    untrusted_ssl_context: ssl.SSLContext,
    client_tls: TlsSettings,
    tls_mode: str,
) -> None:
    options = (
        {"implicit_tls": untrusted_ssl_context}
        if tls_mode == "implicit"
        else {"starttls": untrusted_ssl_context}
    )
    server = smtpd_factory(**options)
    with pytest.raises(TLSError):
        await mode.connect(tls_builder(server, tls_mode, client_tls))
    assert "MAIL" not in server.recorder.verbs


async def test_default_trust_store_rejects_the_test_ca(
    mode: Mode, smtpd_factory: SmtpdFactory, server_ssl_context: ssl.SSLContext
) -> None:
    server = smtpd_factory(implicit_tls=server_ssl_context)
    with pytest.raises(TLSError):
        await mode.connect(tls_builder(server, "implicit", TlsSettings()))


@pytest.mark.parametrize("tls_mode", ["implicit", "starttls"])
async def test_wrong_hostname_is_a_tls_error(
    mode: Mode,
    smtpd_factory: SmtpdFactory,
    wrong_name_ssl_context: ssl.SSLContext,
    client_tls: TlsSettings,
    tls_mode: str,
) -> None:
    options = (
        {"implicit_tls": wrong_name_ssl_context}
        if tls_mode == "implicit"
        else {"starttls": wrong_name_ssl_context}
    )
    server = smtpd_factory(**options)
    with pytest.raises(TLSError):
        await mode.connect(tls_builder(server, tls_mode, client_tls))


async def test_verification_can_be_disabled_explicitly(
    mode: Mode, smtpd_factory: SmtpdFactory, untrusted_ssl_context: ssl.SSLContext
) -> None:
    server = smtpd_factory(implicit_tls=untrusted_ssl_context)
    insecure = TlsSettings(verify=False, check_hostname=False)
    async with mode.session(tls_builder(server, "implicit", insecure, hostname=None)) as s:
        assert s.tls is not None


async def test_server_hostname_defaults_to_the_host(
    mode: Mode,
    smtpd_factory: SmtpdFactory,
    server_ssl_context: ssl.SSLContext,
    client_tls: TlsSettings,
) -> None:
    # the certificate covers 127.0.0.1 as an IP SAN, so no server_hostname is needed
    server = smtpd_factory(implicit_tls=server_ssl_context)
    async with mode.session(tls_builder(server, "implicit", client_tls, hostname=None)) as s:
        assert s.tls is not None


async def test_starttls_with_scripted_server_forgets_pre_tls_capabilities(
    mode: Mode,
    scripted: Callable[..., ScriptedServer],
    server_ssl_context: ssl.SSLContext,
    client_tls: TlsSettings,
) -> None:
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"EHLO client.test"),
            Send(ehlo_reply("STARTTLS", "SIZE 100", "X-BEFORE-TLS")),
            Expect(b"STARTTLS"),
            Send(b"220 2.0.0 go ahead\r\n"),
            StartTls(server_ssl_context),
            Expect(b"EHLO client.test"),
            Send(ehlo_reply("SIZE 5000", "X-AFTER-TLS")),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            WaitClose(),
        ]
    )
    builder = (
        ClientBuilder.smtp(server.host, server.port)
        .with_tls("starttls", settings=client_tls, server_hostname="localhost")
        .with_timeouts(TEST_TIMEOUT)
        .with_local_hostname("client.test")
    )
    async with mode.session(builder) as s:
        assert s.capabilities.max_size == 5000
        assert s.capabilities.has("X-AFTER-TLS")
        assert not s.capabilities.has("X-BEFORE-TLS")
    server.check()


def test_credentials_without_tls_need_allow_plaintext() -> None:
    base = ClientBuilder.smtp("127.0.0.1", 2525)
    for tls_mode in ("none", "opportunistic"):
        with pytest.raises(ConfigurationError, match="plaintext"):
            base.with_tls(tls_mode).with_credentials("u", "p").build()
        with pytest.raises(ConfigurationError):
            base.with_tls(tls_mode).with_credentials("u", "p").build_async()
        client = base.with_tls(tls_mode).with_credentials("u", "p", allow_plaintext=True).build()
        assert client.config.auth is not None


async def test_requiretls_is_refused_on_a_plaintext_session(
    mode: Mode, scripted: Callable[..., ScriptedServer]
) -> None:
    # A server advertising REQUIRETLS without TLS is lying (or impersonated): RFC 8689 §4.2.
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"EHLO client.test"),
            Send(ehlo_reply("REQUIRETLS")),
            Expect(b"NOOP"),
            Send(b"250 ok\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            WaitClose(),
        ]
    )
    async with mode.session(plain_builder(server.host, server.port)) as s:
        with pytest.raises(CapabilityError, match="REQUIRETLS") as info:
            await s.sendmail(
                "a@example.org",
                ["b@example.com"],
                b"Subject: s\r\n\r\nx\r\n",
                mail_options=MailOptions(requiretls=True),
            )
        assert info.value.extension == "REQUIRETLS"
        # send_many plans the envelope with the same rule
        item = Outgoing(
            b"Subject: s\r\n\r\nx\r\n",
            sender="a@example.org",
            recipients=("b@example.com",),
            mail_options=MailOptions(requiretls=True),
        )
        (outcome,) = await s.send_many_list([item])
        assert isinstance(outcome.error, CapabilityError)
        assert outcome.error.extension == "REQUIRETLS"
        assert (await s.noop()).code == 250  # refused locally: nothing was sent
    server.check()


async def test_requiretls_is_sent_on_an_encrypted_session(
    mode: Mode,
    scripted: Callable[..., ScriptedServer],
    server_ssl_context: ssl.SSLContext,
    client_tls: TlsSettings,
) -> None:
    server = scripted(
        [
            Send(b"220 mx.test ESMTP\r\n"),
            Expect(b"EHLO client.test"),
            Send(ehlo_reply("STARTTLS")),
            Expect(b"STARTTLS"),
            Send(b"220 2.0.0 go ahead\r\n"),
            StartTls(server_ssl_context),
            Expect(b"EHLO client.test"),
            Send(ehlo_reply("REQUIRETLS")),
            Expect(b"MAIL FROM:<a@example.org> REQUIRETLS\r\n"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT TO:<b@example.com>"),
            Send(b"250 ok\r\n"),
            Expect(b"DATA"),
            Send(b"354 go\r\n"),
            ReadData(),
            Send(b"250 queued\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
            WaitClose(),
        ]
    )
    builder = (
        ClientBuilder.smtp(server.host, server.port)
        .with_tls("starttls", settings=client_tls, server_hostname="localhost")
        .with_timeouts(TEST_TIMEOUT)
        .with_local_hostname("client.test")
        .with_mail_options(MailOptions(requiretls=True))
    )
    async with mode.session(builder) as s:
        await s.sendmail("a@example.org", ["b@example.com"], b"Subject: s\r\n\r\nx\r\n")
    server.check()
