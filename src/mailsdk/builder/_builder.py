"""The :class:`ClientBuilder` class (see :mod:`mailsdk.builder`).

Layer: L6 composition (private). May import everything below (L0-L5); never api, compat or
cli. The argument checks of the ``with_*`` methods are in ``_checks``.
"""

from __future__ import annotations

import os
import socket
import typing
from collections.abc import Sequence

import attrs

from mailsdk._secret import Secret
from mailsdk.auth import Mechanism, MechanismRegistry
from mailsdk.auth.tokens import (
    AsyncCachingTokenProvider,
    AsyncTokenProvider,
    CachingTokenProvider,
    TokenProvider,
    is_async_provider,
)
from mailsdk.builder._checks import (
    expect,
    expect_bool,
    expect_mechanisms,
    expect_method,
    expect_otel_options,
    expect_port,
    expect_str,
    expect_token_provider,
    refused,
)
from mailsdk.client import AsyncClient, AsyncLMTPClient, Client, LMTPClient
from mailsdk.config import AuthSettings, ClientConfig, Endpoint, Timeouts
from mailsdk.dkim import DkimKey, DkimSigner
from mailsdk.errors import ConfigurationError
from mailsdk.esmtp import Extension, ExtensionRegistry, MailOptions, RcptOptions
from mailsdk.flows import TlsMode, TransactionOptions
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.reply_parser import ReplyLimits
from mailsdk.telemetry import Instrumentation, NoopInstrumentation, OpenTelemetryInstrumentation
from mailsdk.transport import (
    AsyncConnector,
    Connector,
    ProxyUrl,
    TlsSettings,
    connector_kind,
    parse_host_port,
    proxy_from_env,
)
from mailsdk.url import parse_mail_url

__all__ = ["ClientBuilder"]

OFFICE365_HOST: typing.Final = "smtp.office365.com"
GMAIL_HOST: typing.Final = "smtp.gmail.com"
#: Office365 and Gmail speak XOAUTH2; OAUTHBEARER is the standard fallback.
OAUTH_MECHANISMS: typing.Final = ("XOAUTH2", "OAUTHBEARER")


@attrs.frozen(kw_only=True)
class ClientBuilder:
    """Immutable builder for :class:`~mailsdk.Client` and :class:`~mailsdk.AsyncClient`.

    Start with :meth:`smtp`, :meth:`unix`, :meth:`office365` or :meth:`gmail`.
    """

    endpoint: Endpoint
    tls_mode: TlsMode | None = None
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
    extensions: tuple[Extension, ...] = ()
    mechanisms: tuple[Mechanism, ...] = ()
    entry_points: bool = False
    instrumentation: Instrumentation | None = attrs.field(default=None, repr=False)
    dkim: tuple[DkimSigner, ...] = ()
    proxy: ProxyUrl | None = None
    proxy_from_env: bool = False
    connector: Connector | AsyncConnector | None = attrs.field(default=None, repr=False)

    # -- starting points ------------------------------------------------------------------------

    @classmethod
    def smtp(cls, host: str, port: int | str | None = None) -> ClientBuilder:
        """A TCP server. ``host`` may be ``"host:port"`` or ``"[v6]:port"``; ``port`` may be a
        decimal string (e.g. from an environment variable).

        Port 465 selects implicit TLS; anything else STARTTLS (required) unless changed with
        :meth:`with_tls`. Without a port: 587 for STARTTLS, 465 for implicit TLS, 25 with TLS
        off or opportunistic (see :attr:`ClientConfig.port`).
        """
        given: object = host  # checked: it often comes from os.environ.get()
        if not isinstance(given, str) or not given:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(f"host must be a non-empty str, not {given!r}")
        if port is None and ":" in host:
            # Parse twice with different defaults: equal ports mean the text named one.
            text = host
            host, parsed = parse_host_port(text, 1)
            port = parsed if parse_host_port(text, 2)[1] == parsed else None
        return cls(endpoint=Endpoint(host=host, port=port))  # Endpoint converts/validates port

    @classmethod
    def from_url(cls, url: str, *, password: str | Secret | None = None) -> ClientBuilder:
        """A builder from a URL: ``smtp://user@host:587?tls=starttls``, ``smtps://``,
        ``lmtp://``, ``lmtp+unix:///run/dovecot/lmtp``, with options as query parameters
        (see :mod:`mailsdk.url` for every option).

        The password comes from ``password``, from the variable named by ``?password_env=``,
        or from the URL itself; it is never shown in a ``repr``, log or error.

        Raises:
            ConfigurationError: an unknown scheme or option (named), a malformed URL, or a
                user without a password.
        """
        return parse_mail_url(url, password=password).builder(cls)

    @classmethod
    def unix(cls, path: str, *, lmtp: bool = True) -> ClientBuilder:
        """A unix-domain socket (LMTP by default); TLS off."""
        return cls(
            endpoint=Endpoint(path=path),
            tls_mode=TlsMode.NONE,
            dialect=Dialect.LMTP if lmtp else Dialect.SMTP,
        )

    @classmethod
    def from_socket(cls, sock: socket.socket) -> ClientBuilder:
        """An already connected socket supplied by the caller."""
        return cls(endpoint=Endpoint(sock=sock))

    @classmethod
    def office365(
        cls,
        username: str,
        *,
        token_provider: TokenProvider | AsyncTokenProvider | None = None,
        password: str | Secret | None = None,
        endpoint: str | None = None,
    ) -> ClientBuilder:
        """Exchange Online: ``smtp.office365.com:587``, STARTTLS required, XOAUTH2 with a token
        provider (see :mod:`mailsdk.auth.msal`), or basic AUTH with a password where the
        tenant still allows it.

        ``endpoint`` (``"host[:port]"``) replaces the server, e.g. a test relay; the rest of the
        preset stays.
        """
        base = cls._preset(endpoint or f"{OFFICE365_HOST}:587")
        return base._preset_auth(username, token_provider, password)

    @classmethod
    def gmail(
        cls,
        username: str,
        *,
        token_provider: TokenProvider | AsyncTokenProvider | None = None,
        password: str | Secret | None = None,
        endpoint: str | None = None,
    ) -> ClientBuilder:
        """Gmail / Google Workspace: ``smtp.gmail.com:587``, STARTTLS required, XOAUTH2 with a
        token provider (see :mod:`mailsdk.auth.google`) or an app password.

        ``endpoint`` (``"host[:port]"``) replaces the server, e.g. a test relay.
        """
        base = cls._preset(endpoint or f"{GMAIL_HOST}:587")
        return base._preset_auth(username, token_provider, password)

    @classmethod
    def _preset(cls, endpoint: str) -> ClientBuilder:
        # STARTTLS required whatever the port (a test relay on another port included).
        return attrs.evolve(cls.smtp(endpoint), tls_mode=TlsMode.STARTTLS)

    def _preset_auth(
        self,
        username: str,
        token_provider: TokenProvider | AsyncTokenProvider | None,
        password: str | Secret | None,
    ) -> ClientBuilder:
        if token_provider is not None:
            return self.with_token_provider(username, token_provider)
        if password is not None:
            return self.with_credentials(username, password)
        raise ConfigurationError("give a token_provider (OAuth) or a password")

    # -- fluent settings ------------------------------------------------------------------------

    def with_tls(
        self,
        mode: TlsMode | str,
        *,
        settings: TlsSettings | None = None,
        server_hostname: str | None = None,
    ) -> ClientBuilder:
        """Choose the TLS mode (``"implicit"``, ``"starttls"``, ``"opportunistic"``, ``"none"``)
        and optionally the certificate settings and the name to verify.

        Raises:
            ConfigurationError: an unknown mode, or an argument of the wrong type.
        """
        given: object = mode
        choices = ", ".join(repr(m.value) for m in TlsMode)
        if not isinstance(given, TlsMode | str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise refused("with_tls", "mode", f"a TlsMode or one of {choices}", given)
        try:
            tls_mode = TlsMode(mode)
        except ValueError:
            raise ConfigurationError(
                f"ClientBuilder.with_tls: unknown TLS mode {mode!r}; use one of {choices}"
            ) from None
        if settings is not None:
            expect("with_tls", "settings", settings, TlsSettings, "a TlsSettings or None")
        expect_str("with_tls", "server_hostname", server_hostname, optional=True)
        return attrs.evolve(
            self,
            tls_mode=tls_mode,
            tls=settings or self.tls,
            server_hostname=server_hostname or self.server_hostname,
        )

    def with_tls_settings(self, settings: TlsSettings) -> ClientBuilder:
        """Certificate verification settings (custom CA, client certificate, ...)."""
        expect("with_tls_settings", "settings", settings, TlsSettings, "a TlsSettings")
        return attrs.evolve(self, tls=settings)

    def with_credentials(
        self,
        username: str,
        password: str | Secret,
        *,
        mechanisms: Sequence[str] | None = None,
        authzid: str | None = None,
        allow_plaintext: bool = False,
    ) -> ClientBuilder:
        """Authenticate with a password (SCRAM, PLAIN, LOGIN by default preference).

        Raises:
            ConfigurationError: an argument of the wrong type (the password is never shown).
        """
        method = "with_credentials"
        expect_str(method, "username", username)
        expect(method, "password", password, (str, Secret), "a str or Secret", shown=False)
        expect_mechanisms(method, mechanisms, optional=True)
        expect_str(method, "authzid", authzid, optional=True)
        expect_bool(method, "allow_plaintext", allow_plaintext)
        return attrs.evolve(
            self,
            auth=AuthSettings(
                username=username,
                password=password,  # AuthSettings wraps it in a Secret
                mechanisms=mechanisms,
                authzid=authzid,
                allow_plaintext=allow_plaintext,
            ),
        )

    def with_token_provider(
        self,
        username: str,
        provider: TokenProvider | AsyncTokenProvider,
        *,
        mechanisms: Sequence[str] = OAUTH_MECHANISMS,
        allow_plaintext: bool = False,
    ) -> ClientBuilder:
        """Authenticate with OAuth access tokens from ``provider`` (XOAUTH2, OAUTHBEARER).

        ``allow_plaintext`` lets a bearer token cross a link without TLS (never do this
        outside tests: a token is as good as a password).

        Raises:
            ConfigurationError: an argument of the wrong type, a token string instead of a
                provider (never shown), or a provider bound to another mailbox.
        """
        method = "with_token_provider"
        expect_str(method, "username", username)
        expect_token_provider(method, provider)
        expect_mechanisms(method, mechanisms, optional=False)
        expect_bool(method, "allow_plaintext", allow_plaintext)
        return attrs.evolve(
            self,
            auth=AuthSettings(
                username=username,
                token_provider=provider,
                mechanisms=mechanisms,
                allow_plaintext=allow_plaintext,
            ),
        )

    def with_timeouts(self, timeouts: Timeouts | float) -> ClientBuilder:
        """Per-phase deadlines, or one number for every phase (a decimal ``str``, e.g. from an
        environment variable, is read as a number).

        Raises:
            ConfigurationError: not a Timeouts or a number of seconds (a bool is not one).
        """
        if isinstance(timeouts, Timeouts):
            return attrs.evolve(self, timeouts=timeouts)
        given: object = timeouts
        expected = "a Timeouts or a number of seconds"
        if isinstance(given, bool) or not isinstance(given, int | float | str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise refused("with_timeouts", "timeouts", expected, given)
        try:
            seconds = float(given)
        except ValueError:
            raise ConfigurationError(
                f"ClientBuilder.with_timeouts: timeouts must be {expected}, not {given!r}"
            ) from None
        return attrs.evolve(self, timeouts=Timeouts.uniform(seconds))

    def with_limits(self, limits: ReplyLimits) -> ClientBuilder:
        """Reply size limits (per line, lines per reply, bytes per reply)."""
        expect("with_limits", "limits", limits, ReplyLimits, "a ReplyLimits")
        return attrs.evolve(self, limits=limits)

    def with_local_hostname(self, name: str) -> ClientBuilder:
        """The name sent in EHLO/LHLO (default: the FQDN or an address literal)."""
        expect_str("with_local_hostname", "name", name)
        return attrs.evolve(self, local_hostname=name)

    def with_source_address(self, host: str, port: int = 0) -> ClientBuilder:
        """Bind the local end of the TCP connection (``port`` 0: any)."""
        expect_str("with_source_address", "host", host)
        expect_port("with_source_address", "port", port)
        return attrs.evolve(self, endpoint=attrs.evolve(self.endpoint, source_address=(host, port)))

    def with_lmtp(self, enabled: bool = True) -> ClientBuilder:
        """Speak LMTP (RFC 2033) instead of SMTP."""
        expect_bool("with_lmtp", "enabled", enabled)
        return attrs.evolve(self, dialect=Dialect.LMTP if enabled else Dialect.SMTP)

    def with_pipelining(self, enabled: bool = True) -> ClientBuilder:
        """Use PIPELINING (RFC 2920) when the server offers it (on by default)."""
        expect_bool("with_pipelining", "enabled", enabled)
        return attrs.evolve(self, transaction=attrs.evolve(self.transaction, pipelining=enabled))

    def with_chunking(
        self, mode: bool | None = None, *, chunk_size: int | None = None
    ) -> ClientBuilder:
        """BDAT (RFC 3030): ``None`` = when offered (default), ``True`` = required,
        ``False`` = never; optionally the chunk size in bytes."""
        if mode is not None:
            expect_bool("with_chunking", "mode", mode)
        size: object = self.transaction.chunk_size if chunk_size is None else chunk_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise refused("with_chunking", "chunk_size", "a positive int", size)
        return attrs.evolve(
            self, transaction=attrs.evolve(self.transaction, chunking=mode, chunk_size=size)
        )

    def with_8bit_policy(self, *, require_8bitmime: bool) -> ClientBuilder:
        """Whether 8-bit data to a server without 8BITMIME is refused (default) or sent as is."""
        expect_bool("with_8bit_policy", "require_8bitmime", require_8bitmime)
        return attrs.evolve(
            self, transaction=attrs.evolve(self.transaction, require_8bitmime=require_8bitmime)
        )

    def with_mail_options(self, options: MailOptions) -> ClientBuilder:
        """Default MAIL FROM options for every send (DSN RET/ENVID, REQUIRETLS, ...)."""
        expect("with_mail_options", "options", options, MailOptions, "a MailOptions")
        return attrs.evolve(self, mail_options=options)

    def with_rcpt_options(self, options: RcptOptions) -> ClientBuilder:
        """Default RCPT TO options for every send (DSN NOTIFY/ORCPT, ...)."""
        expect("with_rcpt_options", "options", options, RcptOptions, "a RcptOptions")
        return attrs.evolve(self, rcpt_options=options)

    def with_extension(self, extension: Extension) -> ClientBuilder:
        """Register a third-party ESMTP extension (parsing and MAIL/RCPT parameters)."""
        expect("with_extension", "extension", extension, Extension, "an Extension (keyword, parse)")
        return attrs.evolve(self, extensions=(*self.extensions, extension))

    def with_mechanism(self, mechanism: Mechanism) -> ClientBuilder:
        """Register a third-party SASL mechanism."""
        expect("with_mechanism", "mechanism", mechanism, Mechanism, "a Mechanism (name, start)")
        return attrs.evolve(self, mechanisms=(*self.mechanisms, mechanism))

    def with_entry_point_plugins(self, enabled: bool = True) -> ClientBuilder:
        """Opt in to discovering plugins from the ``mailsdk.sasl`` / ``mailsdk.esmtp`` groups."""
        expect_bool("with_entry_point_plugins", "enabled", enabled)
        return attrs.evolve(self, entry_points=enabled)

    def with_instrumentation(self, instrumentation: Instrumentation) -> ClientBuilder:
        """Any :class:`~mailsdk.telemetry.Instrumentation` implementation."""
        expected = "an Instrumentation (with session())"
        expect_method(
            "with_instrumentation", "instrumentation", instrumentation, "session", expected
        )
        return attrs.evolve(self, instrumentation=instrumentation)

    def with_opentelemetry(self, **kwargs: typing.Any) -> ClientBuilder:
        """OpenTelemetry spans and metrics (docs/telemetry.md).

        Keyword arguments go to :class:`~mailsdk.telemetry.OpenTelemetryInstrumentation`:
        ``tracer_provider`` / ``meter_provider`` (default: the global ones),
        ``record_addresses`` (PII, off by default), ``propagate`` (add a W3C ``traceparent``
        header to each message), ``propagator``, ``extra_verbs`` (custom command verbs to
        name in spans) and ``clock``.

        Raises:
            ConfigurationError: an unknown keyword or one of the wrong type.
        """
        expect_otel_options("with_opentelemetry", kwargs)
        try:
            instrumentation = OpenTelemetryInstrumentation(**kwargs)
        except TypeError as exc:  # an unknown keyword
            raise ConfigurationError(f"ClientBuilder.with_opentelemetry: {exc}") from None
        return attrs.evolve(self, instrumentation=instrumentation)

    def with_dkim(
        self,
        domain: str,
        selector: str,
        key: DkimKey | Secret | bytes | str | os.PathLike[str],
        **options: typing.Any,
    ) -> ClientBuilder:
        """Sign every message with DKIM (RFC 6376 RSA-SHA256, RFC 8463 Ed25519-SHA256).

        Call it again to add another signature (e.g. RSA and Ed25519). The signature is the
        last preparation step, after the trace headers (docs/dkim.md). Needs the ``dkim``
        extra.

        Args:
            domain: the signing domain (``d=``).
            selector: the key's selector (``s=``).
            key: a key file path, a :class:`~mailsdk.Secret` or ``bytes`` with the PEM text,
                or a :class:`~mailsdk.dkim.DkimKey`.
            **options: :class:`~mailsdk.dkim.DkimSigner` options: ``headers``, ``oversign``,
                ``canonicalization``, ``identity``, ``expire_after``.

        Raises:
            ConfigurationError: an unusable key or option (never quoting the key).
        """
        expect_str("with_dkim", "domain", domain)
        expect_str("with_dkim", "selector", selector)
        try:
            signer = DkimSigner(domain=domain, selector=selector, key=DkimKey.load(key), **options)
        except TypeError as exc:
            raise ConfigurationError(f"ClientBuilder.with_dkim: {exc}") from None
        return attrs.evolve(self, dkim=(*self.dkim, signer))

    def with_proxy(
        self, url: str | ProxyUrl | None = None, *, from_env: bool = False
    ) -> ClientBuilder:
        """Tunnel through a proxy: SOCKS5 (with user/password), SOCKS4a or HTTP CONNECT.

        TLS (implicit or STARTTLS) runs end to end through the tunnel and the certificate is
        checked against the mail server's name, never the proxy's. ``with_proxy()`` with no
        argument removes the proxy.

        Args:
            url: e.g. ``"socks5://user:pass@proxy.example:1080"``, ``"socks4a://proxy:1080"``,
                ``"http://proxy:3128"`` (the password is kept as a :class:`~mailsdk.Secret`).
            from_env: take the proxy from ``all_proxy``/``ALL_PROXY`` or
                ``socks_proxy``/``SOCKS_PROXY`` when the client is built, unless
                ``no_proxy``/``NO_PROXY`` exempts the host (see
                :func:`mailsdk.transport.proxy_from_env`).

        Raises:
            ConfigurationError: both ``url`` and ``from_env``, or an unusable URL (the message
                never shows the password).
        """
        expect_bool("with_proxy", "from_env", from_env)
        if url is not None:
            expect("with_proxy", "url", url, (str, ProxyUrl), "a proxy URL str, a ProxyUrl or None")
        if url is not None and from_env:
            raise ConfigurationError("give a proxy URL or from_env=True, not both")
        proxy = ProxyUrl.parse(url) if isinstance(url, str) else url
        return attrs.evolve(self, proxy=proxy, proxy_from_env=from_env)

    def with_connector(self, connector: Connector | AsyncConnector | None) -> ClientBuilder:
        """Open connections with a custom connector (a tunnel, a test double, a pre-made socket).

        The connector returns a plaintext stream; the client starts TLS on it as configured.
        Use a :class:`~mailsdk.transport.Connector` with :meth:`build` and an
        :class:`~mailsdk.transport.AsyncConnector` with :meth:`build_async`.
        """
        if connector is not None:
            expected = "a Connector, an AsyncConnector or None"
            expect_method("with_connector", "connector", connector, "connect", expected)
        return attrs.evolve(self, connector=connector)

    # -- building -------------------------------------------------------------------------------

    def config(self) -> ClientConfig:
        """The validated :class:`ClientConfig`.

        Raises:
            ConfigurationError: inconsistent settings.
        """
        esmtp = ExtensionRegistry.default()
        sasl = MechanismRegistry.default()
        if self.entry_points:
            esmtp.load_entry_points()
            sasl.load_entry_points()
        for ext in self.extensions:
            esmtp.register(ext)
        for mech in self.mechanisms:
            sasl.register(mech)
        mode = self.tls_mode
        if mode is None:
            mode = TlsMode.IMPLICIT if self.endpoint.port == 465 else TlsMode.STARTTLS
        return ClientConfig(
            endpoint=self.endpoint,
            tls_mode=mode,
            tls=self.tls,
            server_hostname=self.server_hostname,
            local_hostname=self.local_hostname,
            dialect=self.dialect,
            timeouts=self.timeouts,
            limits=self.limits,
            auth=self.auth,
            transaction=self.transaction,
            mail_options=self.mail_options,
            rcpt_options=self.rcpt_options,
            esmtp_registry=esmtp,
            sasl_registry=sasl,
            instrumentation=self.instrumentation or NoopInstrumentation(),
            dkim=self.dkim,
            proxy=self._proxy(),
            connector=self.connector,
        ).validate()

    def _proxy(self) -> ProxyUrl | None:
        if not self.proxy_from_env:
            return self.proxy
        if self.endpoint.host is None:
            return None  # unix and socket endpoints are never proxied
        return proxy_from_env(self.endpoint.host)

    def build(self) -> Client:
        """A blocking client (an :class:`~mailsdk.LMTPClient` when LMTP was chosen).

        A token provider is wrapped in a :class:`~mailsdk.auth.CachingTokenProvider` shared by
        every session of the client: one refresh at a time, ahead of expiry.
        """
        config = self.config()
        _check_connector(config, asynchronous=False)
        if config.auth is not None and config.auth.token_provider is not None:
            provider = config.auth.token_provider
            if is_async_provider(provider):
                raise ConfigurationError(
                    "the blocking client needs a synchronous TokenProvider; use build_async()"
                )
            if not isinstance(provider, CachingTokenProvider):
                sync = typing.cast("TokenProvider", provider)
                config = _with_provider(config, CachingTokenProvider(sync))
        return LMTPClient(config) if config.dialect is Dialect.LMTP else Client(config)

    def build_async(self) -> AsyncClient:
        """An asyncio client (an :class:`~mailsdk.AsyncLMTPClient` when LMTP was chosen).

        A token provider (sync ones run in a worker thread) is wrapped in an
        :class:`~mailsdk.auth.AsyncCachingTokenProvider` shared by every session.
        """
        config = self.config()
        _check_connector(config, asynchronous=True)
        if config.auth is not None and config.auth.token_provider is not None:
            provider = config.auth.token_provider
            if not isinstance(provider, AsyncCachingTokenProvider):
                config = _with_provider(config, AsyncCachingTokenProvider(provider))
        return AsyncLMTPClient(config) if config.dialect is Dialect.LMTP else AsyncClient(config)


def _with_provider(
    config: ClientConfig, provider: TokenProvider | AsyncTokenProvider
) -> ClientConfig:
    assert config.auth is not None
    return attrs.evolve(config, auth=attrs.evolve(config.auth, token_provider=provider))


def _check_connector(config: ClientConfig, *, asynchronous: bool) -> None:
    """A blocking client needs a blocking connector, an asyncio client an asyncio one."""
    if config.connector is None:
        return
    if connector_kind(config.connector) != ("async" if asynchronous else "blocking"):
        wanted = "an AsyncConnector (async def connect)" if asynchronous else "a Connector"
        other = "build()" if asynchronous else "build_async()"
        raise ConfigurationError(
            f"this client needs {wanted} as its connector; {config.connector!r} does not fit "
            f"(or use {other})"
        )
