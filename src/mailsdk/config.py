"""Configuration value objects: endpoint, per-phase timeouts, auth settings, the client config.

Layer: L4 configuration. May import L0-L3 (errors, protocol, esmtp, auth, flows, transport,
telemetry). Must never import client, batch, builder, api, compat or cli.

Every object is ``attrs.frozen(kw_only=True)`` and validates itself on construction; cross-field
rules (credentials over plaintext, unix socket with implicit TLS...) are checked in
:meth:`ClientConfig.validate`, which the builder calls.
"""

from __future__ import annotations

import socket
import typing

import attrs

from mailsdk._secret import Secret
from mailsdk.auth import CredentialKind, MechanismRegistry
from mailsdk.auth.tokens import AsyncTokenProvider, TokenProvider
from mailsdk.dkim import DkimSigner
from mailsdk.errors import ConfigurationError
from mailsdk.esmtp import ExtensionRegistry, MailOptions, RcptOptions
from mailsdk.flows import Phase, TlsMode, TransactionOptions
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.reply_parser import ReplyLimits
from mailsdk.telemetry import Instrumentation, NoopInstrumentation
from mailsdk.transport import AsyncConnector, Connector, ProxyUrl, TlsSettings

__all__ = [
    "AuthSettings",
    "ClientConfig",
    "Endpoint",
    "Timeouts",
    "TlsMode",
]

SMTP_PORT: typing.Final = 25
SUBMISSION_PORT: typing.Final = 587
SMTPS_PORT: typing.Final = 465
LMTP_PORT: typing.Final = 2003


@attrs.frozen(kw_only=True)
class Timeouts:
    """Per-phase deadlines in seconds; each is a *total* for the operation, never per recv.

    The defaults are a submission client's (nodemailer's: connection 2 min, greeting 30 s); the
    others follow RFC 5321 §4.5.3.2. ``None`` means no deadline.

    Defaults, what each bounds, and RFC 5321's recommendation beside it:

    * ``connect`` 120 s: name resolution, the TCP connect, a proxy's handshake and the implicit
      TLS handshake, together (RFC 5321: none).
    * ``greeting`` 30 s: the 220 greeting, from the connect (RFC 5321: 5 min).
    * ``command`` 300 s: each command's reply, from its write (MAIL 5 min, RCPT 5 min, DATA
      initiation 2 min); also a write during which the server accepts no bytes at all.
    * ``tls`` 60 s: the STARTTLS handshake (RFC 5321: none).
    * ``data`` 600 s: the end-of-data reply, from the end of the body (10 min).
    * ``data_rate`` 10 KiB/s: a write of ``n`` bytes may take ``command + n / data_rate`` in
      total (RFC 5321: 3 min per data block, i.e. without progress).
    * ``quit`` 10 s: QUIT's reply (nothing depends on it).

    Attributes:
        connect: name resolution, the TCP connect (Happy Eyeballs), a proxy's handshake and
            the implicit TLS handshake, together.
        greeting: waiting for the 220 greeting. A server that accepts the connection but
            stays silent (often a client speaking plaintext to an implicit-TLS port, or the
            reverse) is reported after this, not after RFC 5321's 5 minutes.
        command: any command's reply (each reply restarts it).
        tls: the STARTTLS handshake.
        data: the end-of-data reply after the body was sent.
        data_rate: minimum bytes per second the body transfer may take; the write deadline for
            the body is ``command + size / data_rate``.
        quit: QUIT's reply (short: nothing depends on it).
    """

    connect: float | None = 120.0
    greeting: float | None = 30.0
    command: float | None = 300.0
    tls: float | None = 60.0
    data: float | None = 600.0
    data_rate: float = 10_240.0
    quit: float | None = 10.0

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(Timeouts):
            value = getattr(self, field.name)
            if field.name == "data_rate":
                if not value >= 0:  # also refuses NaN
                    raise ConfigurationError(f"data_rate must be >= 0, not {value!r}")
                continue
            if value is not None and not value > 0:  # also refuses NaN
                raise ConfigurationError(
                    f"timeout {field.name} must be positive or None, not {value!r}"
                )

    @classmethod
    def uniform(cls, seconds: float | None) -> Timeouts:
        """One deadline for every phase (smtplib's single ``timeout``)."""
        return cls(
            connect=seconds,
            greeting=seconds,
            command=seconds,
            tls=seconds,
            data=seconds,
            quit=seconds,
        )

    def for_phase(self, phase: Phase) -> float | None:
        """The reply deadline for ``phase``."""
        match phase:
            case Phase.GREETING:
                return self.greeting
            case Phase.COMMAND:
                return self.command
            case Phase.DATA:
                return self.data
            case Phase.TLS:
                return self.tls
            case Phase.QUIT:
                return self.quit
        typing.assert_never(phase)

    def for_write(self, size: int) -> float | None:
        """The deadline for writing ``size`` bytes (the body scales with its size)."""
        if self.command is None:
            return None
        return self.command + size / self.data_rate if self.data_rate > 0 else None


def _port(value: object) -> int | None:
    """A port number; a decimal string (from an environment variable) is accepted too."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"a port must be an int (or a decimal string), not {value!r}")
    return value


@attrs.frozen(kw_only=True)
class Endpoint:
    """Where to connect: a TCP host and port, a unix-domain socket path, or a ready socket.

    ``port`` may be given as a decimal string (``"587"``, e.g. read from the environment).
    """

    host: str | None = None
    port: int | None = attrs.field(default=None, converter=_port)
    path: str | None = None
    sock: socket.socket | None = attrs.field(default=None, eq=False, repr=False)
    source_address: tuple[str, int] | None = None

    def __attrs_post_init__(self) -> None:
        given = sum(x is not None for x in (self.host, self.path, self.sock))
        if given != 1:
            raise ConfigurationError("an endpoint needs exactly one of host, path or sock")
        for name in ("host", "path"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(f"{name} must be a non-empty str, not {value!r}")
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigurationError(f"port out of range: {self.port}")

    @property
    def transport(self) -> str:
        """``"unix"`` for a socket path, else ``"tcp"``."""
        if self.path is not None:
            return "unix"
        if self.sock is not None and self.sock.family == getattr(socket, "AF_UNIX", None):
            return "unix"
        return "tcp"

    def describe(self) -> str:
        """A short human-readable form (``host:port`` or the path)."""
        if self.path is not None:
            return self.path
        if self.host is not None:
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"{host}:{self.port}"
        return "<socket>"


def _password(value: object) -> Secret | None:
    if value is None:
        return None
    if not isinstance(value, str | Secret):
        # Never show the value: it may be a secret of the wrong type.
        raise ConfigurationError(f"password must be a str or Secret, not {type(value).__name__}")
    return Secret(value)


def _mechanisms(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)  # mechanisms="PLAIN": one name, not five letters
    if not isinstance(value, typing.Iterable):
        raise ConfigurationError(f"mechanisms must be a sequence of names, not {value!r}")
    return tuple(typing.cast("typing.Iterable[str]", value)) or None  # [] = the default order


def _check_provider(provider: object, username: str) -> None:
    if isinstance(provider, str | Secret):
        # Never show the value: it is the token itself.
        raise ConfigurationError(
            "token_provider got a token string, not a provider: wrap a fixed token in "
            "mailsdk.auth.StaticTokenProvider(token) (it cannot be refreshed), or pass a "
            "provider such as MsalAppOnlyProvider or GoogleTokenProvider"
        )
    if not callable(getattr(provider, "get_token", None)):
        raise ConfigurationError(
            f"token_provider must have a get_token() method (a TokenProvider), not a "
            f"{type(provider).__name__}"
        )
    bound = getattr(provider, "username", None)
    if isinstance(bound, str) and bound and bound.casefold() != username.casefold():
        # The token would be presented for one mailbox while AUTH names another: the server
        # refuses it with a bare 535, so say it now.
        raise ConfigurationError(
            f"the token provider is for {bound!r} but the username is {username!r}"
        )


@attrs.frozen(kw_only=True)
class AuthSettings:
    """Credentials and how to use them.

    Exactly one of ``password`` and ``token_provider``. ``mechanisms`` is the preference
    (strongest first); ``None`` uses the registry's default order for the credential kind.
    ``allow_plaintext`` lets mechanisms that send a reusable secret run without TLS.
    """

    username: str
    password: Secret | None = attrs.field(default=None, converter=_password)
    token_provider: TokenProvider | AsyncTokenProvider | None = attrs.field(
        default=None, repr=False
    )
    authzid: str | None = None
    mechanisms: tuple[str, ...] | None = attrs.field(default=None, converter=_mechanisms)
    allow_plaintext: bool = False

    def __attrs_post_init__(self) -> None:
        username: object = self.username  # checked: it often comes from os.environ.get()
        authzid: object = self.authzid
        if not isinstance(username, str) or not username:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(f"username must be a non-empty str, not {username!r}")
        if authzid is not None and not isinstance(authzid, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError("authzid must be a str or None")
        if (self.password is None) == (self.token_provider is None):
            raise ConfigurationError("give exactly one of password and token_provider")
        if self.token_provider is not None:
            _check_provider(self.token_provider, self.username)


@attrs.frozen(kw_only=True)
class ClientConfig:
    """Everything a client needs; immutable. Build it with :class:`mailsdk.ClientBuilder`.

    Attributes:
        endpoint: where to connect.
        tls_mode: implicit TLS, STARTTLS required, opportunistic, or none.
        tls: certificate verification settings (verification is on by default).
        server_hostname: name to verify the certificate against (defaults to the host).
        local_hostname: the EHLO name; ``None`` uses the FQDN, or an address literal.
        dialect: SMTP or LMTP.
        timeouts: per-phase deadlines.
        limits: reply size limits.
        auth: credentials, or ``None``.
        transaction: pipelining/chunking options.
        mail_options, rcpt_options: default DSN/REQUIRETLS/... options for every send.
        esmtp_registry, sasl_registry: the extension and mechanism registries.
        instrumentation: telemetry (no-op by default).
        dkim: DKIM signatures added to every message, last, after the trace headers.
        proxy: a SOCKS5/SOCKS4a/HTTP CONNECT proxy to tunnel through (TCP endpoints only).
        connector: a custom :class:`~mailsdk.transport.Connector` (blocking clients) or
            :class:`~mailsdk.transport.AsyncConnector` (asyncio clients) that opens the
            *plaintext* stream; the client still starts TLS on it (implicit or STARTTLS) and
            verifies :attr:`verify_name`. ``None`` builds the TCP, unix, socket or proxy
            connector from ``endpoint`` and ``proxy``.
    """

    endpoint: Endpoint
    tls_mode: TlsMode = TlsMode.STARTTLS
    tls: TlsSettings = attrs.field(factory=TlsSettings)
    server_hostname: str | None = None
    local_hostname: str | None = None
    dialect: Dialect = Dialect.SMTP
    timeouts: Timeouts = attrs.field(factory=Timeouts)
    limits: ReplyLimits = attrs.field(factory=ReplyLimits)
    auth: AuthSettings | None = None
    transaction: TransactionOptions = attrs.field(factory=TransactionOptions)
    mail_options: MailOptions | None = None
    rcpt_options: RcptOptions | None = None
    esmtp_registry: ExtensionRegistry = attrs.field(
        factory=ExtensionRegistry.default, eq=False, repr=False
    )
    sasl_registry: MechanismRegistry = attrs.field(
        factory=MechanismRegistry.default, eq=False, repr=False
    )
    instrumentation: Instrumentation = attrs.field(
        factory=NoopInstrumentation, eq=False, repr=False
    )
    dkim: tuple[DkimSigner, ...] = ()
    proxy: ProxyUrl | None = None
    connector: Connector | AsyncConnector | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def port(self) -> int:
        """The effective port: the one given, else by dialect and TLS mode.

        465 for implicit TLS (RFC 8314 §3.3), 587 for STARTTLS required (submission, RFC 6409),
        25 only when asked for: TLS off or opportunistic (relaying to an MX), 2003 for LMTP.
        """
        if self.endpoint.port is not None:
            return self.endpoint.port
        if self.dialect is Dialect.LMTP:
            return LMTP_PORT
        if self.tls_mode is TlsMode.IMPLICIT:
            return SMTPS_PORT
        if self.tls_mode is TlsMode.STARTTLS:
            return SUBMISSION_PORT
        return SMTP_PORT

    def describe(self) -> str:
        """Where the client connects, with the port it will use (``host:587``, or the path)."""
        ep = self.endpoint
        if ep.host is not None and ep.sock is None:
            return attrs.evolve(ep, port=self.port).describe()
        return ep.describe()

    @property
    def verify_name(self) -> str | None:
        """The host name certificates are checked against."""
        return self.server_hostname or self.endpoint.host

    def validate(self) -> ClientConfig:
        """Check cross-field rules; returns ``self``.

        Raises:
            ConfigurationError: credentials with TLS off (unless ``allow_plaintext``); implicit
                TLS or STARTTLS with no host name to verify while verification is on; a proxy
                for a unix or socket endpoint, or together with a custom connector; a mechanism
                name that is not registered, or is for another kind of credential.
        """
        plaintext_possible = self.tls_mode in (TlsMode.NONE, TlsMode.OPPORTUNISTIC)
        if self.auth is not None and plaintext_possible and not self.auth.allow_plaintext:
            raise ConfigurationError(
                f"credentials with tls_mode={self.tls_mode.value} could cross a plaintext "
                "link; use STARTTLS or implicit TLS, or allow_plaintext=True explicitly"
            )
        if (
            self.tls_mode is not TlsMode.NONE
            and self.tls.verify
            and self.tls.check_hostname
            and self.verify_name is None
        ):
            raise ConfigurationError("TLS with host name verification needs server_hostname")
        if self.auth is not None and self.auth.mechanisms is not None:
            kind = (
                CredentialKind.TOKEN
                if self.auth.token_provider is not None
                else CredentialKind.PASSWORD
            )
            self.sasl_registry.check_preference(self.auth.mechanisms, kind)
        if self.proxy is not None and self.endpoint.host is None:
            raise ConfigurationError("a proxy tunnels TCP only: it needs a host endpoint")
        if self.proxy is not None and self.connector is not None:
            raise ConfigurationError("give a proxy or a custom connector, not both")
        return self
