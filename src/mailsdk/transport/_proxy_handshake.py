"""Sans-IO proxy handshakes: SOCKS5 (RFC 1928, RFC 1929), SOCKS4a and HTTP CONNECT (RFC 9110).

Layer: L3 (transport), but pure: bytes in, bytes out, no sockets. The proxy connectors in
``proxies.py`` drive a handshake over any stream, blocking or asyncio, in the same loop::

    while not handshake.done:
        stream.send_all(handshake.data_to_send())
        handshake.receive(stream.receive(handshake.receive_size()))

``receive_size`` never asks for more bytes than the proxy's reply can still hold, so no byte
of the tunnelled conversation (the mail server's greeting, a TLS record) is consumed by the
handshake. Every failure is a :class:`~mailsdk.errors.ProxyError` naming the side that failed.
"""

from __future__ import annotations

import base64
import ipaddress
import typing

from mailsdk.errors import InvalidInputError, ProxyError, ProxySide

__all__ = ["MAX_HTTP_RESPONSE", "Handshake", "HttpConnect", "Socks4a", "Socks5"]

#: The most bytes an HTTP CONNECT response head may take (status line and headers).
MAX_HTTP_RESPONSE: typing.Final = 16_384

#: The most interim (1xx) responses skipped before the final CONNECT response.
_MAX_INTERIM: typing.Final = 8

#: RFC 1928 §6 reply codes: what they mean and which side failed.
_SOCKS5_REPLIES: typing.Final[dict[int, tuple[str, ProxySide]]] = {
    0x01: ("general SOCKS server failure", "proxy"),
    0x02: ("connection not allowed by the proxy's rules", "proxy"),
    0x03: ("network unreachable", "target"),
    0x04: ("host unreachable", "target"),
    0x05: ("connection refused by the target", "target"),
    0x06: ("TTL expired", "target"),
    0x07: ("command not supported", "proxy"),
    0x08: ("address type not supported", "proxy"),
}

_SOCKS4_REPLIES: typing.Final[dict[int, str]] = {
    91: "request rejected or failed (SOCKS4 does not say whether the rules or the target)",
    92: "the proxy could not reach our identd",
    93: "the proxy's identd check failed",
}


#: Bytes a target host name may not hold: they would end or split the proxy request (CR, LF,
#: space and NUL inject lines into an HTTP CONNECT; brackets, ``:``, ``/``, ``@``, ``?``, ``#``
#: change what the authority ``host:port`` means to the proxy).
_NAME_FORBIDDEN: typing.Final = frozenset(b"\x7f []:/@?#\\%")


def _name_bytes(host: str) -> bytes:
    try:
        name = host.encode("idna")
    except UnicodeError as exc:
        raise InvalidInputError(f"the host name {host!r} cannot be encoded: {exc}") from None
    if not 0 < len(name) < 256:
        raise InvalidInputError(f"the host name {host!r} is too long for a proxy request")
    if any(b < 0x20 or b in _NAME_FORBIDDEN for b in name):
        raise InvalidInputError(
            f"the host name {host!r} contains characters a proxy request cannot carry"
        )
    return name


def _credential_bytes(text: str, what: str) -> bytes:
    """``text`` as UTF-8; undecodable bytes kept as they came (``surrogateescape``).

    A password read from a non-UTF-8 environment, or percent-encoded as ``%E9``, reaches us with
    surrogates standing for its raw bytes: send those bytes. The error never carries the text
    (a ``UnicodeEncodeError`` keeps the whole string in ``.object``).
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeError:
        pass  # raised below, outside the handler: not even ``__context__`` keeps the text
    raise InvalidInputError(f"the proxy {what} cannot be encoded")


def _ipv6_authority(host: str) -> str | None:
    """``[v6]`` for an IPv6 literal (a zone index as ``%25``, RFC 6874), else ``None``."""
    try:
        ip = ipaddress.IPv6Address(host)
    except ValueError:
        return None
    zone = f"%25{ip.scope_id}" if ip.scope_id else ""
    if zone and any(c < "!" or c > "~" or c in "[]/@?#%" for c in ip.scope_id or ""):
        raise InvalidInputError(f"the zone index of {host!r} cannot go into a proxy request")
    return f"[{ipaddress.IPv6Address(int(ip))}{zone}]"


class Handshake:
    """The common state: an output buffer, an input buffer, and how many bytes are owed."""

    def __init__(self, host: str, port: int, proxy: str) -> None:
        self.host = host
        self.port = port
        self.proxy = proxy  # the redacted proxy URL, for messages
        self.done = False
        self._out = bytearray()
        self._in: bytearray = bytearray()
        self._need = 0

    def data_to_send(self) -> bytes:
        """The bytes to write now (possibly empty); the buffer is cleared."""
        data, self._out = bytes(self._out), bytearray()
        return data

    def receive_size(self) -> int:
        """The most bytes the next read may take (0 once the handshake is done)."""
        return 0 if self.done else max(1, self._need - len(self._in))

    def receive(self, data: bytes) -> None:
        """Take bytes read from the proxy (``b""``: it closed the connection).

        Raises:
            ProxyError: the proxy refused, failed, or broke its protocol.
        """
        if not data:
            raise self._fail("the proxy closed the connection during the handshake")
        self._in += data
        while not self.done and len(self._in) >= self._need:
            self._step()

    def _take(self) -> bytes:
        data, self._in = bytes(self._in[: self._need]), self._in[self._need :]
        return data

    def _fail(self, reason: str, side: ProxySide = "proxy", code: int | None = None) -> ProxyError:
        who = f"the proxy {self.proxy}" if self.proxy else "the proxy"
        target = f"[{self.host}]" if ":" in self.host else self.host
        return ProxyError(
            f"{who} did not open a tunnel to {target}:{self.port}: {reason}",
            side=side,
            proxy=self.proxy,
            reply_code=code,
        )

    def _step(self) -> None:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError


class Socks5(Handshake):
    """RFC 1928 CONNECT, with RFC 1929 username/password authentication when given.

    Names are sent to the proxy unresolved (ATYP 3), so the proxy's DNS decides.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        proxy: str = "",
    ) -> None:
        super().__init__(host, port, proxy)
        self._credentials: tuple[bytes, bytes] | None = None
        if username is not None:
            user = _credential_bytes(username, "user name")
            secret = _credential_bytes(password or "", "password")
            if not 0 < len(user) < 256 or len(secret) > 255:
                raise InvalidInputError("SOCKS5 user names and passwords are 1-255 bytes")
            self._credentials = (user, secret)
        self._connect_request = self._request()  # a bad name fails now, before any I/O
        methods = b"\x00\x02" if self._credentials else b"\x00"
        self._out += bytes([5, len(methods)]) + methods
        self._state, self._need = "method", 2

    def _request(self) -> bytes:
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            name = _name_bytes(self.host)
            address = bytes([3, len(name)]) + name
        else:
            address = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
        return b"\x05\x01\x00" + address + self.port.to_bytes(2, "big")

    def _step(self) -> None:
        data = self._take()
        match self._state:
            case "method":
                if data[0] != 5:
                    raise self._fail(f"not a SOCKS5 proxy (version byte {data[0]})")
                if data[1] == 0x02 and self._credentials is not None:
                    user, secret = self._credentials
                    self._out += bytes([1, len(user)]) + user + bytes([len(secret)]) + secret
                    self._state, self._need = "auth", 2
                elif data[1] == 0x00:
                    self._out += self._connect_request
                    self._state, self._need = "reply", 4
                elif data[1] == 0xFF:
                    hint = "" if self._credentials else " (does it need a username and password?)"
                    raise self._fail(f"no acceptable authentication method{hint}")
                else:
                    raise self._fail(f"chose an authentication method we did not offer ({data[1]})")
            case "auth":
                if data[1] != 0:
                    raise self._fail("the proxy refused the username or password", code=data[1])
                self._out += self._connect_request
                self._state, self._need = "reply", 4
            case "reply":
                if data[0] != 5:
                    raise self._fail(f"malformed reply (version byte {data[0]})")
                if data[1] != 0:
                    reason, side = _SOCKS5_REPLIES.get(data[1], (f"reply code {data[1]}", "proxy"))
                    raise self._fail(reason, side, data[1])
                sizes = {1: 4 + 2, 4: 16 + 2}
                if data[3] == 3:
                    self._state, self._need = "name", 1
                elif data[3] in sizes:
                    self._state, self._need = "bound", sizes[data[3]]
                else:
                    raise self._fail(f"malformed reply (address type {data[3]})")
            case "name":
                self._state, self._need = "bound", data[0] + 2
            case _:  # "bound": the proxy's own address for the tunnel; nothing to check
                self.done = True


class Socks4a(Handshake):
    """SOCKS4 CONNECT; a name (not an IPv4 literal) uses the 4a extension (resolved remotely)."""

    def __init__(
        self, host: str, port: int, *, username: str | None = None, proxy: str = ""
    ) -> None:
        super().__init__(host, port, proxy)
        user = _credential_bytes(username or "", "user id")
        if b"\x00" in user:
            raise InvalidInputError("a SOCKS4 user id cannot contain NUL")
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            if ":" in host:
                raise InvalidInputError("SOCKS4 cannot reach an IPv6 address; use SOCKS5") from None
            address, name = b"\x00\x00\x00\x01", _name_bytes(host) + b"\x00"
        else:
            address, name = ip.packed, b""
        self._out += b"\x04\x01" + port.to_bytes(2, "big") + address + user + b"\x00" + name
        self._need = 8

    def _step(self) -> None:
        data = self._take()
        if data[0] not in (0, 4):
            raise self._fail(f"not a SOCKS4 proxy (version byte {data[0]})")
        if data[1] != 90:
            reason = _SOCKS4_REPLIES.get(data[1], f"reply code {data[1]}")
            raise self._fail(reason, "target" if data[1] == 91 else "proxy", data[1])
        self.done = True


class HttpConnect(Handshake):
    """HTTP/1.1 ``CONNECT host:port`` (RFC 9110 §9.3.6), with Basic proxy auth when given."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        proxy: str = "",
    ) -> None:
        super().__init__(host, port, proxy)
        literal = _ipv6_authority(host)
        authority = f"{literal or _name_bytes(host).decode('ascii')}:{port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if username is not None:
            if ":" in username:
                # RFC 7617 §2: the user-id ends at the first colon; the proxy would misread it.
                raise InvalidInputError("an HTTP proxy user name cannot contain ':'")
            user = _credential_bytes(username, "user name")
            secret = _credential_bytes(password or "", "password")
            token = base64.b64encode(user + b":" + secret).decode()
            lines.append(f"Proxy-Authorization: Basic {token}")
        self._out += ("\r\n".join(lines) + "\r\n\r\n").encode()
        self._need = 4
        self._interim = 0

    def receive_size(self) -> int:
        """Up to the end of the response head ("\\r\\n\\r\\n"), never beyond it."""
        if self.done:
            return 0
        tail = bytes(self._in[-3:])
        for size, ending in ((1, b"\r\n\r"), (2, b"\r\n"), (3, b"\r")):
            if tail.endswith(ending):
                return size
        return 4

    def receive(self, data: bytes) -> None:
        """Take bytes of the response head (see :meth:`Handshake.receive`)."""
        if not data:
            raise self._fail("the proxy closed the connection during the handshake")
        self._in += data
        end = self._in.find(b"\r\n\r\n")
        if end < 0:
            if b"\n\n" in self._in:
                # A head ended by bare LFs: waiting for CRLF CRLF would swallow the greeting
                # and then stall until the deadline (RFC 9112 §2.2 asks for CRLF).
                raise self._fail("its response head ends with bare LF line endings")
            if len(self._in) > MAX_HTTP_RESPONSE:
                raise self._fail(f"the response head exceeds {MAX_HTTP_RESPONSE} bytes")
            return
        if len(self._in) != end + 4:  # pragma: no cover - receive_size never overshoots
            raise self._fail("the proxy sent data before its response head ended")
        self._judge(bytes(self._in[:end]).decode("latin-1").split("\r\n"))
        if not self.done:  # an interim 1xx head was skipped: guard the next one's size too
            self._interim += 1
            if self._interim > _MAX_INTERIM:
                raise self._fail(f"more than {_MAX_INTERIM} interim (1xx) responses")

    def _judge(self, lines: list[str]) -> None:
        status = lines[0].split(" ", 2)
        # Three ASCII digits (RFC 9112 §4): str.isdigit() also takes "²" (int() then raises).
        code_text = status[1] if len(status) > 1 else ""
        if (
            not status[0].startswith("HTTP/1.")
            or len(code_text) != 3
            or not (code_text.isascii() and code_text.isdigit())
        ):
            raise self._fail(f"not an HTTP proxy (status line {_printable(lines[0])!r})")
        code = int(code_text)
        reason = _printable(status[2]) if len(status) > 2 else ""
        if 100 <= code < 200 and code != 101:
            # RFC 9110 §15.2: interim responses (100 Continue, 103 Early Hints) precede the
            # final one; skip them and read the next head.
            self._in.clear()
            return
        if code == 407:
            raise self._fail(f"407 {reason}: proxy authentication failed or is required", code=code)
        if not 200 <= code < 300:
            side: ProxySide = "target" if code in (500, 502, 503, 504) else "proxy"
            raise self._fail(f"{code} {reason}".rstrip(), side, code)
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "transfer-encoding" or (name == "content-length" and value != "0"):
                # RFC 9110 §9.3.6: a 2xx CONNECT response has no content; bytes after the head
                # would be taken for the mail server's greeting.
                raise self._fail(f"its {code} reply announces a body ({name}: {_printable(value)})")
        self.done = True


def _printable(text: str, limit: int = 200) -> str:
    """The proxy's words, safe for a message: printable ASCII, at most ``limit`` characters."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text)
    return clean[:limit] + ("..." if len(clean) > limit else "")
