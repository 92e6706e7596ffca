"""Send bookkeeping shared by both facades: preparing a message, its span, its flow.

Layer: L5 client (private, pure: no I/O). May import L0-L4.
"""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator, Generator, Iterator, Sequence

from mailsdk._types import MessageSource
from mailsdk.client._dkim import signing_step
from mailsdk.client._prepare import prepare
from mailsdk.errors import ConnectionLost, MailError
from mailsdk.esmtp import Capabilities, MailOptions, RcptOptions
from mailsdk.flows import (
    Action,
    Delivery,
    Outgoing,
    PreparedMessage,
    Pull,
    SendOutcome,
    SendResult,
    transaction,
)
from mailsdk.flows.envelope import RawMemo
from mailsdk.flows.judge import ParameterCache
from mailsdk.telemetry.base import NoopSessionObserver

if typing.TYPE_CHECKING:
    from mailsdk.config import ClientConfig
    from mailsdk.dkim import DkimSigner
    from mailsdk.telemetry import SessionObserver, TransactionObserver

__all__ = ["Feed", "begin_send", "finish_send", "send_flow"]


def begin_send(
    observer: SessionObserver,
    message: object,
    sender: str | None,
    recipients: Sequence[str] | str | None,
    dkim: Sequence[DkimSigner] = (),
    *,
    memo: RawMemo | None = None,
) -> tuple[PreparedMessage, TransactionObserver]:
    """Prepare a message (the pipeline of ``_prepare.py``; DKIM, when configured, is its step
    after the trace headers) and open its ``smtp.send`` span. ``memo``: a run's (``Feed``).

    Raises:
        InvalidInputError: see :func:`mailsdk.client._prepare.prepare`.
    """
    steps = (signing_step(dkim),) if dkim else ()
    return prepare(observer, message, sender, recipients, steps, memo=memo)


def send_flow(
    config: ClientConfig,
    capabilities: Capabilities,
    prepared: PreparedMessage,
    mail_options: MailOptions | None,
    rcpt_options: RcptOptions | None,
    *,
    tls_active: bool = False,
    cache: ParameterCache | None = None,
) -> Generator[Action, object, SendResult]:
    """The transaction flow for ``prepared`` with the config's defaults (``cache``: the
    session's envelope parameters, computed once per set of options)."""
    return transaction(
        prepared,
        capabilities,
        mail_options=mail_options or config.mail_options,
        rcpt_options=rcpt_options or config.rcpt_options,
        dialect=config.dialect,
        options=config.transaction,
        tls_active=tls_active,
        cache=cache,
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


_END: typing.Final = object()


class Feed:
    """What ``send_many`` hands to the ``deliver_many`` flow: its items, prepared one at a time
    when the flow pulls them (so a long or endless input is never held whole), each with its
    ``smtp.send`` span; and the closing of those spans as outcomes come back.

    Args:
        observer: the session's telemetry.
        config: the client configuration (default MAIL/RCPT options).
        items: an iterator or asynchronous iterator of messages or :class:`Outgoing` items.
    """

    def __init__(
        self,
        observer: SessionObserver,
        config: ClientConfig,
        items: Iterator[object] | AsyncIterator[object],
    ) -> None:
        self._observer = observer
        # Telemetry off: no span to open or end per message (decided once per run).
        self._silent = type(observer) is NoopSessionObserver
        self._config = config
        self._items = items
        self._index = 0
        self._open: dict[int, TransactionObserver] = {}
        self._memo = RawMemo()  # one message for many envelopes: its content prepared once
        #: What the caller's iterator raised: the input ends there, the messages already in
        #: flight still get their outcomes, then ``send_many`` raises it (``reraise``).
        self.failure: Exception | None = None

    @property
    def asynchronous(self) -> bool:
        """The items come from an asynchronous iterator."""
        return isinstance(self._items, AsyncIterator)

    def pull(self, action: Pull) -> Delivery | None:
        """Perform a ``Pull`` from a synchronous iterator."""
        if self.failure is not None:
            return None
        try:
            items: Iterator[object] = self._items  # type: ignore[assignment]  # pull: sync only
            item = next(items, _END)
        except Exception as exc:  # the caller's iterator broke: see ``failure``
            self.failure = exc
            return None
        return None if item is _END else self.delivery(item, prepare=action.prepare)

    async def apull(self, action: Pull) -> Delivery | None:
        """Perform a ``Pull`` from either kind of iterator."""
        if self.failure is not None:
            return None
        try:
            if isinstance(self._items, AsyncIterator):
                item = await anext(self._items, _END)
            else:
                item = next(self._items, _END)
        except Exception as exc:  # the caller's iterator broke: see ``failure``
            self.failure = exc
            return None
        return None if item is _END else self.delivery(item, prepare=action.prepare)

    def reraise(self) -> None:
        """Raise what the caller's iterator raised, once every pulled item has its outcome.

        Raising it from inside the run would abandon the messages in flight: one whose
        end-of-data was already written would get no outcome, and its caller, seeing only
        the exception, would send it again.
        """
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure

    def delivery(self, item: object, *, prepare: bool) -> Delivery:
        """Prepare one item (envelope, trace headers, DKIM, encoding) and open its span."""
        index = self._index
        self._index += 1
        outgoing = item if isinstance(item, Outgoing) else None
        key = outgoing.key if outgoing is not None else None
        if not prepare:
            return Delivery(index=index, key=key)
        try:
            if outgoing is None:
                outgoing = Outgoing(typing.cast("MessageSource", item))
            prepared, tx = begin_send(
                self._observer,
                outgoing.message,
                outgoing.sender,
                outgoing.recipients,
                self._config.dkim,
                memo=self._memo,
            )
        except MailError as exc:
            return Delivery(index=index, key=key, error=exc)
        if not self._silent:
            self._open[index] = tx
        return Delivery(
            index=index,
            key=key,
            prepared=prepared,
            mail_options=outgoing.mail_options or self._config.mail_options,
            rcpt_options=outgoing.rcpt_options or self._config.rcpt_options,
            owner=tx,
        )

    def settle(self, value: object) -> SendOutcome:
        """Close the span of the message ``value`` (a reported outcome) is about."""
        outcome: SendOutcome = value  # type: ignore[assignment]
        if self._silent:
            return outcome
        tx = self._open.pop(outcome.index, None)
        if tx is not None:
            if outcome.result is not None and outcome.status.delivered:
                finish_send(tx, outcome.result)
            else:
                tx.failed(outcome.error or MailError(outcome.status.value))
        return outcome

    def close(self) -> None:
        """End the spans of messages whose outcome was never reported (abandoned iterator)."""
        for tx in self._open.values():
            tx.failed(ConnectionLost("send_many was stopped before this message's outcome"))
        self._open.clear()
