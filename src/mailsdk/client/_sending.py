"""Send bookkeeping shared by both facades: preparing a message, its span, its flow.

Layer: L5 client (private, pure: no I/O). May import L0-L4.
"""

from __future__ import annotations

import copy
import email.message
import typing
from collections.abc import Generator, Mapping, Sequence

from mailsdk._types import MessageLike
from mailsdk.errors import InvalidInputError
from mailsdk.esmtp import Capabilities, MailOptions, RcptOptions
from mailsdk.flows import (
    Action,
    PreparedMessage,
    SendResult,
    prepare_message,
    prepare_raw,
    transaction,
)

if typing.TYPE_CHECKING:
    from mailsdk.config import ClientConfig
    from mailsdk.telemetry import SessionObserver, TransactionObserver

__all__ = ["begin_send", "finish_send", "send_flow"]


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
) -> tuple[PreparedMessage, TransactionObserver]:
    """Prepare a message (envelope, flattening, trace headers) and open the ``smtp.send`` span.

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
