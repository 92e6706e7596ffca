"""What the sync and async drivers share: the reply pump, deadlines, wire log, send bookkeeping.

Layer: L5 client (private). May import L0-L4. No I/O happens here: the drivers read and write;
this module decides what to write, which deadline applies, and what the bytes read mean. Keeping
it here is what makes the two drivers small and identical in behaviour.
"""

from __future__ import annotations

import copy
import email.message
import functools
import logging
import socket
import ssl
import time
import typing
from collections.abc import Callable, Generator, Mapping, Sequence

import attrs

from mailsdk._types import MessageLike
from mailsdk.client._dkim import sign_prepared
from mailsdk.dkim import DkimSigner
from mailsdk.errors import (
    AuthError,
    CapabilityError,
    CommandRefused,
    ConnectionLost,
    InvalidInputError,
    LocalProtocolError,
    MailError,
    ReadTimeout,
    RemoteProtocolError,
    ReplyError,
)
from mailsdk.esmtp import Capabilities, MailOptions, RcptOptions
from mailsdk.flows import (
    Action,
    AuthRequest,
    OpenedSession,
    Phase,
    PreparedMessage,
    SendResult,
    SessionPlan,
    TlsInfo,
    TlsMode,
    open_session,
    prepare_message,
    prepare_raw,
    transaction,
)
from mailsdk.protocol.commands import Auth, AuthResponse, Bdat, Command, EndOfData, Raw
from mailsdk.protocol.connection import ClientConnection
from mailsdk.protocol.events import NEED_DATA, CommandReplied, ConnectionClosed, GreetingReceived
from mailsdk.protocol.reply import Reply
from mailsdk.transport import (
    AsyncConnector,
    AsyncSocketConnector,
    AsyncTcpConnector,
    AsyncUnixConnector,
    Connector,
    SocketConnector,
    StreamInfo,
    TcpConnector,
    UnixConnector,
)

if typing.TYPE_CHECKING:
    from mailsdk.config import AuthSettings, ClientConfig, Timeouts
    from mailsdk.telemetry import CommandObserver, SessionObserver, TransactionObserver

__all__ = [
    "SAFE_TO_QUIT",
    "Pump",
    "SessionPlan",
    "TlsContextCache",
    "async_connector",
    "auth_request",
    "connector",
    "open_flow",
    "peer_of",
    "begin_send",
    "default_local_hostname",
    "finish_send",
    "local_fqdn",
    "plan_for",
    "report_opened",
    "send_flow",
    "session_observer",
    "tls_context",
    "wire_log",
]

#: The protocol log. DEBUG shows every command and reply; AUTH payloads are redacted.
wire_log = logging.getLogger("mailsdk.wire")

RECEIVE_SIZE: typing.Final = 65536


@functools.lru_cache(maxsize=1)
def local_fqdn() -> str:
    """``socket.getfqdn()``, once per process (a DNS lookup: the asyncio client runs the first
    call in a worker thread so that it never blocks the event loop)."""
    return socket.getfqdn()


def default_local_hostname(local_address: object) -> str:
    """The EHLO name: the FQDN when it has a dot, else an address literal (RFC 5321 §4.1.3)."""
    fqdn = local_fqdn()
    if "." in fqdn and not fqdn.startswith("localhost"):
        return fqdn
    if isinstance(local_address, tuple) and local_address:
        ip = str(local_address[0])
        return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
    return "localhost.localdomain"


def tls_info_of(
    version: str | None, cipher: str | None, binding: tuple[str, bytes] | None
) -> TlsInfo:
    """Build the :class:`TlsInfo` a driver reports after a handshake."""
    return TlsInfo(version=version, cipher=cipher, channel_binding=binding)


def _label(command: Command) -> str:
    """The command's verb for a message, or its redacted form for a raw line that is no
    command (a SASL response sent with ``execute()``: its first word would be the secret)."""
    if isinstance(command, Raw):
        return command.redacted().decode("utf-8", "replace").split(None, 1)[0]
    return command.verb


@attrs.define
class _Open:
    command: Command
    observer: CommandObserver
    last: Reply | None = None


class Pump:
    """Pairs bytes read with the commands written, for one session.

    A driver calls one of :meth:`submit`, :meth:`body`, :meth:`bdat` (which return the bytes to
    write), writes them, then alternates :meth:`poll` and :meth:`feed` until ``poll`` returns
    the reply events. :meth:`remaining` gives the time left on the current reply deadline, which
    starts when the driver first waits for a reply, i.e. once the bytes are written (the write
    has its own deadline, scaled by size: a slow but allowed body transfer must not use up the
    end-of-data reply's time); each completed reply restarts it (deadlines are per command and
    total, never per recv).
    """

    def __init__(
        self,
        connection: ClientConnection,
        observer: SessionObserver,
        timeouts: Timeouts,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connection = connection
        self.observer = observer
        self.timeouts = timeouts
        self._clock = clock
        self._open: list[_Open] = []
        self._events: list[CommandReplied] = []
        self._phase = Phase.COMMAND
        self._deadline: float | None = None
        self._waiting = False
        self._in_auth = False
        #: The server answered 421: it is closing the channel (RFC 5321 §3.8).
        self.server_closing = False

    # -- starting an exchange -------------------------------------------------------------------

    def _start(self, phase: Phase) -> None:
        self._events = []
        self._phase = phase
        self._deadline = None
        self._waiting = False  # the deadline starts at the first wait, after the write

    def _restart_deadline(self) -> None:
        limit = self.timeouts.for_phase(self._phase)
        self._deadline = None if limit is None else self._clock() + limit
        self._waiting = True

    def _track(self, commands: Sequence[Command], group: int) -> None:
        for command in commands:
            self._in_auth = isinstance(command, Auth | AuthResponse)
            if wire_log.isEnabledFor(logging.DEBUG):
                wire_log.debug(
                    "C: %s", command.redacted().decode("utf-8", "replace").rstrip("\r\n")
                )
            verb = "DATA.END" if isinstance(command, EndOfData) else command.verb
            self._open.append(_Open(command, self.observer.command(verb, pipeline_size=group)))

    def use_capabilities(self, capabilities: Capabilities) -> None:
        """Apply what an EHLO reply negotiated to the connection (ENHANCEDSTATUSCODES)."""
        self.connection.enhanced_status_codes = capabilities.enhanced_status_codes

    def greeting(self) -> None:
        """Prepare to read the greeting."""
        self._start(Phase.GREETING)

    def submit(self, commands: Sequence[Command], phase: Phase) -> bytes:
        """Serialise ``commands`` (one write) and start tracking their replies."""
        data = b"".join(self.connection.send(c) for c in commands)
        self._start(phase)
        self._track(commands, len(commands))
        return data

    def body(self, body: bytes, then: Sequence[Command]) -> bytes:
        """Encode the message content, the terminator and any commands pipelined behind it."""
        data = self.connection.send_body(body) + self.connection.end_body()
        if wire_log.isEnabledFor(logging.DEBUG):
            wire_log.debug("C: <message content, %d bytes> .", len(body))
        self._start(Phase.DATA)
        self._open.append(
            _Open(EndOfData(), self.observer.command("DATA.END", pipeline_size=1 + len(then)))
        )
        data += b"".join(self.connection.send(c) for c in then)
        self._track(then, 1 + len(then))
        return data

    def bdat(self, chunk: bytes, last: bool) -> bytes:
        """Frame one BDAT chunk (header and payload) and start tracking its reply."""
        data = self.connection.send_bdat(chunk, last=last)
        if wire_log.isEnabledFor(logging.DEBUG):
            wire_log.debug("C: BDAT %d%s <chunk>", len(chunk), " LAST" if last else "")
        self._start(Phase.DATA if last else Phase.COMMAND)
        self._open.append(_Open(Bdat(len(chunk), last), self.observer.command("BDAT")))
        return data

    # -- reading --------------------------------------------------------------------------------

    def write_timeout(self, size: int) -> float | None:
        """Deadline for writing ``size`` bytes."""
        return self.timeouts.for_write(size)

    def remaining(self) -> float | None:
        """Seconds left before the current reply deadline.

        Raises:
            ReadTimeout: the deadline has passed.
        """
        if not self._waiting:
            self._restart_deadline()
        if self._deadline is None:
            return None
        left = self._deadline - self._clock()
        if left <= 0:
            raise ReadTimeout(
                f"no complete reply within the {self._phase.value} deadline",
                phase=self._phase.value,
            )
        return left

    def feed(self, data: bytes) -> None:
        """Give the connection bytes read from the stream (``b""`` for EOF)."""
        self.connection.receive_data(data)

    def poll_greeting(self) -> GreetingReceived | None:
        """The greeting once complete, else ``None`` (read more)."""
        event = self.connection.next_event()
        if event is NEED_DATA:
            return None
        if isinstance(event, GreetingReceived):
            self._log_reply(event.reply)
            return event
        if isinstance(event, ConnectionClosed):
            raise ConnectionLost("the server closed the connection before its greeting")
        raise RemoteProtocolError(f"unexpected {type(event).__name__} before the greeting")

    def poll(self) -> tuple[CommandReplied, ...] | None:
        """All reply events once every outstanding command is answered, else ``None``."""
        while True:
            if self.connection.pending == 0 and self._events:
                self._close_all()
                return tuple(self._events)
            event = self.connection.next_event()
            if event is NEED_DATA:
                return None
            if isinstance(event, CommandReplied):
                self._on_reply(event)
                continue
            if isinstance(event, ConnectionClosed):
                waiting = ", ".join(_label(o.command) for o in self._open) or "a reply"
                closing = next((e for e in self._events if e.reply.code == 421), None)
                if closing is not None:
                    # RFC 5321 §3.8: a 421 says the server is closing; in a pipelined group
                    # the later commands get no reply. The 421 is the news, not the EOF.
                    error = CommandRefused(
                        closing.reply,
                        _label(closing.command),
                        f"the server is closing the connection ({closing.reply}); "
                        f"no reply came for {waiting}",
                    )
                    self.fail(error)
                    raise error
                raise ConnectionLost(
                    f"the server closed the connection while waiting for {waiting}"
                )
            raise RemoteProtocolError(f"unexpected {type(event).__name__}")

    def _on_reply(self, event: CommandReplied) -> None:
        self._log_reply(event.reply)
        self._events.append(event)
        self._restart_deadline()
        if event.recipient is None:
            # An LMTP end-of-data answered per recipient is complete once a reply for a later
            # command (pipelined behind the body) arrives.
            while self._open and (last := self._open[0].last) is not None:
                self._open.pop(0).observer.replied(last)
        if not self._open:
            raise LocalProtocolError("a reply arrived for no tracked command")
        head = self._open[0]
        if event.recipient is not None:
            head.observer.recipient_replied(event.recipient, event.reply)
            head.last = event.reply
            return
        self._open.pop(0)
        head.observer.replied(event.reply)

    def _close_all(self) -> None:
        while self._open:
            head = self._open.pop(0)
            if head.last is not None:
                head.observer.replied(head.last)
            else:  # pragma: no cover - defensive: the connection reported nothing pending
                head.observer.failed(LocalProtocolError("no reply"))

    def _log_reply(self, reply: Reply) -> None:
        if reply.code == 421:
            self.server_closing = True
        if not wire_log.isEnabledFor(logging.DEBUG):
            return
        if self._in_auth and reply.code == 334:
            wire_log.debug("S: 334 <challenge redacted>")
            return
        for i, line in enumerate(reply.lines or (b"",)):
            sep = " " if i == len(reply.lines) - 1 or not reply.lines else "-"
            wire_log.debug("S: %d%s%s", reply.code, sep, _printable(line))

    def fail(self, error: BaseException) -> None:
        """Mark every open command as failed (the exchange broke) and the connection as broken."""
        while self._open:
            self._open.pop(0).observer.failed(error)
        if isinstance(error, MailError) and not isinstance(error, LocalProtocolError):
            self.connection.send_failed()


# -- session set-up and send bookkeeping (shared by both facades) ---------------------------------


def session_observer(config: ClientConfig) -> SessionObserver:
    """Start the telemetry session for ``config``'s endpoint."""
    ep = config.endpoint
    return config.instrumentation.session(
        server_address=ep.host if ep.host is not None else ep.path,
        server_port=config.port if ep.transport == "tcp" and ep.sock is None else None,
        transport=ep.transport,
        protocol=config.dialect.value.lower(),
    )


def tls_context(config: ClientConfig) -> ssl.SSLContext | None:
    """The SSL context for implicit TLS or STARTTLS, or ``None`` when TLS is off."""
    if config.tls_mode is TlsMode.NONE:
        return None
    return config.tls.create_context()


def _printable(line: bytes) -> str:
    """Reply text for the log: a server must not be able to forge log lines with CR, LF or
    other controls, so they are shown escaped (``\\r``)."""
    text = line.decode("utf-8", "replace")
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class TlsContextCache:
    """Builds a client's SSL context once (loading CA stores is costly) and shares it.

    ``ssl.SSLContext`` is safe to share between threads and connections once configured.
    """

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._context: ssl.SSLContext | None = None
        self._built = False

    def get(self) -> ssl.SSLContext | None:
        """The context for the config's TLS mode, or ``None`` when TLS is off."""
        if not self._built:
            self._context = tls_context(self._config)
            self._built = True
        return self._context


def auth_request(settings: AuthSettings) -> AuthRequest:
    """Translate configured credentials into what the AUTH flow needs."""
    return AuthRequest(
        username=settings.username,
        password=settings.password,
        use_token=settings.token_provider is not None,
        authzid=settings.authzid,
        mechanisms=settings.mechanisms,
        allow_plaintext=settings.allow_plaintext,
    )


def plan_for(config: ClientConfig, local_address: object) -> SessionPlan:
    """Translate the config into the opening flow's plan."""
    auth = auth_request(config.auth) if config.auth is not None else None
    return SessionPlan(
        local_hostname=config.local_hostname or default_local_hostname(local_address),
        host=config.verify_name or config.endpoint.describe(),
        port=config.port,
        dialect=config.dialect,
        tls_mode=config.tls_mode,
        auth=auth,
        esmtp_registry=config.esmtp_registry,
        sasl_registry=config.sasl_registry,
    )


def report_opened(pump: Pump, opened: OpenedSession, implicit: bool) -> None:
    """Apply what the opening flow negotiated to the connection, and tell telemetry."""
    observer = pump.observer
    pump.use_capabilities(opened.capabilities)
    if opened.tls is not None:
        observer.tls_established(
            version=opened.tls.version, cipher=opened.tls.cipher, implicit=implicit
        )
    observer.capabilities(opened.capabilities.keywords)
    if opened.mechanism is not None:
        observer.authenticated(opened.mechanism)


def _with_trace_headers(message: MessageLike, headers: Mapping[str, str]) -> MessageLike:
    if not headers:
        return message
    if isinstance(message, email.message.Message):
        message = copy.copy(message)
        for name, value in headers.items():
            del message[name]
            message[name] = value
        return message
    raw = message.encode("utf-8") if isinstance(message, str) else message
    prefix = b"".join(f"{k}: {v}\r\n".encode("ascii") for k, v in headers.items())
    return prefix + raw


def begin_send(
    observer: SessionObserver,
    message: MessageLike,
    sender: str | None,
    recipients: Sequence[str] | str | None,
    dkim: Sequence[DkimSigner] = (),
) -> tuple[PreparedMessage, TransactionObserver]:
    """Prepare a message (envelope, flattening, trace headers, then DKIM) and open the
    ``smtp.send`` span.

    Raises:
        InvalidInputError: no envelope could be derived, or a raw message without envelope.
    """
    if isinstance(recipients, str):
        recipients = [recipients]
    if isinstance(message, email.message.Message):
        prepared = prepare_message(message, sender=sender, recipients=recipients)
    else:
        if sender is None or recipients is None:
            raise InvalidInputError("a raw message needs an explicit sender and recipients")
        prepared = prepare_raw(sender, recipients, message)
    tx = observer.transaction(
        sender=prepared.envelope.sender, recipients=prepared.envelope.recipients, size=prepared.size
    )
    headers = tx.trace_headers()
    if headers:
        traced = _with_trace_headers(message, headers)
        if isinstance(traced, email.message.Message):
            prepared = prepare_message(
                traced, sender=prepared.envelope.sender, recipients=prepared.envelope.recipients
            )
        else:
            prepared = prepare_raw(prepared.envelope.sender, prepared.envelope.recipients, traced)
    if dkim:
        try:
            prepared = sign_prepared(prepared, dkim)
        except BaseException as exc:
            tx.failed(exc)
            raise
    return prepared, tx


def send_flow(
    config: ClientConfig,
    capabilities: Capabilities,
    prepared: PreparedMessage,
    mail_options: MailOptions | None,
    rcpt_options: RcptOptions | None,
) -> Generator[Action, object, SendResult]:
    """The transaction flow for ``prepared`` with the config's defaults."""
    return transaction(
        prepared,
        capabilities,
        mail_options=mail_options or config.mail_options,
        rcpt_options=rcpt_options or config.rcpt_options,
        dialect=config.dialect,
        options=config.transaction,
    )


def finish_send(tx: TransactionObserver, result: SendResult) -> SendResult:
    """Close the ``smtp.send`` span with the outcome.

    In LMTP there is no single final reply (RFC 2033 §4.2): ``result.reply`` is only the last
    recipient's, so ``None`` is passed and the per-recipient outcomes decide (a refused last
    recipient must not turn a partial delivery into a refused message).
    """
    tx.finished(
        accepted=result.accepted,
        refused=result.refused,
        size=result.size,
        reply=None if result.lmtp else result.reply,
    )
    return result


def connector(config: ClientConfig, context: ssl.SSLContext | None) -> Connector:
    """The blocking connector for ``config`` (implicit TLS wraps at connect)."""
    ep = config.endpoint
    implicit = context if config.tls_mode is TlsMode.IMPLICIT else None
    if ep.sock is not None:
        return SocketConnector(ep.sock, tls_context=implicit, server_hostname=config.verify_name)
    if ep.path is not None:
        return UnixConnector(ep.path, tls_context=implicit, server_hostname=config.verify_name)
    assert ep.host is not None
    return TcpConnector(
        ep.host,
        config.port,
        source_address=ep.source_address,
        tls_context=implicit,
        server_hostname=config.verify_name,
    )


def async_connector(config: ClientConfig, context: ssl.SSLContext | None) -> AsyncConnector:
    """The asyncio connector for ``config``."""
    ep = config.endpoint
    implicit = context if config.tls_mode is TlsMode.IMPLICIT else None
    if ep.sock is not None:
        return AsyncSocketConnector(
            ep.sock, tls_context=implicit, server_hostname=config.verify_name
        )
    if ep.path is not None:
        return AsyncUnixConnector(ep.path, tls_context=implicit, server_hostname=config.verify_name)
    assert ep.host is not None
    return AsyncTcpConnector(
        ep.host,
        config.port,
        source_address=ep.source_address,
        tls_context=implicit,
        server_hostname=config.verify_name,
    )


#: Failures after which the connection is still in step and a polite QUIT makes sense.
SAFE_TO_QUIT: tuple[type[BaseException], ...] = (
    ReplyError,
    AuthError,
    CapabilityError,
    InvalidInputError,
)


def open_flow(
    config: ClientConfig, local_address: object, implicit: TlsInfo | None
) -> Generator[Action, object, OpenedSession]:
    """The opening flow for ``config`` (greeting, EHLO, STARTTLS policy, AUTH)."""
    return open_session(plan_for(config, local_address), implicit_tls=implicit)


def peer_of(info: StreamInfo) -> dict[str, typing.Any]:
    """``peer_address``/``peer_port`` keyword arguments for the telemetry ``connected`` hook."""
    peer = info.peer_address
    if isinstance(peer, tuple) and len(peer) >= 2:
        return {"peer_address": str(peer[0]), "peer_port": int(peer[1])}
    return {"peer_address": str(peer) if peer else None, "peer_port": None}
