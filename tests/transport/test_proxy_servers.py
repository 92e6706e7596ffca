"""The proxy connectors against real proxy servers (Debian's danted and tinyproxy), both modes."""

from __future__ import annotations

import socket
import typing
from collections.abc import Callable, Iterator

import pytest
from tests._support.proxy_servers import (
    HTTP_PASSWORD,
    HTTP_USER,
    SOCKS_PASSWORD,
    SOCKS_USER,
    ProxyServer,
    danted,
    tinyproxy,
)

from mailsdk.errors import ProxyError
from mailsdk.transport import AsyncProxyConnector, ProxyConnector

from .conftest import LoopbackServer

T = 5.0
GREETING = b"220 target.test ESMTP ready\r\n"

Tunnel = Callable[..., typing.Awaitable[bytes]]


def greet(conn: socket.socket, server: LoopbackServer) -> None:
    conn.sendall(GREETING)
    server.received += conn.recv(100)


@pytest.fixture
def target(make_server: Callable[..., LoopbackServer]) -> LoopbackServer:
    return make_server(greet)


@pytest.fixture
def target_v6(make_server: Callable[..., LoopbackServer], has_ipv6: bool) -> LoopbackServer:
    if not has_ipv6:
        pytest.skip("no IPv6 loopback")
    return make_server(greet, family=socket.AF_INET6)


@pytest.fixture(scope="module")
def socks() -> Iterator[ProxyServer]:
    with danted(auth=False) as server:
        yield server


@pytest.fixture(scope="module")
def socks_auth() -> Iterator[ProxyServer]:
    with danted(auth=True) as server:
        yield server


@pytest.fixture(params=["sync", "async"])
def tunnel(request: pytest.FixtureRequest) -> Tunnel:
    """Open a tunnel, read the greeting through it, send ``QUIT``; return the greeting."""

    async def run(proxy: str, host: str, port: int) -> bytes:
        if request.param == "sync":
            with ProxyConnector(proxy, host, port).connect(T) as stream:
                data = stream.receive(100, T)
                stream.send_all(b"QUIT\r\n", T)
                return data
        async with await AsyncProxyConnector(proxy, host, port).connect(T) as stream:
            data = await stream.receive(100, T)
            await stream.send_all(b"QUIT\r\n", T)
            return data

    return run


async def test_socks5_without_auth(tunnel: Tunnel, socks: ProxyServer, target: LoopbackServer):
    assert await tunnel(socks.url("socks5"), "127.0.0.1", target.port) == GREETING
    assert target.handled.wait(T)
    assert target.received == b"QUIT\r\n"


async def test_socks5_lets_the_proxy_resolve_the_name(
    tunnel: Tunnel, socks: ProxyServer, target: LoopbackServer
):
    assert await tunnel(socks.url("socks5h"), "localhost", target.port) == GREETING


async def test_socks5_to_an_ipv6_target(
    tunnel: Tunnel, socks: ProxyServer, target_v6: LoopbackServer
):
    assert await tunnel(socks.url("socks5"), "::1", target_v6.port) == GREETING


async def test_socks5_with_username_and_password(
    tunnel: Tunnel, socks_auth: ProxyServer, target: LoopbackServer
):
    url = socks_auth.url("socks5", SOCKS_USER, SOCKS_PASSWORD)
    assert await tunnel(url, "127.0.0.1", target.port) == GREETING


async def test_socks5_wrong_password_is_a_proxy_side_error_without_the_password(
    tunnel: Tunnel, socks_auth: ProxyServer, target: LoopbackServer
):
    url = socks_auth.url("socks5", SOCKS_USER, "wrong-horse-battery")
    with pytest.raises(ProxyError) as caught:
        await tunnel(url, "127.0.0.1", target.port)
    assert caught.value.side == "proxy"
    assert "username or password" in str(caught.value)
    assert "wrong-horse-battery" not in str(caught.value) + repr(caught.value.args)
    assert "wrong-horse-battery" not in caught.value.proxy


async def test_socks5_without_credentials_to_an_auth_proxy(
    tunnel: Tunnel, socks_auth: ProxyServer, target: LoopbackServer
):
    with pytest.raises(ProxyError, match="no acceptable authentication method") as caught:
        await tunnel(socks_auth.url("socks5"), "127.0.0.1", target.port)
    assert caught.value.side == "proxy"


async def test_socks5_refused_target_is_a_target_side_error(
    tunnel: Tunnel, socks: ProxyServer, closed_port: int
):
    with pytest.raises(ProxyError) as caught:
        await tunnel(socks.url("socks5"), "127.0.0.1", closed_port)
    assert caught.value.side == "target"
    assert caught.value.reply_code == 5


async def test_socks4_with_an_ipv4_target(
    tunnel: Tunnel, socks: ProxyServer, target: LoopbackServer
):
    assert await tunnel(socks.url("socks4"), "127.0.0.1", target.port) == GREETING
    # danted speaks SOCKS4 but not the 4a extension; the 4a form with a literal is plain v4.
    assert await tunnel(socks.url("socks4a"), "127.0.0.1", target.port) == GREETING


async def test_http_connect(tunnel: Tunnel, target: LoopbackServer):
    with tinyproxy([target.port]) as proxy:
        assert await tunnel(proxy.url("http"), "127.0.0.1", target.port) == GREETING
    assert target.received == b"QUIT\r\n"


async def test_http_connect_with_basic_auth(tunnel: Tunnel, target: LoopbackServer):
    with tinyproxy([target.port], auth=True) as proxy:
        url = proxy.url("http", HTTP_USER, HTTP_PASSWORD)
        assert await tunnel(url, "127.0.0.1", target.port) == GREETING
        with pytest.raises(ProxyError) as caught:
            await tunnel(proxy.url("http"), "127.0.0.1", target.port)
        assert caught.value.side == "proxy" and caught.value.reply_code == 407
        with pytest.raises(ProxyError) as caught:
            await tunnel(proxy.url("http", HTTP_USER, "nope-pw"), "127.0.0.1", target.port)
        assert caught.value.side == "proxy"
        assert "nope-pw" not in str(caught.value)


async def test_http_connect_port_not_allowed_and_target_down(
    tunnel: Tunnel, target: LoopbackServer, closed_port: int
):
    with tinyproxy([closed_port]) as proxy:
        with pytest.raises(ProxyError) as caught:
            await tunnel(proxy.url("http"), "127.0.0.1", target.port)
        assert caught.value.side == "proxy" and caught.value.reply_code == 403
        with pytest.raises(ProxyError) as caught:
            await tunnel(proxy.url("http"), "127.0.0.1", closed_port)
        assert caught.value.side == "target"


async def test_an_unreachable_proxy_is_a_proxy_side_error(tunnel: Tunnel, closed_port: int):
    with pytest.raises(ProxyError) as caught:
        await tunnel(f"socks5://u:hunter2@127.0.0.1:{closed_port}", "mx.test", 25)
    assert caught.value.side == "proxy"
    assert caught.value.attempts and "refused" in caught.value.attempts[0][1].lower()
    assert "hunter2" not in str(caught.value)
