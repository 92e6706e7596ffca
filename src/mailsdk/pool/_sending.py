"""Send a run of items on one checked-out session and report one outcome per item.

Layer: L5c (pool). Each connection sends through ``send_many`` (pipelined across messages: one
round trip per message with PIPELINING), which reports every item it was given: ACCEPTED,
PARTIAL, REFUSED, FAILED (never handed over) or UNKNOWN (end of data sent, no reply).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

from mailsdk.client import AsyncSession, Session
from mailsdk.errors import ConnectionLost, DeliveryUnknown, MailError, ReplyError
from mailsdk.flows import DeliveryStatus, Outgoing, SendOutcome

__all__ = ["never_sent", "outcome_of_error", "send_items", "send_items_async"]


def outcome_of_error(index: int, error: MailError, *, unknown: bool = False) -> SendOutcome:
    """REFUSED for a server refusal, UNKNOWN when the end of data may have been sent (or the
    error says so), FAILED otherwise."""
    if unknown or isinstance(error, DeliveryUnknown):
        if not isinstance(error, DeliveryUnknown):
            error = DeliveryUnknown(f"the end of data may have been sent, no reply came: {error}")
        return SendOutcome(index=index, status=DeliveryStatus.UNKNOWN, error=error)
    if isinstance(error, ReplyError):
        return SendOutcome(index=index, status=DeliveryStatus.REFUSED, error=error)
    return SendOutcome(index=index, status=DeliveryStatus.FAILED, error=error)


def never_sent(outcome: SendOutcome) -> bool:
    """True for a FAILED outcome of an item the session never started (a connection broken or
    closing by 421 before it): sending it elsewhere is no new try.

    ``send_many`` reports such items with a plain :class:`ConnectionLost` whose message starts
    with ``"not sent:"``.
    """
    error = outcome.error
    return (
        outcome.status is DeliveryStatus.FAILED
        and type(error) is ConnectionLost
        and str(error).startswith("not sent:")
    )


def send_items(session: Session, items: Sequence[Outgoing]) -> Iterator[SendOutcome]:
    """Send ``items`` on ``session``; yield one outcome per item (indexes into ``items``)."""
    return session.send_many(items)


def send_items_async(
    session: AsyncSession, items: Sequence[Outgoing]
) -> AsyncIterator[SendOutcome]:
    """The asyncio form of :func:`send_items`."""
    return session.send_many(items)
