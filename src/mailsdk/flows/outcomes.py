"""What a multi-message send reports: one :class:`SendOutcome` per item, and the item itself.

Layer: L3 flows (sans-IO, pure values). May import ``mailsdk.protocol``, ``mailsdk.esmtp`` and L0.

An outcome is data, not an exception, so a run of many messages can report each one and carry
on. :class:`DeliveryStatus` is the single vocabulary used by ``send_many``, the pool, the batch
engine, reports and the integrations:

* ``ACCEPTED``: the server confirmed the message for every recipient.
* ``PARTIAL``: confirmed for some recipients; the others were refused (see ``result.refused``).
* ``REFUSED``: the server refused the message (sender, every recipient, DATA or the final reply).
* ``FAILED``: the message was not delivered and was never handed over: nothing after the
  envelope reached the server's end-of-data, so sending it again cannot duplicate it.
* ``UNKNOWN``: the end-of-data (or ``BDAT LAST``) was written and its reply never arrived. The
  server may have queued it; mailsdk never resends such a message on its own.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs

from mailsdk._types import MessageSource
from mailsdk.errors import MailError
from mailsdk.esmtp import MailOptions, RcptOptions
from mailsdk.flows.results import SendResult

__all__ = ["DeliveryStatus", "Outgoing", "SendOutcome"]


class DeliveryStatus(enum.Enum):
    """The final state of one message of a multi-message send (see the module docstring)."""

    ACCEPTED = "accepted"
    PARTIAL = "partial"
    REFUSED = "refused"
    FAILED = "failed"
    UNKNOWN = "unknown"

    # Members are singletons compared by identity: hash them by identity too, in C. (Enum's own
    # __hash__ hashes the name in Python, and a batch counts every outcome by its status.)
    __hash__ = object.__hash__

    @property
    def delivered(self) -> bool:
        """True when the server confirmed the message for at least one recipient."""
        return self in (DeliveryStatus.ACCEPTED, DeliveryStatus.PARTIAL)


def _opt_tuple(value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen(kw_only=True)
class Outgoing:
    """One message with its own envelope, as an item of ``send_many`` or a batch.

    Attributes:
        message: any message form a send accepts (see :data:`mailsdk._types.MessageSource`).
        sender: the reverse-path; ``None`` derives it from the message headers.
        recipients: the forward-paths; ``None`` derives them from To/Cc/Bcc.
        mail_options: ESMTP MAIL parameters for this message.
        rcpt_options: ESMTP RCPT parameters, applied to every recipient.
        key: the caller's idempotency key, echoed on the outcome (the batch engine, reports and
            the delivery ledger key messages by it).
    """

    message: MessageSource = attrs.field(kw_only=False)
    sender: str | None = None
    recipients: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_tuple)
    mail_options: MailOptions | None = None
    rcpt_options: RcptOptions | None = None
    key: str | None = None


@attrs.frozen(kw_only=True)
class SendOutcome:
    """The final outcome of one item of a multi-message send.

    Attributes:
        index: the item's position in the input (0-based).
        status: the :class:`DeliveryStatus`.
        result: the transaction's :class:`SendResult` when the server gave a final answer for
            the message (ACCEPTED, PARTIAL and, for refusals after DATA, REFUSED).
        error: the error that ended the message (REFUSED, FAILED, UNKNOWN); ``None`` otherwise.
        key: the item's ``Outgoing.key``, if it had one.
        attempts: how many times the message was tried (the batch engine retries); 0 for a
            message that was never started.
        never_started: the message was never started: it sat behind a broken connection or a
            421, or the batch stopped before sending it. Only a FAILED outcome has it; such a
            message was not tried, so sending it elsewhere is no new try and cannot duplicate it.
    """

    index: int
    status: DeliveryStatus
    result: SendResult | None = None
    error: MailError | None = None
    key: str | None = None
    attempts: int = 1
    never_started: bool = False

    @property
    def ok(self) -> bool:
        """True when every recipient was accepted."""
        return self.status is DeliveryStatus.ACCEPTED
