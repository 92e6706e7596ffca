"""A drop-in replacement for the standard library's :mod:`smtplib`, built on mailsdk's layers.

Layer: L7 (compat). May import every layer below (protocol, esmtp, auth, transport, errors);
must never import ``mailsdk.api`` (its sibling).

Usage: ``from mailsdk.compat import smtplib`` and keep the rest of the code. Same names,
signatures and behaviour as :mod:`smtplib` (proven by running CPython's own
``test_smtplib`` against this module), and the exceptions raised are the standard library's own
``smtplib.SMTP*`` classes (the very same objects), so ``except smtplib.SMTPException`` written
against the stdlib keeps working. Deliberate differences, all documented in ``docs/compat.md``:

* LMTP reads one reply per accepted recipient after DATA (RFC 2033 §4.2; CPython issue 76984);
* CR/LF in any command line raises ``ValueError`` (``mailsdk.errors.InvalidInputError``), as do
  NUL and other control characters;
* replies are bounded in lines and bytes, and with a timeout a whole reply must arrive within
  it (a total deadline, not one per ``recv``);
* ``bytes`` messages get their line endings canonicalised to CRLF (SMTP smuggling defence);
* AUTH payloads are replaced by ``***`` in ``set_debuglevel`` output.

Certificates are *not* verified by default, exactly as with smtplib (so migrating changes no
behaviour silently); pass ``context=ssl.create_default_context()`` to turn verification on.

The module-level ``socket`` name is what the I/O goes through (``socket.create_connection`` and
``socket.socket`` for LMTP unix sockets): tests may replace it, as CPython's suite does.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import email

# smtplib's own imports, kept so that ``smtplib.email.*`` resolves as in CPython's module.
import email.generator  # pyright: ignore[reportUnusedImport]
import email.message  # pyright: ignore[reportUnusedImport]
import email.utils  # pyright: ignore[reportUnusedImport]
import hmac
import io
import re
import smtplib as _std
import socket
import sys
import typing

from mailsdk.compat import _smtplib_text as _text
from mailsdk.compat._smtplib_base import Reply
from mailsdk.compat._smtplib_session import SMTPSession, check_tls_args, default_context
from mailsdk.protocol import Dialect

try:
    import ssl
except ImportError:  # pragma: no cover - every supported build has ssl
    _have_ssl = False
else:
    _have_ssl = True

__all__ = [
    "SMTPException",
    "SMTPNotSupportedError",
    "SMTPServerDisconnected",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPRecipientsRefused",
    "SMTPDataError",
    "SMTPConnectError",
    "SMTPHeloError",
    "SMTPAuthenticationError",
    "quoteaddr",
    "quotedata",
    "SMTP",
    "SMTP_SSL",
]

# The standard library's own exception classes: the very same objects (docs/architecture.md,
# "Decisions").
SMTPException = _std.SMTPException
SMTPNotSupportedError = _std.SMTPNotSupportedError
SMTPServerDisconnected = _std.SMTPServerDisconnected
SMTPResponseException = _std.SMTPResponseException
SMTPSenderRefused = _std.SMTPSenderRefused
SMTPRecipientsRefused = _std.SMTPRecipientsRefused
SMTPDataError = _std.SMTPDataError
SMTPConnectError = _std.SMTPConnectError
SMTPHeloError = _std.SMTPHeloError
SMTPAuthenticationError = _std.SMTPAuthenticationError

SMTP_PORT: typing.Final = 25
SMTP_SSL_PORT: typing.Final = 465
LMTP_PORT: typing.Final = 2003
CRLF: typing.Final = "\r\n"
bCRLF: typing.Final = b"\r\n"
_MAXLINE = 8192  # longest reply line, line end included (smtplib's limit)
_MAXCHALLENGE = 5  # most AUTH challenges answered before giving up (smtplib's limit)
OLDSTYLE_AUTH = re.compile(r"auth=(.*)", re.I)

quoteaddr = _text.quoteaddr
quotedata = _text.quotedata
# Modules smtplib exposes and code (and CPython's tests) reach through it.
_exposed = (base64, copy, datetime, email, hmac, io)

_DEFAULT_TIMEOUT: typing.Final[typing.Any] = socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]


class SMTP(SMTPSession):
    """A connection to an SMTP or ESMTP server, with smtplib's API.

    Args:
        host: connect to this host at once when given (``"host:port"`` is accepted).
        port: the port (``default_port`` when 0).
        local_hostname: the name sent with EHLO/HELO; the FQDN when ``None``.
        timeout: seconds for connecting, for each send and (as a total deadline) for each
            reply; ``None`` blocks; 0 is refused (``ValueError``).
        source_address: ``(host, port)`` to bind to before connecting.

    Raises:
        SMTPConnectError: the greeting was not 220.
    """

    default_port = SMTP_PORT

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        timeout: float | None = _DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
    ) -> None:
        self._init_state(host, timeout, source_address)
        if host:
            code, msg = self.connect(host, port)
            if code != 220:
                self.close()
                raise SMTPConnectError(code, msg)
        if local_hostname is not None:
            self.local_hostname = local_hostname
        else:
            # RFC 5321 §4.1.1.1: the FQDN, or an address literal when there is none.
            fqdn = socket.getfqdn()
            if "." in fqdn:
                self.local_hostname = fqdn
            else:
                addr = "127.0.0.1"
                with contextlib.suppress(socket.gaierror):
                    addr = socket.gethostbyname(socket.gethostname())
                self.local_hostname = f"[{addr}]"

    def _max_line(self) -> int:
        return _MAXLINE  # this module's global, so code that raises smtplib._MAXLINE still works

    def _max_challenge(self) -> int:
        return _MAXCHALLENGE

    def _get_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        if timeout is not None and not timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        if self.debuglevel > 0:
            self._print_debug("connect: to", (host, port), self.source_address)
        return socket.create_connection((host, port), timeout, self.source_address)

    def connect(
        self, host: str = "localhost", port: int = 0, source_address: tuple[str, int] | None = None
    ) -> Reply:
        """Connect and read the greeting; ``"host:port"`` works when ``port`` is 0.

        Returns:
            The greeting ``(code, message)``.

        Raises:
            OSError: the connection failed, or the port in ``host`` is not a number.
        """
        if source_address:
            self.source_address = source_address
        if not port and host.find(":") == host.rfind(":"):
            i = host.rfind(":")
            if i >= 0:
                host, text = host[:i], host[i + 1 :]
                try:
                    port = int(text)
                except ValueError:
                    raise OSError("nonnumeric port") from None
        if not port:
            port = self.default_port
        if not self._host or ":" in self._host:
            self._host = host  # the name TLS checks (smtplib kept "host:port" here)
        sys.audit("smtplib.connect", self, host, port)
        self.sock = self._get_socket(host, port, self.timeout)
        self.file = None
        self._accepted = []
        code, msg = self.getreply()
        if self.debuglevel > 0:
            self._print_debug("connect:", repr(msg))
        return code, msg


class SMTP_SSL(SMTP):
    """SMTP over implicit TLS (RFC 8314 §3.3), port 465 by default.

    Args:
        host, port, local_hostname, timeout, source_address: as for :class:`SMTP`.
        keyfile: deprecated (as in smtplib): a client key, PEM.
        certfile: deprecated (as in smtplib): a client certificate chain, PEM.
        context: the client ``SSLContext``. Without it certificates are NOT verified
            (smtplib's default); pass ``ssl.create_default_context()`` to verify.

    Raises:
        ValueError: ``context`` given together with ``keyfile`` or ``certfile``.
        SMTPConnectError: the greeting was not 220.
    """

    default_port = SMTP_SSL_PORT

    def __init__(  # noqa: PLR0917 - smtplib's signature
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        keyfile: str | None = None,
        certfile: str | None = None,
        timeout: float | None = _DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        check_tls_args(context, keyfile, certfile)
        self.keyfile = keyfile
        self.certfile = certfile
        self.context = context if context is not None else default_context(certfile, keyfile)
        super().__init__(host, port, local_hostname, timeout, source_address)

    def _get_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        if self.debuglevel > 0:
            self._print_debug("connect:", (host, port))
        plain = super()._get_socket(host, port, timeout)
        return self.context.wrap_socket(plain, server_hostname=self._host)


class LMTP(SMTP):
    """LMTP (RFC 2033) over TCP or a unix socket (a ``host`` starting with ``/``).

    Unlike smtplib, :meth:`data` reads one reply per accepted recipient (RFC 2033 §4.2) and
    keeps them in ``lmtp_replies``; ``sendmail`` reports recipients whose delivery failed in
    its refused dict.

    Args:
        host: a host name (TCP, ``port`` defaults to 2003) or the path of a unix socket.
        port, local_hostname, source_address, timeout: as for :class:`SMTP`.
    """

    ehlo_msg = "lhlo"
    _dialect = Dialect.LMTP

    def __init__(
        self,
        host: str = "",
        port: int = LMTP_PORT,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        timeout: float | None = _DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(
            host,
            port,
            local_hostname=local_hostname,
            source_address=source_address,
            timeout=timeout,
        )

    def connect(
        self, host: str = "localhost", port: int = 0, source_address: tuple[str, int] | None = None
    ) -> Reply:
        """Connect over TCP, or to the unix socket at ``host`` when it starts with ``/``."""
        if host[0] != "/":
            return super().connect(host, port, source_address=source_address)
        if self.timeout is not None and not self.timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        try:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if self.timeout is not _DEFAULT_TIMEOUT:
                self.sock.settimeout(self.timeout)
            self.file = None
            self.sock.connect(host)
        except OSError:
            if self.debuglevel > 0:
                self._print_debug("connect fail:", host)
            if self.sock:
                self.sock.close()
            self.sock = None
            raise
        self._accepted = []
        code, msg = self.getreply()
        if self.debuglevel > 0:
            self._print_debug("connect:", msg)
        return code, msg
