"""Proxy tunnels as connectors: SOCKS5, SOCKS4a and HTTP CONNECT, blocking and asyncio.

Layer: L3 (transport). May import L0 (``mailsdk.errors``, ``mailsdk._secret``), attrs and the
standard library; must never import ``mailsdk.protocol``, ``esmtp``, ``auth``, ``flows``,
``telemetry`` or ``client``.

A proxy connector reaches the proxy with the TCP connector (Happy Eyeballs, resolution inside
the deadline), runs the sans-IO handshake of ``_proxy_handshake.py`` over that stream, and
returns the stream: a plaintext tunnel to the mail server, on which the client then starts TLS
(implicit or STARTTLS) and verifies the *mail server's* name. One connect deadline covers the
proxy connect and the handshake. The password lives in a :class:`~mailsdk.Secret`; reprs,
messages and :attr:`ProxyUrl.redacted` never show it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import os
import time
import typing
import urllib.parse
from collections.abc import Mapping

import attrs

from mailsdk._secret import Secret
from mailsdk.errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    InvalidInputError,
    MailTimeout,
    ProxyError,
    ProxyTimeout,
)
from mailsdk.transport._addresses import CONNECTION_ATTEMPT_DELAY, Resolver
from mailsdk.transport._proxy_handshake import Handshake, HttpConnect, Socks4a, Socks5
from mailsdk.transport.asyncio_streams import AsyncSocketStream, AsyncTcpConnector
from mailsdk.transport.base import check_tcp_target
from mailsdk.transport.sockets import SocketStream, TcpConnector

__all__ = [
    "AsyncProxyConnector",
    "ProxyConnector",
    "ProxyScheme",
    "ProxyUrl",
    "proxy_from_env",
]

#: The proxy protocols: ``socks5``/``socks5h`` (the proxy resolves names in both), ``socks4``
#: (IPv4 literals), ``socks4a`` (names resolved by the proxy), ``http`` (CONNECT).
ProxyScheme: typing.TypeAlias = typing.Literal["socks5", "socks5h", "socks4", "socks4a", "http"]

_DEFAULT_PORTS: typing.Final[dict[str, int]] = {
    "socks5": 1080,
    "socks5h": 1080,
    "socks4": 1080,
    "socks4a": 1080,
    "http": 8080,
}


def _scrub(text: str) -> str:
    """``text`` with any ``user:password@`` part replaced (for messages about unparsable URLs)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    userinfo, at, host = rest.rpartition("@")
    if at:
        rest = f"{userinfo.split(':', 1)[0]}:***@{host}" if ":" in userinfo else f"***@{host}"
    return f"{scheme}{sep}{rest}"


def _split(text: str) -> tuple[urllib.parse.SplitResult, int | None] | str:
    """The URL's parts and port, or why they are unusable (never quoting the password)."""
    try:
        parts = urllib.parse.urlsplit(text)
        return parts, parts.port
    except ValueError as exc:
        # urllib quotes the text it choked on: with a "/", "?" or "#" in the password, that
        # text *is* part of the password ("Port could not be cast ... 'se'").
        return str(exc) if "@" not in text else "an unencoded character in the credentials?"


def _unquote(part: str | None) -> str | None:
    return None if part is None else urllib.parse.unquote(part, errors="surrogateescape")


@attrs.frozen(repr=False)
class ProxyUrl:
    """A parsed proxy URL such as ``socks5://user:pass@proxy.example:1080``.

    Attributes:
        scheme: the protocol (see :data:`ProxyScheme`).
        host: the proxy's name or IP literal.
        port: the proxy's port (default 1080 for SOCKS, 8080 for HTTP).
        username: the user name, if any (SOCKS5 and HTTP: with ``password``; SOCKS4: the user id).
        password: the password as a :class:`~mailsdk.Secret`, if any.
    """

    scheme: ProxyScheme
    host: str
    port: int
    username: str | None = None
    password: Secret | None = None

    @classmethod
    def parse(cls, url: str) -> ProxyUrl:
        """Parse a proxy URL (user and password percent-decoded).

        Args:
            url: e.g. ``"socks5://user:pass@127.0.0.1:1080"``, ``"socks4a://proxy"``,
                ``"http://proxy:3128"``; a bare ``host:port`` means SOCKS5.

        Returns:
            The proxy.

        Raises:
            ConfigurationError: an unknown scheme, no host, a bad port, a path or query, or a
                password for SOCKS4 (which has none). The message never shows the password.
        """
        text = url.strip()
        if "://" not in text:
            text = f"socks5://{text}"
        split = _split(text)
        if isinstance(split, str):  # raised here, so urllib's ValueError is not its __context__
            raise ConfigurationError(f"malformed proxy URL {_scrub(url)!r}: {split}")
        parts, port = split
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ConfigurationError(
                f"unsupported proxy scheme {scheme!r} in {_scrub(url)!r} "
                "(use socks5, socks5h, socks4, socks4a or http)"
            )
        if not parts.hostname:
            raise ConfigurationError(f"no host in the proxy URL {_scrub(url)!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigurationError(f"a proxy URL has no path or query: {_scrub(url)!r}")
        # surrogateescape: "%E9" (a Latin-1 byte) stays that byte on the wire, not U+FFFD.
        username = _unquote(parts.username)
        password = _unquote(parts.password)
        if password and not username:
            raise ConfigurationError(f"a proxy password needs a user name: {_scrub(url)!r}")
        if scheme.startswith("socks4") and password:
            raise ConfigurationError("SOCKS4 has no passwords (only a user id); use socks5://")
        if port is None:
            port = _DEFAULT_PORTS[scheme]
        try:
            host = check_tcp_target(parts.hostname, port)
        except InvalidInputError as exc:  # port 0, or a control character in the host
            raise ConfigurationError(f"unusable proxy URL {_scrub(url)!r}: {exc}") from None
        return cls(
            scheme=typing.cast("ProxyScheme", scheme),
            host=host,
            port=port,
            username=username or None,
            password=Secret(password) if password else None,
        )

    @property
    def redacted(self) -> str:
        """The URL without the password, e.g. ``"socks5://user@127.0.0.1:1080"``."""
        user = f"{urllib.parse.quote(self.username, safe='')}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}"

    def __repr__(self) -> str:
        return f"ProxyUrl({self.redacted!r})"

    def handshake(self, host: str, port: int) -> Handshake:
        """The sans-IO handshake that opens a tunnel to ``host:port`` through this proxy.

        Raises:
            InvalidInputError: the target cannot be expressed in this protocol (an IPv6 target
                through SOCKS4, a name through plain ``socks4``).
        """
        password = self.password.reveal() if self.password is not None else None
        if self.scheme == "http":
            return HttpConnect(
                host, port, username=self.username, password=password, proxy=self.redacted
            )
        if self.scheme.startswith("socks5"):
            return Socks5(
                host, port, username=self.username, password=password, proxy=self.redacted
            )
        if self.scheme == "socks4":
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ConfigurationError(
                    f"socks4:// reaches IPv4 addresses only, not {host!r}; use socks4a://"
                ) from None
        return Socks4a(host, port, username=self.username, proxy=self.redacted)


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` exempts ``host`` (``*``, names, ``.suffix``, IPs and CIDR blocks)."""
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):  # "[::1]", as a user may write the host
        name = name[1:-1]
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if ip is not None:
            if entry.startswith("["):  # "[::1]" or "[::1]:25"
                entry = entry[1:].partition("]")[0]
            elif entry.count(":") == 1:  # "127.0.0.1:25"
                entry = entry.partition(":")[0]
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        if entry.count(":") == 1:  # "example.com:25": the port is not ours to match
            entry = entry.partition(":")[0]
        suffix = entry.lstrip("*").lstrip(".").rstrip(".")
        if suffix and (name == suffix or name.endswith("." + suffix)):
            return True
    return False


def proxy_from_env(host: str, environ: Mapping[str, str] | None = None) -> ProxyUrl | None:
    """The proxy the environment asks for when connecting to ``host``, or ``None``.

    Reads ``all_proxy``/``ALL_PROXY``, then ``socks_proxy``/``SOCKS_PROXY`` (lower case wins, as
    in curl); ``no_proxy``/``NO_PROXY`` lists exempt hosts (``*``, ``example.com`` and its
    subdomains, ``.example.com``, IP addresses, CIDR blocks). ``http_proxy``/``https_proxy``
    are for HTTP traffic and ignored. A value without a scheme means SOCKS5.

    Args:
        host: the mail server's name or address.
        environ: the variables (default ``os.environ``).

    Raises:
        ConfigurationError: the variable holds an unusable URL.
    """
    env = os.environ if environ is None else environ
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
    if _bypassed(host, no_proxy):
        return None
    for name in ("all_proxy", "ALL_PROXY", "socks_proxy", "SOCKS_PROXY"):
        value = env.get(name, "").strip()
        if value:
            return ProxyUrl.parse(value)
    return None


def _as_proxy(proxy: ProxyUrl | str) -> ProxyUrl:
    return proxy if isinstance(proxy, ProxyUrl) else ProxyUrl.parse(proxy)


def _proxy_unreachable(proxy: ProxyUrl, exc: ConnectError) -> ProxyError:
    if isinstance(exc, ConnectTimeout):
        error: ProxyError = ProxyTimeout(
            f"timed out connecting to the proxy {proxy.redacted}: {exc}", proxy=proxy.redacted
        )
    else:
        error = ProxyError(
            f"could not connect to the proxy {proxy.redacted}: {exc}",
            side="proxy",
            proxy=proxy.redacted,
        )
    error.attempts = exc.attempts
    return error


def _stalled(proxy: ProxyUrl, host: str, port: int) -> ProxyTimeout:
    return ProxyTimeout(
        f"the proxy {proxy.redacted} did not finish its handshake for {host}:{port} in time",
        proxy=proxy.redacted,
    )


def _dropped(proxy: ProxyUrl, exc: ConnectionLost) -> ProxyError:
    return ProxyError(
        f"the proxy {proxy.redacted} dropped the connection during its handshake: {exc}",
        side="proxy",
        proxy=proxy.redacted,
    )


class ProxyConnector:
    """Opens a plaintext tunnel to ``host:port`` through a proxy (blocking).

    Args:
        proxy: the proxy, as a :class:`ProxyUrl` or its URL text.
        host: the mail server's name or address, as the proxy should reach it.
        port: the mail server's port.
        source_address: a local ``(host, port)`` to bind when connecting to the proxy.
        resolver: the lookup for the *proxy's* name (the target's is the proxy's business).
        attempt_delay: Happy Eyeballs' delay between attempts to reach the proxy.

    Raises:
        ConfigurationError: the proxy URL is unusable, or the target does not fit its protocol.
        InvalidInputError: the target's host or port is malformed.
    """

    def __init__(
        self,
        proxy: ProxyUrl | str,
        host: str,
        port: int,
        *,
        source_address: tuple[str, int] | None = None,
        resolver: Resolver | None = None,
        attempt_delay: float = CONNECTION_ATTEMPT_DELAY,
    ) -> None:
        self.proxy = _as_proxy(proxy)
        self.host = check_tcp_target(host, port)
        self.port = port
        self.proxy.handshake(self.host, port)  # refuse an impossible target now, not per connect
        self._tcp = TcpConnector(
            self.proxy.host,
            self.proxy.port,
            source_address=source_address,
            resolver=resolver,
            attempt_delay=attempt_delay,
        )

    def __repr__(self) -> str:
        return f"<ProxyConnector {self.host}:{self.port} via {self.proxy.redacted}>"

    def connect(self, timeout: float | None) -> SocketStream:
        """Connect to the proxy and open the tunnel, all within ``timeout`` seconds.

        Returns:
            A plaintext stream to the target (its ``info`` names the proxy's address).

        Raises:
            ProxyError: the proxy is unreachable (``side="proxy"``), refused the credentials or
                the request, broke its protocol, or could not reach the target
                (``side="target"``).
            ProxyTimeout: the deadline passed while connecting to the proxy or in its handshake.
        """
        if timeout is not None and math.isnan(timeout):
            raise InvalidInputError("a timeout must be a number of seconds or None, not NaN")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            stream = self._tcp.connect(timeout)
        except ConnectError as exc:
            raise _proxy_unreachable(self.proxy, exc) from exc
        try:
            handshake = self.proxy.handshake(self.host, self.port)
            while not handshake.done:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                data = handshake.data_to_send()
                if data:
                    stream.send_all(data, left)
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                handshake.receive(stream.receive(handshake.receive_size(), left))
            return stream
        except MailTimeout as exc:
            stream.close()
            raise _stalled(self.proxy, self.host, self.port) from exc
        except ConnectionLost as exc:
            stream.close()
            raise _dropped(self.proxy, exc) from exc
        except BaseException:
            stream.close()
            raise


class AsyncProxyConnector:
    """The asyncio twin of :class:`ProxyConnector` (same arguments and errors)."""

    def __init__(
        self,
        proxy: ProxyUrl | str,
        host: str,
        port: int,
        *,
        source_address: tuple[str, int] | None = None,
        resolver: Resolver | None = None,
        attempt_delay: float = CONNECTION_ATTEMPT_DELAY,
    ) -> None:
        self.proxy = _as_proxy(proxy)
        self.host = check_tcp_target(host, port)
        self.port = port
        self.proxy.handshake(self.host, port)
        self._tcp = AsyncTcpConnector(
            self.proxy.host,
            self.proxy.port,
            source_address=source_address,
            resolver=resolver,
            attempt_delay=attempt_delay,
        )

    def __repr__(self) -> str:
        return f"<AsyncProxyConnector {self.host}:{self.port} via {self.proxy.redacted}>"

    async def connect(self, timeout: float | None) -> AsyncSocketStream:
        """Connect to the proxy and open the tunnel (see :meth:`ProxyConnector.connect`)."""
        if timeout is not None and math.isnan(timeout):
            raise InvalidInputError("a timeout must be a number of seconds or None, not NaN")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            stream = await self._tcp.connect(timeout)
        except ConnectError as exc:
            raise _proxy_unreachable(self.proxy, exc) from exc
        try:
            handshake = self.proxy.handshake(self.host, self.port)
            while not handshake.done:
                data = handshake.data_to_send()
                if data:
                    left = None if deadline is None else max(0.0, deadline - loop.time())
                    await stream.send_all(data, left)
                left = None if deadline is None else max(0.0, deadline - loop.time())
                handshake.receive(await stream.receive(handshake.receive_size(), left))
            return stream
        except MailTimeout as exc:
            await stream.aclose()
            raise _stalled(self.proxy, self.host, self.port) from exc
        except ConnectionLost as exc:
            await stream.aclose()
            raise _dropped(self.proxy, exc) from exc
        except BaseException:
            await stream.aclose()
            raise
