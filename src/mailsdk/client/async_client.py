"""The asyncio client: :class:`AsyncClient` and :class:`AsyncSession`.

Layer: L5 client. May import L0-L4. Every method body is one call into a flow run by the
driver. The blocking twin ``sync_client.py`` is generated from this file by
``scripts/unasync.py``: the same names and signatures, the same docstrings.
"""

from __future__ import annotations

import contextlib
import types
import typing
from collections.abc import (
    AsyncIterable,  # unasync: drop
    AsyncIterator,  # unasync: drop
    Generator,
    Iterable,
    Iterator,
    Sequence,
)

import attrs

from mailsdk._secret import Secret
from mailsdk._types import MessageSource
from mailsdk.client import _sending, _setup
from mailsdk.client._async_driver import AsyncDriver  # unasync: drop
from mailsdk.client._async_express import run_express, send_one  # unasync: drop
from mailsdk.client._connectors import open_stream_async
from mailsdk.client._express import open_lane
from mailsdk.client._hostname import alocal_hostname
from mailsdk.client._policy import SAFE_TO_QUIT, refuse_if_busy
from mailsdk.client._pump import Pump

# unasync: add from mailsdk.client._sync_driver import SyncDriver
# unasync: add from mailsdk.client._sync_express import run_express, send_one
from mailsdk.config import AuthSettings, ClientConfig
from mailsdk.errors import InvalidInputError, LocalProtocolError, MailError
from mailsdk.esmtp import Capabilities, MailOptions, RcptOptions
from mailsdk.flows import (
    Action,
    Delivery,
    OpenedSession,
    Outgoing,
    SendOutcome,
    SendResult,
    SessionPlan,
    TlsInfo,
    TlsMode,
    authenticate,
    checked,
    deliver_many,
    hello,
    quit_session,
    raw,
)
from mailsdk.flows.express import ExpressRun
from mailsdk.flows.handshake import negotiate_tls
from mailsdk.flows.judge import ParameterCache
from mailsdk.flows.session import channel_binding_of
from mailsdk.protocol.commands import Expn, Help, Noop, Raw, Rset, Vrfy
from mailsdk.protocol.connection import ClientConnection
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.reply import Reply
from mailsdk.telemetry import SessionObserver

T = typing.TypeVar("T")

if typing.TYPE_CHECKING:
    # unasync: drop AsyncConnectionLimiter
    from mailsdk.batch.limits import AsyncConnectionLimiter, ConnectionLimiter
    from mailsdk.pool import AsyncPool


__all__ = ["AsyncClient", "AsyncLMTPClient", "AsyncSession"]


class AsyncSession:
    """An open asyncio SMTP/LMTP session. Use ``async with``: leaving the block sends QUIT.

    Create it with :meth:`AsyncClient.connect`; never directly.
    """

    def __init__(
        self,
        driver: AsyncDriver,
        config: ClientConfig,
        opened: OpenedSession,
        observer: SessionObserver,
        local_hostname: str,
    ) -> None:
        self._driver = driver
        self._config = config
        self._opened = opened
        self._observer = observer
        self._local_hostname = local_hostname
        #: Envelope parameters per set of options, computed once (``flows.judge``).
        self._parameters: ParameterCache = {}

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<AsyncSession {self._config.describe()} {state} tls={self.tls is not None}>"

    @property
    def capabilities(self) -> Capabilities:
        """What the server advertised in its latest EHLO/LHLO reply."""
        return self._opened.capabilities

    @property
    def tls(self) -> TlsInfo | None:
        """TLS details (version, cipher) when the session is encrypted, else ``None``."""
        return self._opened.tls

    @property
    def mechanism(self) -> str | None:
        """The SASL mechanism the session authenticated with, if any."""
        return self._opened.mechanism

    @property
    def closed(self) -> bool:
        """True once the connection is closed (QUIT, a 421, or a transport failure)."""
        return self._driver.closed

    async def ehlo(self) -> Capabilities:
        """Send EHLO/LHLO again (HELO fallback) and return the fresh capabilities."""
        caps = await self._driver.run(
            hello(
                self._plan().local_hostname,
                dialect=self._config.dialect,
                registry=self._config.esmtp_registry,
            )
        )
        self._opened = attrs.evolve(self._opened, capabilities=caps)
        self._driver.pump.use_capabilities(caps)
        return caps

    async def starttls(self) -> TlsInfo:
        """Upgrade a plaintext session with STARTTLS (required: raises if not offered/refused)."""
        if self._opened.tls is not None:
            return self._opened.tls
        if self._driver.tls_context is None:
            # A session opened with TLS off has no context yet: build it from the settings now.
            self._driver.tls_context = _setup.tls_context(
                attrs.evolve(self._config, tls_mode=TlsMode.STARTTLS)
            )
        plan = self._plan()
        caps, info = await self._driver.run(
            negotiate_tls(
                self.capabilities,
                TlsMode.STARTTLS,
                plan.local_hostname,
                dialect=plan.dialect,
                registry=plan.esmtp_registry,
            )
        )
        assert info is not None
        self._opened = OpenedSession(caps, info, self._opened.mechanism)
        self._driver.pump.use_capabilities(caps)
        self._observer.tls_established(version=info.version, cipher=info.cipher, implicit=False)
        return info

    async def login(
        self,
        username: str,
        password: str | Secret,
        *,
        mechanisms: Sequence[str] | None = None,
        allow_plaintext: bool = False,
    ) -> str:
        """Authenticate with a password; returns the mechanism used.

        Raises:
            AuthError: no mechanism in common, or only ones refused over plaintext.
            AuthenticationFailed: the server rejected the credentials.
        """
        settings = AuthSettings(
            username=username,
            password=password,  # AuthSettings wraps it in a Secret
            mechanisms=mechanisms,  # AuthSettings converts and checks
            allow_plaintext=allow_plaintext,
        )
        return await self.authenticate(settings)

    async def authenticate(self, settings: AuthSettings) -> str:
        """Authenticate with ``settings`` (password or token provider); returns the mechanism."""
        # Refused before the provider is swapped: a call in progress may be using it.
        refuse_if_busy(self._driver)
        self._driver.token_provider = settings.token_provider
        request = _setup.auth_request(settings)
        plan = self._plan()
        mech = await self._driver.run(
            authenticate(
                request,
                self.capabilities,
                self._config.sasl_registry,
                host=plan.host,
                port=plan.port,
                tls_active=self.tls is not None,
                channel_binding=channel_binding_of(self.tls),
            )
        )
        self._opened = attrs.evolve(self._opened, mechanism=mech)
        self._observer.authenticated(mech)
        return mech

    async def send_message(
        self,
        message: MessageSource,
        *,
        sender: str | None = None,
        recipients: Sequence[str] | str | None = None,
        mail_options: MailOptions | None = None,
        rcpt_options: RcptOptions | None = None,
    ) -> SendResult:
        """Send a message; the envelope comes from its headers unless given (smtplib's rules).

        Args:
            message: an ``email.message.Message``, bytes or str, or a streamed source read in
                bounded pieces (never held whole): a path (``os.PathLike``), a binary file
                object or an iterable of bytes chunks. Raw and streamed messages need an
                explicit ``sender`` and ``recipients``.
            sender: the envelope sender (default: from the headers).
            recipients: the envelope recipients (default: To, Cc and Bcc).
            mail_options: MAIL parameters (default: the client's).
            rcpt_options: RCPT parameters (default: the client's).

        Returns:
            The :class:`SendResult`: accepted and refused recipients, final reply, size.

        Raises:
            InvalidInputError, CapabilityError, SenderRefused, RecipientsRefused (all refused),
            DataRefused, TransportError; DeliveryUnknown (a ConnectionLost) when the end of the
            data was written and no reply came: the message may have been delivered.
        """
        prepared, tx = _sending.begin_send(
            self._observer, message, sender, recipients, self._config.dkim
        )
        lane = self._open_lane(single=True)
        if lane is not None:  # the transaction's schedule without the per-command machinery
            item = Delivery(
                index=0,
                prepared=prepared,
                mail_options=mail_options or self._config.mail_options,
                rcpt_options=rcpt_options or self._config.rcpt_options,
                owner=tx,
            )
            try:
                outcome = await send_one(self._driver, lane, item)
            except BaseException as exc:
                tx.failed(exc)
                raise
            if outcome.result is not None and outcome.status.delivered:
                return _sending.finish_send(tx, outcome.result)
            error = outcome.error or LocalProtocolError("the message got no outcome")
            tx.failed(error)
            raise error
        try:
            result = await self._driver.run(
                _sending.send_flow(
                    self._config,
                    self.capabilities,
                    prepared,
                    mail_options,
                    rcpt_options,
                    tls_active=self.tls is not None,
                    cache=self._parameters,
                )
            )
        except BaseException as exc:
            tx.failed(exc)
            raise
        return _sending.finish_send(tx, result)

    def send_many(
        self,
        # unasync: drop AsyncIterable
        items: Iterable[MessageSource | Outgoing] | AsyncIterable[MessageSource | Outgoing],
    ) -> AsyncIterator[SendOutcome]:
        """Send many messages on this connection, pipelined across transactions.

        With PIPELINING, message N+1's MAIL, RCPT and DATA travel in the write that carries
        message N's content (RFC 2920 §3.1): one round trip per message. Items are prepared
        one at a time as they are needed, so ``items`` may be a long or endless generator,
        synchronous or asynchronous (the frames already encoded are written before waiting
        for an asynchronous source).

        Args:
            items: messages in any form :meth:`send_message` accepts (the envelope then comes
                from the headers), or :class:`~mailsdk.Outgoing` items with their own envelope,
                options and key.

        Returns:
            An asynchronous iterator of one :class:`~mailsdk.SendOutcome` per item, in input
            order, each yielded as soon as it is known. A refusal affects only its own message;
            after a 421 or a broken connection every remaining item still gets its outcome
            (FAILED: never sent; UNKNOWN: its end of data was sent and no reply came, so it may
            have been delivered). Stopping early closes the connection when messages are still
            in flight.

        Raises:
            InvalidInputError: ``items`` is not iterable.
            ConnectionLost: the session is closed.
            Exception: whatever ``items`` itself raised, re-raised once every item it had
                produced has its outcome (the input ends where it broke).
        """
        source: Iterator[object] | AsyncIterator[object]  # unasync: drop
        try:
            # unasync: becomes source = iter(items)
            source = aiter(items) if isinstance(items, AsyncIterable) else iter(items)
        except TypeError:
            raise InvalidInputError(
                f"send_many needs an iterable of messages, not {type(items).__name__}"
            ) from None
        return self._send_many(_sending.Feed(self._observer, self._config, source))

    def _open_lane(self, *, single: bool = False) -> ExpressRun | None:
        """An express run for this session now, or ``None`` (see ``client/_express.py``)."""
        return open_lane(
            self._driver,
            self._config,
            self.capabilities,
            tls_active=self.tls is not None,
            cache=self._parameters,
            single=single,
        )

    async def _send_many(self, feed: _sending.Feed) -> AsyncIterator[SendOutcome]:
        cfg = self._config
        lane = self._open_lane()
        if lane is not None:  # the general flow's schedule without its per-command machinery
            express = run_express(self._driver, lane, feed)
            try:
                async for outcome in express:
                    yield feed.settle(outcome)
                feed.reraise()
            finally:
                await express.aclose()
                feed.close()
            return
        flow = deliver_many(
            self.capabilities,
            dialect=cfg.dialect,
            options=cfg.transaction,
            tls_active=self.tls is not None,
        )
        box: list[None] = []  # unasync: drop
        # unasync: becomes steps = self._driver.steps(flow, feed.pull)
        steps = self._driver.steps(flow, box, feed.apull, flush_before_pull=feed.asynchronous)
        try:
            async for value in steps:
                yield feed.settle(value)
            feed.reraise()
        finally:
            await steps.aclose()
            feed.close()

    async def sendmail(
        self,
        sender: str,
        recipients: Sequence[str] | str,
        message: MessageSource,
        *,
        mail_options: MailOptions | None = None,
        rcpt_options: RcptOptions | None = None,
    ) -> SendResult:
        """Send a raw message (bytes or str) with an explicit envelope."""
        return await self.send_message(
            message,
            sender=sender,
            recipients=recipients,
            mail_options=mail_options,
            rcpt_options=rcpt_options,
        )

    async def run(self, flow: Generator[Action, object, T]) -> T:
        """Run a sans-IO flow (see :mod:`mailsdk.flows`) on this session; return its value.

        The supported way to drive a conversation of your own (or a flow of mailsdk's, such as
        :func:`mailsdk.flows.checked`) over the session's connection, with its deadlines,
        telemetry, wire log and failure policy: a refusal leaves the session usable, a
        transport or protocol failure (or a 421) closes it. What the flow negotiates (a new
        EHLO) is not copied into :attr:`capabilities`; use :meth:`ehlo` for that.

        Raises:
            MailError: whatever the flow raised.
        """
        return await self._driver.run(flow)

    async def noop(self) -> Reply:
        """NOOP (RFC 5321 §4.1.1.9). Raises :class:`CommandRefused` on a refusal."""
        return await self._driver.run(checked(Noop()))

    async def rset(self) -> Reply:
        """RSET: abort the current transaction."""
        return await self._driver.run(checked(Rset()))

    async def vrfy(self, address: str) -> Reply:
        """VRFY (252 "cannot verify" is returned, not raised)."""
        return await self._driver.run(checked(Vrfy(address)))

    async def expn(self, mailing_list: str) -> Reply:
        """EXPN: expand a mailing list."""
        return await self._driver.run(checked(Expn(mailing_list)))

    async def help(self, topic: str | None = None) -> Reply:
        """HELP, optionally on a topic."""
        return await self._driver.run(checked(Help(topic)))

    async def execute(self, line: str) -> Reply:
        """Send any command line (CR/LF refused) and return the reply whatever its code."""
        return await self._driver.run(raw(Raw(line)))

    async def quit(self) -> Reply:
        """QUIT and close the connection."""
        try:
            return await self._driver.run(quit_session())
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the connection without QUIT (idempotent)."""
        if not self._driver.closed:
            await self._driver.aclose()
        self._observer.end(None)

    def _plan(self) -> SessionPlan:
        return _setup.plan_for(self._config, self._local_hostname)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        if self.closed:
            self._observer.end(exc)
            return
        try:
            if exc is None or not isinstance(exc, MailError) or isinstance(exc, SAFE_TO_QUIT):
                with contextlib.suppress(MailError):
                    await self._driver.run(quit_session())
            await self._driver.aclose()
        finally:  # even when the QUIT is interrupted (cancelled, KeyboardInterrupt)
            self._observer.end(exc)


class AsyncClient:
    """An asyncio SMTP client for one configuration. Cheap to create, safe to share
    between tasks: each :meth:`connect` opens an independent :class:`AsyncSession`.

    Args:
        config: the validated configuration (see :class:`mailsdk.ClientBuilder`).
    """

    def __init__(self, config: ClientConfig) -> None:
        self._config = config.validate()
        self._tls = _setup.TlsContextCache(self._config)

    def __repr__(self) -> str:
        cfg = self._config
        return f"<{type(self).__name__} {cfg.describe()} tls={cfg.tls_mode.value}>"

    @property
    def config(self) -> ClientConfig:
        """The immutable configuration."""
        return self._config

    async def connect(self) -> AsyncSession:
        """Connect, greet, negotiate TLS and authenticate as configured.

        Raises:
            ConnectError, ConnectTimeout, TLSError, GreetingRefused, HeloRefused,
            StartTLSRefused, CapabilityError, AuthError, AuthenticationFailed.
        """
        cfg = self._config
        observer = _setup.session_observer(cfg)
        try:
            context = self._tls.get()
            stream = await open_stream_async(self, cfg, context)
        except BaseException as exc:
            observer.end(exc)
            explained = _setup.explain_connect_failure(exc, cfg)
            if explained is exc:
                raise
            raise explained from exc
        observer.connected(**_setup.peer_of(stream.info))
        pump = Pump(
            ClientConnection(dialect=cfg.dialect, limits=cfg.limits),
            observer,
            cfg.timeouts,
            greeting_hint=_setup.port_hint(cfg),
        )
        provider = cfg.auth.token_provider if cfg.auth else None
        driver = AsyncDriver(
            stream,
            pump,
            tls_context=context,
            server_hostname=cfg.verify_name,
            token_provider=provider,
        )
        implicit = driver.tls_info()
        try:
            # unasync: async-only
            # The default EHLO name needs a DNS lookup: the first runs off the event loop.
            # unasync: end
            hostname = await alocal_hostname(cfg.local_hostname, stream.info.local_address)
            opened = await driver.run(_setup.open_flow(cfg, hostname, implicit))
        except BaseException as exc:
            try:
                if not driver.closed and isinstance(exc, SAFE_TO_QUIT):
                    with contextlib.suppress(MailError):
                        await driver.run(quit_session())
                await driver.aclose()
            finally:
                observer.end(exc)
            raise
        _setup.report_opened(pump, opened, implicit is not None)
        return AsyncSession(driver, cfg, opened, observer, hostname)

    def pool(
        self,
        *,
        max_connections: int = 4,
        max_messages_per_connection: int | None = 1000,
        max_connection_age: float | None = 300.0,
        idle_timeout: float | None = 30.0,
        health_check_after: float = 1.0,
        checkout_timeout: float | None = 30.0,
        # unasync: drop AsyncConnectionLimiter
        connection_limiter: ConnectionLimiter | AsyncConnectionLimiter | None = None,
    ) -> AsyncPool:
        """A task-safe connection pool to this client's server (:class:`mailsdk.pool.AsyncPool`).

        Use it with ``async with``; ``await pool.send_message`` and ``pool.send_batch`` send.
        """
        # The pool layer sits above the client; this one facade import is declared in the
        # import-linter contract (and made here, late, so importing the client stays light).
        from mailsdk.pool import AsyncPool

        return AsyncPool(
            self,
            max_connections=max_connections,
            max_messages_per_connection=max_messages_per_connection,
            max_connection_age=max_connection_age,
            idle_timeout=idle_timeout,
            health_check_after=health_check_after,
            checkout_timeout=checkout_timeout,
            connection_limiter=connection_limiter,
        )

    async def send_message(
        self,
        message: MessageSource,
        *,
        sender: str | None = None,
        recipients: Sequence[str] | str | None = None,
        mail_options: MailOptions | None = None,
        rcpt_options: RcptOptions | None = None,
    ) -> SendResult:
        """One-shot: connect, send one message, QUIT."""
        async with await self.connect() as session:
            return await session.send_message(
                message,
                sender=sender,
                recipients=recipients,
                mail_options=mail_options,
                rcpt_options=rcpt_options,
            )

    async def sendmail(
        self,
        sender: str,
        recipients: Sequence[str] | str,
        message: MessageSource,
        *,
        mail_options: MailOptions | None = None,
        rcpt_options: RcptOptions | None = None,
    ) -> SendResult:
        """One-shot raw send: connect, send, QUIT."""
        return await self.send_message(
            message,
            sender=sender,
            recipients=recipients,
            mail_options=mail_options,
            rcpt_options=rcpt_options,
        )


class AsyncLMTPClient(AsyncClient):
    """An asyncio LMTP client (RFC 2033): LHLO, and one result per recipient after the data.

    The configuration's dialect is forced to LMTP; use a unix-socket endpoint or TCP.
    """

    def __init__(self, config: ClientConfig) -> None:
        super().__init__(attrs.evolve(config, dialect=Dialect.LMTP))
