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
from mailsdk.auth import MechanismRegistry
from mailsdk.auth.tokens import AsyncTokenProvider, TokenProvider
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

    Defaults follow RFC 5321 §4.5.3.2 (greeting 5 min, MAIL/RCPT 5 min, DATA initiation 2 min,
    end-of-data 10 min) except ``connect`` (30 s). ``None`` means no deadline.

    Attributes:
        connect: name resolution, the TCP connect (Happy Eyeballs), a proxy's handshake and
            the implicit TLS handshake, together.
        greeting: waiting for the 220 greeting.
        command: any command's reply (each reply restarts it).
        tls: the STARTTLS handshake.
        data: the end-of-data reply after the body was sent.
        data_rate: minimum bytes per second the body transfer may take; the write deadline for
            the body is ``command + size / data_rate``.
        quit: QUIT's reply (short: nothing depends on it).
    """

    connect: float | None = 30.0
    greeting: float | None = 300.0
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


@attrs.frozen(kw_only=True)
class Endpoint:
    """Where to connect: a TCP host and port, a unix-domain socket path, or a ready socket."""

    host: str | None = None
    port: int | None = None
    path: str | None = None
    sock: socket.socket | None = attrs.field(default=None, eq=False, repr=False)
    source_address: tuple[str, int] | None = None

    def __attrs_post_init__(self) -> None:
        given = sum(x is not None for x in (self.host, self.path, self.sock))
        if given != 1:
            raise ConfigurationError("an endpoint needs exactly one of host, path or sock")
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


@attrs.frozen(kw_only=True)
class AuthSettings:
    """Credentials and how to use them.

    Exactly one of ``password`` and ``token_provider``. ``mechanisms`` is the preference
    (strongest first); ``None`` uses the registry's default order for the credential kind.
    ``allow_plaintext`` lets mechanisms that send a reusable secret run without TLS.
    """

    username: str
    password: Secret | None = attrs.field(default=None, converter=attrs.converters.optional(Secret))
    token_provider: TokenProvider | AsyncTokenProvider | None = attrs.field(
        default=None, repr=False
    )
    authzid: str | None = None
    mechanisms: tuple[str, ...] | None = None
    allow_plaintext: bool = False

    def __attrs_post_init__(self) -> None:
        if (self.password is None) == (self.token_provider is None):
            raise ConfigurationError("give exactly one of password and token_provider")


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
    proxy: ProxyUrl | None = None
    connector: Connector | AsyncConnector | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def port(self) -> int:
        """The effective port (defaults by TLS mode and dialect)."""
        if self.endpoint.port is not None:
            return self.endpoint.port
        if self.dialect is Dialect.LMTP:
            return LMTP_PORT
        if self.tls_mode is TlsMode.IMPLICIT:
            return SMTPS_PORT
        return SUBMISSION_PORT if self.auth is not None else SMTP_PORT

    @property
    def verify_name(self) -> str | None:
        """The host name certificates are checked against."""
        return self.server_hostname or self.endpoint.host

    def validate(self) -> ClientConfig:
        """Check cross-field rules; returns ``self``.

        Raises:
            ConfigurationError: credentials with TLS off (unless ``allow_plaintext``); implicit
                TLS or STARTTLS with no host name to verify while verification is on; a proxy
                for a unix or socket endpoint, or together with a custom connector.
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
        if self.proxy is not None and self.endpoint.host is None:
            raise ConfigurationError("a proxy tunnels TCP only: it needs a host endpoint")
        if self.proxy is not None and self.connector is not None:
            raise ConfigurationError("give a proxy or a custom connector, not both")
        return self
