"""The instrumentation seam the drivers call, and its no-op implementation.

Layer: L3 (telemetry). May import ``mailsdk.protocol.reply`` (read-only models) and L0; must never
import ``mailsdk.transport``, ``flows``, ``auth``, ``client``, ``opentelemetry`` or ``msal``.

The protocol core and the flows never observe anything: only the drivers call these objects, in
this order (see docs/telemetry.md for the full calling contract)::

    obs = instrumentation.session(server_address=..., server_port=..., transport=..., protocol=...)
    obs.connected(...); obs.tls_established(...); obs.capabilities(...); obs.authenticated(...)
    cmd = obs.command("EHLO")        # when the command's bytes are flushed
    cmd.replied(reply)               # on the paired CommandReplied (or cmd.failed(error))
    txn = obs.transaction(sender=..., recipients=..., size=...)
    ... commands of the transaction (children of its span) ...
    txn.finished(accepted=..., refused=..., size=..., reply=...)   # or txn.failed(error)
    obs.end()                        # or obs.end(error)

The no-op implementation returns shared singleton observers, so an uninstrumented client pays a
method call per hook and allocates nothing.
"""

from __future__ import annotations

import types
import typing

if typing.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from mailsdk.protocol.reply import Reply

__all__ = [
    "CommandObserver",
    "Instrumentation",
    "NoopCommandObserver",
    "NoopInstrumentation",
    "NoopSessionObserver",
    "NoopTransactionObserver",
    "SessionObserver",
    "TransactionObserver",
]

#: The shared, immutable "no trace headers" mapping.
_NO_HEADERS: typing.Final[Mapping[str, str]] = types.MappingProxyType({})


class CommandObserver(typing.Protocol):
    """Observes one command from the flush of its bytes to its paired reply."""

    def replied(self, reply: Reply) -> None:
        """Record the reply (code and enhanced status only) and end the command's span.

        A 4xx/5xx reply marks the span as an error. Calls after the first end are ignored.

        Args:
            reply: the reply paired with this command by the connection.
        """
        ...

    def recipient_replied(self, recipient: str, reply: Reply) -> None:
        """Record one LMTP per-recipient reply after end-of-data (RFC 2033 §4.2).

        Does not end the span: call :meth:`replied` after the last one.

        Args:
            recipient: the accepted recipient the reply is for (recorded only when addresses
                are opted in; otherwise its index in the transaction).
            reply: that recipient's reply.
        """
        ...

    def failed(self, error: BaseException) -> None:
        """End the span with status ERROR: no reply will come (timeout, connection lost...).

        Args:
            error: the exception that ended the command.
        """
        ...


class TransactionObserver(typing.Protocol):
    """Observes one mail transaction: MAIL FROM to the final end-of-data reply."""

    def trace_headers(self) -> Mapping[str, str]:
        """Return the W3C ``traceparent``/``tracestate`` of the send span, or ``{}``.

        Headers are returned only when propagation is enabled and the span context is valid.
        The driver may add them to the message before sending it.
        """
        ...

    def finished(
        self,
        *,
        accepted: Sequence[str],
        refused: Mapping[str, Reply],
        size: int,
        reply: Reply | None,
    ) -> None:
        """Record the outcome and end the send span.

        Args:
            accepted: recipients the server accepted responsibility for.
            refused: each refused recipient and its reply (RCPT or LMTP per-recipient).
            size: bytes of message content sent.
            reply: the final end-of-data reply (``None`` when there was none, e.g. LMTP).
        """
        ...

    def failed(self, error: BaseException) -> None:
        """End the send span with status ERROR.

        Args:
            error: the exception that ended the transaction (a ``ReplyError`` counts as refused,
                anything else as failed).
        """
        ...


class SessionObserver(typing.Protocol):
    """Observes one connection from connect to close; parent of every other span."""

    def connected(self, *, peer_address: str | None, peer_port: int | None) -> None:
        """Record the peer the transport connected to."""
        ...

    def tls_established(self, *, version: str | None, cipher: str | None, implicit: bool) -> None:
        """Record the negotiated TLS version and cipher (implicit TLS or after STARTTLS)."""
        ...

    def capabilities(self, keywords: Sequence[str]) -> None:
        """Record the negotiated ESMTP keywords (the latest call wins, e.g. after STARTTLS)."""
        ...

    def authenticated(self, mechanism: str) -> None:
        """Record the SASL mechanism that succeeded (never anything about the credentials)."""
        ...

    def command(
        self,
        verb: str,
        *,
        pipeline_size: int = 1,
        transaction: TransactionObserver | None = None,
    ) -> CommandObserver:
        """Start the ``SMTP {verb}`` span now; return the observer to end it.

        The span is a child of ``transaction`` if given, else of the most recently started
        transaction that is still open, else of the session span.

        Args:
            verb: the command verb; ``"DATA.END"`` for the end-of-data reply and
                ``"AUTH.RESPONSE"`` for AUTH continuation lines.
            pipeline_size: the number of commands written in the same PIPELINING group.
            transaction: the transaction the command belongs to, when it is not the most
                recent open one (cross-transaction pipelining).

        Returns:
            The observer of this command.
        """
        ...

    def transaction(
        self, *, sender: str, recipients: Sequence[str], size: int | None
    ) -> TransactionObserver:
        """Start the ``smtp.send`` span; commands started while it is open are its children.

        Args:
            sender: the reverse-path (recorded only when addresses are opted in).
            recipients: the forward-paths, in RCPT order.
            size: the message size when known in advance.

        Returns:
            The observer of this transaction.
        """
        ...

    def end(self, error: BaseException | None = None) -> None:
        """End the ``smtp.session`` span (and any command or transaction still open).

        Args:
            error: the exception that ended the session, ``None`` for a clean close.
        """
        ...


class Instrumentation(typing.Protocol):
    """What a client is given to observe its sessions (no-op or OpenTelemetry)."""

    def session(
        self,
        *,
        server_address: str | None,
        server_port: int | None,
        transport: str,
        protocol: str,
    ) -> SessionObserver:
        """Start the ``smtp.session`` span as a child of the caller's current span.

        Args:
            server_address: the host name or unix socket path connected to.
            server_port: the TCP port (``None`` for unix sockets).
            transport: ``"tcp"`` or ``"unix"``.
            protocol: ``"smtp"`` or ``"lmtp"``.

        Returns:
            The observer of the session.
        """
        ...


# --- no-op implementation --------------------------------------------------------------------


class NoopCommandObserver:
    """A command observer that records nothing (a shared singleton)."""

    __slots__ = ()

    def replied(self, reply: Reply) -> None:
        """Do nothing."""

    def recipient_replied(self, recipient: str, reply: Reply) -> None:
        """Do nothing."""

    def failed(self, error: BaseException) -> None:
        """Do nothing."""


class NoopTransactionObserver:
    """A transaction observer that records nothing (a shared singleton)."""

    __slots__ = ()

    def trace_headers(self) -> Mapping[str, str]:
        """Return the shared empty mapping."""
        return _NO_HEADERS

    def finished(
        self,
        *,
        accepted: Sequence[str],
        refused: Mapping[str, Reply],
        size: int,
        reply: Reply | None,
    ) -> None:
        """Do nothing."""

    def failed(self, error: BaseException) -> None:
        """Do nothing."""


_NOOP_COMMAND: typing.Final = NoopCommandObserver()
_NOOP_TRANSACTION: typing.Final = NoopTransactionObserver()


class NoopSessionObserver:
    """A session observer that records nothing and hands out singleton child observers."""

    __slots__ = ()

    def connected(self, *, peer_address: str | None, peer_port: int | None) -> None:
        """Do nothing."""

    def tls_established(self, *, version: str | None, cipher: str | None, implicit: bool) -> None:
        """Do nothing."""

    def capabilities(self, keywords: Sequence[str]) -> None:
        """Do nothing."""

    def authenticated(self, mechanism: str) -> None:
        """Do nothing."""

    def command(
        self,
        verb: str,
        *,
        pipeline_size: int = 1,
        transaction: TransactionObserver | None = None,
    ) -> NoopCommandObserver:
        """Return the shared no-op command observer."""
        return _NOOP_COMMAND

    def transaction(
        self, *, sender: str, recipients: Sequence[str], size: int | None
    ) -> NoopTransactionObserver:
        """Return the shared no-op transaction observer."""
        return _NOOP_TRANSACTION

    def end(self, error: BaseException | None = None) -> None:
        """Do nothing."""


_NOOP_SESSION: typing.Final = NoopSessionObserver()


class NoopInstrumentation:
    """The default instrumentation: observes nothing and allocates nothing per call."""

    __slots__ = ()

    def session(
        self,
        *,
        server_address: str | None,
        server_port: int | None,
        transport: str,
        protocol: str,
    ) -> NoopSessionObserver:
        """Return the shared no-op session observer."""
        return _NOOP_SESSION

    def __repr__(self) -> str:
        return "NoopInstrumentation()"


if typing.TYPE_CHECKING:  # static proof that the no-op classes satisfy the protocols
    _NOOP_CONFORMS: Instrumentation = NoopInstrumentation()
