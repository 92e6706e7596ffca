"""Transport inputs: unencodable or malformed host names, TLS server names, ssl_context options, timeouts."""

from __future__ import annotations

import asyncio
import math
import socket
import ssl

import pytest

from mailsdk.errors import (
    ConfigurationError,
    ConnectError,
    InvalidInputError,
    TLSError,
)
from mailsdk.transport import AsyncTcpConnector, SocketStream, TcpConnector, TlsSettings


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


def test_connector_kind_tells_blocking_from_asyncio_connectors() -> None:
    from mailsdk.transport import AsyncTcpConnector, TcpConnector, connector_kind

    class NoConnect:
        connect = "not callable"

    assert connector_kind(TcpConnector("127.0.0.1", 25)) == "blocking"
    assert connector_kind(AsyncTcpConnector("127.0.0.1", 25)) == "async"
    assert connector_kind(NoConnect()) is None
    assert connector_kind(object()) is None
