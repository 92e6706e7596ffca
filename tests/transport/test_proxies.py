"""Proxy URLs, the environment, and the proxy connectors against proxies that lie or stall."""

from __future__ import annotations

import base64
import pickle
import socket
import typing
from collections.abc import Callable

import pytest

from mailsdk.errors import (
    ConfigurationError,
    ConnectError,
    ConnectTimeout,
    InvalidInputError,
    ProxyError,
    ProxyTimeout,
)
from mailsdk.transport import AsyncProxyConnector, ProxyConnector, ProxyUrl, proxy_from_env

from .conftest import LoopbackServer

SECRET = "pa$$:w0rd@x"

Connect = Callable[..., typing.Awaitable[typing.Any]]


# --- URLs -----------------------------------------------------------------------------------


def test_parse_a_full_url_keeps_the_password_secret():
    proxy = ProxyUrl.parse("socks5://us%40er:pa%24%24%3Aw0rd%40x@proxy.test:1081")
    assert (proxy.scheme, proxy.host, proxy.port, proxy.username) == (
        "socks5",
        "proxy.test",
        1081,
        "us@er",
    )
    assert proxy.password is not None and proxy.password.reveal() == SECRET
    assert proxy.redacted == "socks5://us%40er@proxy.test:1081"
    for text in (repr(proxy), str(proxy), proxy.redacted, f"{proxy}"):
        assert "w0rd" not in text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("proxy.test:1080", "socks5://proxy.test:1080"),
        ("SOCKS5H://proxy.test", "socks5h://proxy.test:1080"),
        ("socks4a://me@10.0.0.1", "socks4a://me@10.0.0.1:1080"),
        ("http://[::1]:3128/", "http://[::1]:3128"),
        ("http://proxy.test", "http://proxy.test:8080"),
    ],
)
def test_parse_defaults(url, expected):
    assert ProxyUrl.parse(url).redacted == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://u:hunter2@proxy.test",
        "ftp://proxy.test",
        "socks5://u:hunter2@proxy.test:99999",
        "socks5://u:hunter2@proxy.test:port",
        "socks5://u:hunter2@",
        "socks5://u:hunter2@proxy.test/path",
        "socks5://u:hunter2@proxy.test?x=1",
        "socks4://u:hunter2@proxy.test",
        "socks5://:hunter2@proxy.test",
    ],
)
def test_bad_urls_are_configuration_errors_without_the_password(url):
    with pytest.raises(ConfigurationError) as caught:
        ProxyUrl.parse(url)
    assert "hunter2" not in str(caught.value)


def test_proxy_url_cannot_be_pickled_with_its_password():
    proxy = ProxyUrl.parse(f"socks5://u:{SECRET.replace('@', '%40')}@proxy.test")
    with pytest.raises(TypeError):
        pickle.dumps(proxy)


# --- the environment ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"ALL_PROXY": "socks5://p:1"}, "socks5://p:1"),
        ({"all_proxy": "socks5://lower:1", "ALL_PROXY": "socks5://upper:1"}, "socks5://lower:1"),
        ({"SOCKS_PROXY": "p:2"}, "socks5://p:2"),
        ({"ALL_PROXY": "http://p:3", "SOCKS_PROXY": "p:2"}, "http://p:3"),
        ({"http_proxy": "http://p:3", "https_proxy": "http://p:4"}, None),
        ({"ALL_PROXY": "socks5://p:1", "NO_PROXY": "*"}, None),
        ({"ALL_PROXY": "socks5://p:1", "NO_PROXY": "other.test, mail.example"}, None),
        ({"ALL_PROXY": "socks5://p:1", "no_proxy": ".example"}, None),
        ({"ALL_PROXY": "socks5://p:1", "NO_PROXY": "ample"}, "socks5://p:1"),
        ({"ALL_PROXY": "socks5://p:1", "NO_PROXY": "example.org"}, "socks5://p:1"),
        ({"ALL_PROXY": "socks5://p:1", "NO_PROXY": "mail.example:25"}, None),
        ({"ALL_PROXY": "socks5://p:1", "NO_PROXY": "*.mail.example"}, None),
    ],
)
def test_proxy_from_env_for_a_name(env, expected):
    proxy = proxy_from_env("smtp.mail.example", env)
    assert (proxy.redacted if proxy else None) == expected


@pytest.mark.parametrize(
    ("no_proxy", "host", "bypassed"),
    [
        ("10.0.0.0/8", "10.1.2.3", True),
        ("10.0.0.0/8", "192.0.2.1", False),
        ("192.0.2.1", "192.0.2.1", True),
        ("::1", "::1", True),
        ("[::1]", "::1", True),
        ("example.com", "10.1.2.3", False),
    ],
)
def test_no_proxy_addresses_and_networks(no_proxy, host, bypassed):
    env = {"ALL_PROXY": "socks5://p:1", "NO_PROXY": no_proxy}
    assert (proxy_from_env(host, env) is None) is bypassed


# --- lying and stalling proxies -------------------------------------------------------------


@pytest.fixture(params=["sync", "async"])
def connect(request: pytest.FixtureRequest) -> Connect:
    async def run(proxy: str, timeout: float = 3.0, host: str = "mx.test") -> typing.Any:
        if request.param == "sync":
            return ProxyConnector(proxy, host, 25).connect(timeout).close()
        stream = await AsyncProxyConnector(proxy, host, 25).connect(timeout)
        await stream.aclose()
        return None

    return run


def scripted(
    *replies: bytes, then: str = "close"
) -> Callable[[socket.socket, LoopbackServer], None]:
    """A fake proxy: reads a request, sends the next reply; finally closes or stalls."""

    def handler(conn: socket.socket, server: LoopbackServer) -> None:
        for reply in replies:
            server.received += conn.recv(4096)
            conn.sendall(reply)
        if then == "stall":
            server.stop.wait(5)

    return handler


@pytest.mark.parametrize(
    ("replies", "words"),
    [
        ((b"\x05",), "closed the connection"),  # half a method reply, then EOF
        ((b"\x05\x00", b"\x05\x00\x00"), "closed the connection"),  # half a CONNECT reply
        ((b"HTTP/1.1 200 OK\r\n\r\n",), "not a SOCKS5 proxy"),
        ((b"\x05\x00", b"\x05\x00\x00\x07"), "address type 7"),
    ],
)
async def test_a_socks5_proxy_that_lies_or_drops(connect: Connect, make_server, replies, words):
    server = make_server(scripted(*replies))
    with pytest.raises(ProxyError, match=words) as caught:
        await connect(f"socks5://127.0.0.1:{server.port}")
    assert caught.value.side == "proxy"


async def test_a_stalled_socks5_proxy_times_out_inside_the_connect_deadline(
    connect: Connect, make_server
):
    server = make_server(scripted(b"\x05\x00", then="stall"))
    with pytest.raises(ProxyTimeout) as caught:
        await connect(f"socks5://u:{SECRET.replace('@', '%40')}@127.0.0.1:{server.port}", 0.5)
    assert isinstance(caught.value, ConnectTimeout) and isinstance(caught.value, ProxyError)
    assert caught.value.side == "proxy" and caught.value.phase == "proxy"
    assert "w0rd" not in str(caught.value)


async def test_a_proxy_that_never_answers_the_greeting(connect: Connect, make_server):
    server = make_server(scripted(then="stall"))
    with pytest.raises(ProxyTimeout):
        await connect(f"http://127.0.0.1:{server.port}", 0.5)


async def test_a_reset_during_the_handshake(connect: Connect, make_server):
    def reset(conn: socket.socket, server: LoopbackServer) -> None:
        conn.recv(100)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    server = make_server(reset)
    with pytest.raises(ProxyError) as caught:
        await connect(f"socks5://127.0.0.1:{server.port}")
    assert caught.value.side == "proxy"


@pytest.mark.parametrize(
    ("head", "words"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "announces a body"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Flood: " + b"a" * 20_000, "exceeds"),
        (b"HTTP/1.1 200 OK\r\nX-Half: yes\r\n", "closed the connection"),
        (b"220 mx.test ESMTP\r\n\r\n", "not an HTTP proxy"),
    ],
)
async def test_an_http_proxy_that_lies(connect: Connect, make_server, head, words):
    server = make_server(scripted(head))
    with pytest.raises(ProxyError, match=words) as caught:
        await connect(f"http://u:{SECRET.replace('@', '%40')}@127.0.0.1:{server.port}")
    assert caught.value.side == "proxy"
    assert "w0rd" not in str(caught.value)
    # The Basic credentials went to the proxy (base64), and nowhere else.
    assert b"Proxy-Authorization: Basic " in server.received


async def test_a_name_through_plain_socks4_is_refused_before_any_io(connect: Connect):
    with pytest.raises(ConfigurationError, match="socks4a"):
        await connect("socks4://127.0.0.1:1", host="mx.test")


def test_proxy_errors_pickle_with_their_side():
    exc = ProxyError("x", side="target", proxy="socks5://p:1", reply_code=5)
    exc.attempts = (("127.0.0.1:1", "Connection refused"),)
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.side, copy.proxy, copy.reply_code, copy.attempts) == (
        "target",
        "socks5://p:1",
        5,
        exc.attempts,
    )
    timeout = pickle.loads(pickle.dumps(ProxyTimeout("t", proxy="p")))
    assert isinstance(timeout, ConnectError) and timeout.phase == "proxy"


def test_the_connector_repr_hides_the_password():
    connector = ProxyConnector("socks5://u:hunter2@127.0.0.1:1", "mx.test", 25)
    assert "hunter2" not in repr(connector)
    assert "hunter2" not in repr(AsyncProxyConnector("http://u:hunter2@p:1", "mx.test", 25))


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 Connection established\r\n\r\n",
        b"\x05\x00\x00\x03\x05proxy\x00\x19",  # after the method reply below
    ],
    ids=["http", "socks5"],
)
async def test_the_first_server_bytes_in_the_same_packet_are_not_swallowed(
    mode_name: str, make_server, reply: bytes
):
    greeting = b"220 mx.test ESMTP\r\n"
    http = reply.startswith(b"HTTP")

    def proxy(conn: socket.socket, server: LoopbackServer) -> None:
        if not http:
            conn.recv(10)
            conn.sendall(b"\x05\x00")
        conn.recv(4096)
        conn.sendall(reply + greeting)  # the tunnel's first bytes ride with the reply
        conn.recv(10)

    server = make_server(proxy)
    url = f"{'http' if http else 'socks5'}://127.0.0.1:{server.port}"
    if mode_name == "sync":
        with ProxyConnector(url, "mx.test", 25).connect(3.0) as stream:
            data = b""
            while len(data) < len(greeting):
                data += stream.receive(100, 3.0)
    else:
        async with await AsyncProxyConnector(url, "mx.test", 25).connect(3.0) as stream:
            data = b""
            while len(data) < len(greeting):
                data += await stream.receive(100, 3.0)
    assert data == greeting


@pytest.fixture(params=["sync", "async"])
def mode_name(request: pytest.FixtureRequest) -> str:
    return typing.cast("str", request.param)


# --- hostile URLs and NO_PROXY entries (review of issue 15) ---------------------------------


@pytest.mark.parametrize(
    "url", ["socks5://u:Qz9/cret@h:1080", "http://u:Qz9#cret@h", "socks5://u:Qz9?cret@h"]
)
def test_a_malformed_url_never_quotes_part_of_the_password(url):
    # urllib's own message quoted the password fragment before "/", "#" or "?" ('Qz9').
    with pytest.raises(ConfigurationError) as info:
        ProxyUrl.parse(url)
    assert "Qz9" not in str(info.value)
    # Not even the chain keeps urllib's ValueError (it quotes the fragment).
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_port_zero_is_refused_not_replaced_by_the_default():
    with pytest.raises(ConfigurationError, match="port"):
        ProxyUrl.parse("socks5://127.0.0.1:0")


@pytest.mark.parametrize(
    ("host", "no_proxy"),
    [
        ("::1", "[::1]:25"),
        ("::1", "[::1]"),
        ("127.0.0.1", "127.0.0.1:25"),
        ("::1", " ::1 "),
        ("[::1]", "::1"),
        ("[2001:db8::5]", "2001:db8::/32"),
    ],
)
def test_no_proxy_ip_entries_with_brackets_or_ports(host, no_proxy):
    env = {"all_proxy": "socks5://127.0.0.1:1080", "no_proxy": no_proxy}
    assert proxy_from_env(host, env) is None


def test_a_target_the_request_cannot_carry_is_refused_when_the_connector_is_built():
    for cls in (ProxyConnector, AsyncProxyConnector):
        with pytest.raises(InvalidInputError, match="proxy request"):
            cls("http://127.0.0.1:8080", "x]:1", 25)


def test_a_percent_encoded_latin1_password_is_sent_as_that_byte():
    # unquote() used to turn %E9 into U+FFFD: the proxy got EF BF BD and refused the login.
    proxy = ProxyUrl.parse("socks5://user:caf%E9@127.0.0.1:1080")
    hs = proxy.handshake("mx.example", 25)
    hs.data_to_send()
    hs.receive(b"\x05\x02")
    assert hs.data_to_send() == b"\x01\x04user\x04caf\xe9"


def test_an_environment_password_with_undecodable_bytes_is_sent_as_those_bytes():
    # os.environ gives surrogates for bytes that are not UTF-8 (surrogateescape).
    proxy = proxy_from_env("mx.example", {"all_proxy": "http://user:caf\udce9@127.0.0.1:8080"})
    assert proxy is not None
    request = proxy.handshake("mx.example", 25).data_to_send()
    assert base64.b64encode(b"user:caf\xe9") in request


@pytest.mark.parametrize("scheme", ["socks5", "http"])
def test_an_unencodable_password_is_a_typed_error_that_does_not_carry_it(scheme):
    # A bare UnicodeEncodeError kept the whole password in its ``.object``.
    proxy = ProxyUrl.parse(f"{scheme}://user:Qz9\ud800@127.0.0.1:1080")
    with pytest.raises(InvalidInputError) as info:
        ProxyConnector(proxy, "mx.example", 25)
    assert "Qz9" not in str(info.value)
    assert info.value.__context__ is None and info.value.__cause__ is None
