"""The sans-IO proxy handshakes, byte for byte (RFC 1928, RFC 1929, SOCKS4/4a, RFC 9110 CONNECT)."""

from __future__ import annotations

import base64

import pytest

from mailsdk.errors import InvalidInputError, ProxyError
from mailsdk.transport._proxy_handshake import (
    MAX_HTTP_RESPONSE,
    Handshake,
    HttpConnect,
    Socks4a,
    Socks5,
)


def feed(handshake: Handshake, reply: bytes) -> list[int]:
    """Feed ``reply`` in the sizes the handshake asks for; return those sizes."""
    sizes = []
    while reply and not handshake.done:
        size = handshake.receive_size()
        sizes.append(size)
        handshake.receive(reply[:size])
        reply = reply[size:]
    assert not reply or handshake.done
    return sizes


# --- SOCKS5 ---------------------------------------------------------------------------------


def test_socks5_without_credentials_sends_a_domain_name():
    hs = Socks5("mx.example", 587)
    assert hs.data_to_send() == b"\x05\x01\x00"
    feed(hs, b"\x05\x00")
    assert hs.data_to_send() == b"\x05\x01\x00\x03\x0amx.example\x02\x4b"
    feed(hs, b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38")
    assert hs.done and hs.receive_size() == 0


def test_socks5_with_credentials_uses_rfc1929():
    hs = Socks5("192.0.2.1", 25, username="user", password="pw")
    assert hs.data_to_send() == b"\x05\x02\x00\x02"
    feed(hs, b"\x05\x02")
    assert hs.data_to_send() == b"\x01\x04user\x02pw"
    feed(hs, b"\x01\x00")
    assert hs.data_to_send() == b"\x05\x01\x00\x01\xc0\x00\x02\x01\x00\x19"
    feed(hs, b"\x05\x00\x00\x04" + bytes(16) + b"\x00\x19")
    assert hs.done


def test_socks5_ipv6_target_and_a_domain_bound_address_never_overshoot():
    hs = Socks5("::1", 25)
    hs.data_to_send()
    feed(hs, b"\x05\x00")
    assert hs.data_to_send() == b"\x05\x01\x00\x04" + bytes(15) + b"\x01\x00\x19"
    greeting = b"220 mx ESMTP\r\n"
    reply = b"\x05\x00\x00\x03\x05proxy\x00\x19"
    sizes = feed(hs, reply + greeting)
    assert hs.done
    assert sum(sizes) == len(reply)  # the greeting stays unread


@pytest.mark.parametrize(
    ("code", "side", "words"),
    [
        (1, "proxy", "general SOCKS server failure"),
        (2, "proxy", "not allowed"),
        (3, "target", "network unreachable"),
        (4, "target", "host unreachable"),
        (5, "target", "refused by the target"),
        (6, "target", "TTL"),
        (7, "proxy", "command not supported"),
        (8, "proxy", "address type"),
        (0x42, "proxy", "reply code 66"),
    ],
)
def test_socks5_reply_codes_name_the_side_that_failed(code, side, words):
    hs = Socks5("mx.example", 25, proxy="socks5://127.0.0.1:1080")
    hs.data_to_send()
    feed(hs, b"\x05\x00")
    with pytest.raises(ProxyError) as caught:
        hs.receive(bytes([5, code, 0, 1]))
    assert caught.value.side == side
    assert caught.value.reply_code == code
    assert words in str(caught.value)
    assert "mx.example:25" in str(caught.value)
    assert caught.value.proxy == "socks5://127.0.0.1:1080"


def test_socks5_refused_credentials_and_missing_ones():
    hs = Socks5("mx", 25, username="u", password="secret-pw")
    hs.data_to_send()
    feed(hs, b"\x05\x02")
    with pytest.raises(ProxyError, match="refused the username or password") as caught:
        hs.receive(b"\x01\x01")
    assert caught.value.side == "proxy"
    assert "secret-pw" not in str(caught.value)
    hs = Socks5("mx", 25)
    hs.data_to_send()
    with pytest.raises(ProxyError, match="username and password"):
        hs.receive(b"\x05\xff")


@pytest.mark.parametrize(
    "reply",
    [b"HTTP", b"\x04\x00", b"\x05\x02", b"\x05\x01"],
    ids=["http-server", "socks4-version", "unoffered-method", "gssapi"],
)
def test_socks5_lying_method_replies_are_proxy_errors(reply):
    hs = Socks5("mx", 25)
    hs.data_to_send()
    with pytest.raises(ProxyError) as caught:
        feed(hs, reply)
    assert caught.value.side == "proxy"


def test_socks5_malformed_connect_reply():
    hs = Socks5("mx", 25)
    hs.data_to_send()
    feed(hs, b"\x05\x00")
    with pytest.raises(ProxyError, match="address type 9"):
        feed(hs, b"\x05\x00\x00\x09")
    hs = Socks5("mx", 25)
    hs.data_to_send()
    feed(hs, b"\x05\x00")
    with pytest.raises(ProxyError, match="version byte 4"):
        feed(hs, b"\x04\x00\x00\x01")


def test_eof_mid_handshake_is_a_proxy_error():
    hs = Socks5("mx", 25)
    with pytest.raises(ProxyError, match="closed the connection") as caught:
        hs.receive(b"")
    assert caught.value.side == "proxy"


def test_socks5_refuses_oversized_names_and_credentials():
    with pytest.raises(InvalidInputError):
        Socks5("a" * 300, 25)
    with pytest.raises(InvalidInputError):
        Socks5("mx", 25, username="u" * 256, password="p")


# --- SOCKS4 / 4a ----------------------------------------------------------------------------


def test_socks4_with_an_ipv4_literal_and_socks4a_with_a_name():
    hs = Socks4a("127.0.0.1", 25, username="me")
    assert hs.data_to_send() == b"\x04\x01\x00\x19\x7f\x00\x00\x01me\x00"
    feed(hs, b"\x00\x5a" + bytes(6))
    assert hs.done
    hs = Socks4a("mx.example", 25)
    assert hs.data_to_send() == b"\x04\x01\x00\x19\x00\x00\x00\x01\x00mx.example\x00"


@pytest.mark.parametrize(("code", "side"), [(91, "target"), (92, "proxy"), (93, "proxy")])
def test_socks4_refusals(code, side):
    hs = Socks4a("mx", 25)
    hs.data_to_send()
    with pytest.raises(ProxyError) as caught:
        feed(hs, bytes([0, code]) + bytes(6))
    assert caught.value.side == side and caught.value.reply_code == code


def test_socks4_cannot_reach_ipv6():
    with pytest.raises(InvalidInputError, match="IPv6"):
        Socks4a("::1", 25)


# --- HTTP CONNECT ---------------------------------------------------------------------------


def test_http_connect_request_and_basic_auth():
    hs = HttpConnect("mx.example", 587, username="u", password="p:w")
    token = base64.b64encode(b"u:p:w").decode()
    assert hs.data_to_send() == (
        b"CONNECT mx.example:587 HTTP/1.1\r\nHost: mx.example:587\r\n"
        + f"Proxy-Authorization: Basic {token}\r\n\r\n".encode()
    )
    hs = HttpConnect("::1", 25)
    assert hs.data_to_send().startswith(b"CONNECT [::1]:25 HTTP/1.1\r\nHost: [::1]:25\r\n")


def test_http_connect_reads_exactly_the_response_head():
    hs = HttpConnect("mx", 25)
    hs.data_to_send()
    head = b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\n"
    sizes = feed(hs, head + b"220 mx ESMTP\r\n")
    assert hs.done
    assert sum(sizes) == len(head)


@pytest.mark.parametrize(
    ("status", "side"),
    [
        (b"HTTP/1.1 403 Forbidden", "proxy"),
        (b"HTTP/1.1 407 Proxy Authentication Required", "proxy"),
        (b"HTTP/1.0 500 Unable to connect", "target"),
        (b"HTTP/1.1 502 Bad Gateway", "target"),
        (b"HTTP/1.1 504 Gateway Timeout", "target"),
        (b"HTTP/1.1 301 Moved", "proxy"),
    ],
)
def test_http_connect_refusals(status, side):
    hs = HttpConnect("mx", 25)
    hs.data_to_send()
    with pytest.raises(ProxyError) as caught:
        feed(hs, status + b"\r\nContent-Length: 3\r\n\r\nbye")
    assert caught.value.side == side
    assert caught.value.reply_code == int(status.split()[1])


@pytest.mark.parametrize(
    "header", [b"Content-Length: 5", b"Transfer-Encoding: chunked", b"content-length:12"]
)
def test_a_2xx_connect_reply_with_a_body_is_refused(header):
    hs = HttpConnect("mx", 25)
    hs.data_to_send()
    with pytest.raises(ProxyError, match="announces a body"):
        feed(hs, b"HTTP/1.1 200 OK\r\n" + header + b"\r\n\r\nhello")


def test_content_length_zero_is_fine():
    hs = HttpConnect("mx", 25)
    hs.data_to_send()
    feed(hs, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert hs.done


def test_an_oversized_response_head_is_refused():
    hs = HttpConnect("mx", 25)
    hs.data_to_send()
    with pytest.raises(ProxyError, match="exceeds"):
        feed(hs, b"HTTP/1.1 200 OK\r\n" + b"X-Pad: aaaaaaaaaa\r\n" * (MAX_HTTP_RESPONSE // 10))


@pytest.mark.parametrize("first", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n"])
def test_a_non_http_reply_is_a_proxy_error(first):
    hs = HttpConnect("mx", 25)
    hs.data_to_send()
    with pytest.raises(ProxyError, match="not an HTTP proxy"):
        feed(hs, first)


def test_the_reason_phrase_is_sanitised():
    hs = HttpConnect("mx", 25)
    hs.data_to_send()
    with pytest.raises(ProxyError) as caught:
        feed(hs, b"HTTP/1.1 403 \x1b[31mred\x07" + b"x" * 500 + b"\r\n\r\n")
    text = str(caught.value)
    assert "\x1b" not in text and "\x07" not in text and len(text) < 400


# --- hostile targets and replies (review of issue 15) ---------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "mx.example\r\nX-Injected: 1",  # a second header line in the CONNECT request
        "mx.example HTTP/1.1",  # a space ends the request target
        "mx\x00.example",
        "x]:1 HTTP/1.1",  # contains ":" but is no IPv6 literal: once went into brackets as is
        "evil.example:25",
        "user@mx.example",
        "mx.example/path",
    ],
)
def test_http_connect_refuses_hosts_that_would_bend_the_request(host):
    with pytest.raises(InvalidInputError):
        HttpConnect(host, 25)


@pytest.mark.parametrize("host", ["mx.example\r\n", "mx example", "mx\x00", "a:b"])
def test_socks_requests_refuse_hosts_with_control_characters_or_colons(host):
    with pytest.raises(InvalidInputError):
        Socks5(host, 25)
    with pytest.raises(InvalidInputError):
        Socks4a(host.replace(":", "\n"), 25)


def test_http_connect_brackets_real_ipv6_literals_and_encodes_the_zone():
    assert (
        HttpConnect("2001:db8::1", 25)
        .data_to_send()
        .startswith(b"CONNECT [2001:db8::1]:25 HTTP/1.1\r\nHost: [2001:db8::1]:25\r\n")
    )
    assert (
        HttpConnect("fe80::1%eth0", 25)
        .data_to_send()
        .startswith(b"CONNECT [fe80::1%25eth0]:25 HTTP/1.1\r\n")
    )


def test_http_basic_auth_refuses_a_colon_in_the_user_name():
    with pytest.raises(InvalidInputError, match="':'"):
        HttpConnect("mx.example", 25, username="a:b", password="secret")


def test_http_connect_skips_interim_1xx_responses():
    hs = HttpConnect("mx.example", 25)
    head = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
    feed(hs, head + b"HTTP/1.1 200 OK\r\n\r\n")
    assert hs.done and hs.receive_size() == 0


def test_http_connect_bounds_the_number_of_interim_responses():
    hs = HttpConnect("mx.example", 25)
    with pytest.raises(ProxyError, match="interim"):
        feed(hs, b"HTTP/1.1 100 Continue\r\n\r\n" * 20)


def test_http_connect_bare_lf_head_fails_at_once_instead_of_eating_the_greeting():
    hs = HttpConnect("mx.example", 25)
    with pytest.raises(ProxyError, match="bare LF"):
        feed(hs, b"HTTP/1.1 200 OK\n\n220 mx.example ESMTP\r\n")


@pytest.mark.parametrize("status", [b"HTTP/1.1 2\xb200 OK", b"HTTP/1.1 20 OK", b"HTTP/1.1 2000 OK"])
def test_a_status_code_that_is_not_three_ascii_digits_is_a_proxy_error(status):
    # "\xb2" is "²" in Latin-1: str.isdigit() said yes, then int() raised a bare ValueError.
    hs = HttpConnect("mx.example", 25)
    with pytest.raises(ProxyError, match="not an HTTP proxy"):
        feed(hs, status + b"\r\n\r\n")
