"""Sessions through real proxies (danted, tinyproxy) into aiosmtpd: STARTTLS and implicit TLS.

Both modes. TLS runs inside the tunnel and is verified against the mail server's name, which
the wrong-name certificate proves: it fails unless ``server_hostname`` names the certificate.
"""

from __future__ import annotations

import socket
import ssl
import time
import typing
from collections.abc import Callable, Iterator

import pytest
from tests._support.modes import TEST_TIMEOUT, Mode
from tests._support.proxy_servers import (
    HTTP_PASSWORD,
    HTTP_USER,
    SOCKS_PASSWORD,
    SOCKS_USER,
    ProxyServer,
    danted,
    tinyproxy,
)
from tests._support.smtpd import SmtpdServer

from mailsdk import ClientBuilder, ConfigurationError, ProxyError, ProxyTimeout, Timeouts, TLSError
from mailsdk.transport import TlsSettings

SmtpdFactory = Callable[..., SmtpdServer]
RAW = b"Subject: proxied\r\n\r\nthrough the tunnel\r\n"


@pytest.fixture
def smtpd_factory(smtpd_factory: SmtpdFactory) -> Iterator[SmtpdFactory]:
    """The shared factory, but the servers are stopped only once the proxy has closed its side.

    Through a proxy, the server's peer is the proxy, which may close its half after the client
    is done; stopping aiosmtpd before that leaks the server's transport.
    """
    servers: list[SmtpdServer] = []

    def make(**options: typing.Any) -> SmtpdServer:
        servers.append(smtpd_factory(**options))
        return servers[-1]

    yield make
    for server in servers:
        asyncio_server = getattr(server.controller, "server", None)
        deadline = time.monotonic() + 5
        while getattr(asyncio_server, "_active_count", 0) and time.monotonic() < deadline:
            time.sleep(0.01)


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def socks() -> Iterator[ProxyServer]:
    with danted(auth=False) as server:
        yield server


@pytest.fixture(scope="module")
def socks_auth() -> Iterator[ProxyServer]:
    with danted(auth=True) as server:
        yield server


def builder(server: SmtpdServer, tls: str, settings: TlsSettings, **kw: str) -> ClientBuilder:
    return (
        ClientBuilder.smtp("localhost", server.port)
        .with_tls(tls, settings=settings, **kw)  # type: ignore[arg-type]
        .with_timeouts(TEST_TIMEOUT)
        .with_local_hostname("client.test")
    )


@pytest.fixture(params=["starttls", "implicit"])
def tls_server(
    request: pytest.FixtureRequest, smtpd_factory: SmtpdFactory, server_ssl_context: ssl.SSLContext
) -> tuple[str, SmtpdServer]:
    if request.param == "implicit":
        return "implicit", smtpd_factory(implicit_tls=server_ssl_context)
    return "starttls", smtpd_factory(starttls=server_ssl_context, require_starttls=True)


async def send_through(mode: Mode, b: ClientBuilder, server: SmtpdServer) -> None:
    async with mode.session(b) as session:
        assert session.tls is not None
        await session.sendmail("a@example.org", "b@example.com", RAW)
    assert server.recorder.messages[-1].content == RAW


@pytest.mark.parametrize("auth", [False, True], ids=["noauth", "userpass"])
async def test_socks5(
    mode: Mode,
    socks: ProxyServer,
    socks_auth: ProxyServer,
    tls_server: tuple[str, SmtpdServer],
    client_tls: TlsSettings,
    auth: bool,
) -> None:
    tls, server = tls_server
    proxy = socks_auth.url("socks5", SOCKS_USER, SOCKS_PASSWORD) if auth else socks.url("socks5")
    await send_through(mode, builder(server, tls, client_tls).with_proxy(proxy), server)
    assert f".{server.port}" in (socks_auth if auth else socks).log()


async def test_socks4(
    mode: Mode, socks: ProxyServer, tls_server: tuple[str, SmtpdServer], client_tls: TlsSettings
) -> None:
    tls, server = tls_server
    b = ClientBuilder.smtp("127.0.0.1", server.port).with_tls(
        tls, settings=client_tls, server_hostname="localhost"
    )
    await send_through(mode, b.with_timeouts(TEST_TIMEOUT).with_proxy(socks.url("socks4")), server)


@pytest.mark.parametrize("auth", [False, True], ids=["noauth", "basic"])
async def test_http_connect(
    mode: Mode, tls_server: tuple[str, SmtpdServer], client_tls: TlsSettings, auth: bool
) -> None:
    tls, server = tls_server
    with tinyproxy([server.port], auth=auth) as proxy:
        url = proxy.url("http", HTTP_USER, HTTP_PASSWORD) if auth else proxy.url("http")
        await send_through(mode, builder(server, tls, client_tls).with_proxy(url), server)


async def test_the_certificate_is_checked_against_the_mail_servers_name(
    mode: Mode,
    socks: ProxyServer,
    smtpd_factory: SmtpdFactory,
    wrong_name_ssl_context: ssl.SSLContext,
    client_tls: TlsSettings,
) -> None:
    server = smtpd_factory(implicit_tls=wrong_name_ssl_context)
    plain = builder(server, "implicit", client_tls).with_proxy(socks.url("socks5"))
    with pytest.raises(TLSError):
        await mode.connect(plain)
    named = builder(server, "implicit", client_tls, server_hostname="mail.other.example")
    await send_through(mode, named.with_proxy(socks.url("socks5")), server)


async def test_proxy_from_the_environment(
    mode: Mode,
    socks: ProxyServer,
    tls_server: tuple[str, SmtpdServer],
    client_tls: TlsSettings,
    monkeypatch: pytest.MonkeyPatch,
    closed_port: int,
) -> None:
    tls, server = tls_server
    monkeypatch.setenv("ALL_PROXY", socks.url("socks5"))
    await send_through(mode, builder(server, tls, client_tls).with_proxy(from_env=True), server)
    # NO_PROXY exempts the host: a direct connection, even with a dead proxy in ALL_PROXY.
    monkeypatch.setenv("ALL_PROXY", f"socks5://127.0.0.1:{closed_port}")
    monkeypatch.setenv("NO_PROXY", "localhost")
    await send_through(mode, builder(server, tls, client_tls).with_proxy(from_env=True), server)
    monkeypatch.delenv("NO_PROXY")
    with pytest.raises(ProxyError) as caught:
        await mode.connect(builder(server, tls, client_tls).with_proxy(from_env=True))
    assert caught.value.side == "proxy"


async def test_a_refused_target_through_the_proxy(
    mode: Mode, socks: ProxyServer, closed_port: int, client_tls: TlsSettings
) -> None:
    b = (
        ClientBuilder.smtp("127.0.0.1", closed_port)
        .with_tls("starttls", settings=client_tls, server_hostname="localhost")
        .with_timeouts(TEST_TIMEOUT)
        .with_proxy(socks.url("socks5"))
    )
    with pytest.raises(ProxyError) as caught:
        await mode.connect(b)
    assert caught.value.side == "target"


async def test_the_proxy_password_stays_out_of_reprs(client_tls: TlsSettings) -> None:
    b = ClientBuilder.smtp("mx.test", 587).with_proxy("socks5://u:hunter2@127.0.0.1:1080")
    assert "hunter2" not in repr(b)
    assert "hunter2" not in repr(b.config())
    assert "hunter2" not in repr(b.build())
    with pytest.raises(ConfigurationError) as caught:
        b.with_proxy("socks5://u:hunter2@127.0.0.1:1080", from_env=True)
    assert "hunter2" not in str(caught.value)


async def test_a_proxy_needs_a_tcp_endpoint() -> None:
    with pytest.raises(ConfigurationError, match="TCP"):
        ClientBuilder.unix("/run/lmtp").with_proxy("socks5://127.0.0.1:1080").config()


async def test_a_stalled_proxy_ends_at_the_connect_deadline(mode: Mode) -> None:
    with socket.socket() as silent:  # accepts (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"socks5://u:hunter2@127.0.0.1:{silent.getsockname()[1]}"
        b = ClientBuilder.smtp("mx.test", 587).with_timeouts(Timeouts(connect=0.5)).with_proxy(url)
        with pytest.raises(ProxyTimeout) as caught:
            await mode.connect(b)
    assert caught.value.side == "proxy"
    assert "hunter2" not in str(caught.value)
