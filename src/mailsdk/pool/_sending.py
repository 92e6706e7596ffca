"""Send a run of items on one checked-out session and report one outcome per item.

Layer: L5c (pool). The sessions' ``send_many`` (pipelined across messages) is used when it is
there; until then a private fallback sends the items one ``send_message`` at a time and decides
UNKNOWN the conservative way: after any failure that is not a server reply (a lost connection, a
timeout, a malformed reply), a message whose end-of-data had been queued for writing is UNKNOWN
(it may have reached the server); anything earlier is FAILED.
"""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator, Iterator, Sequence

from mailsdk.client import AsyncSession, Session
from mailsdk.errors import (
    ConnectionLost,
    DeliveryUnknown,
    InvalidInputError,
    MailError,
    ReplyError,
)
from mailsdk.flows import DeliveryStatus, Outgoing, SendOutcome, SendResult
from mailsdk.protocol.state import Trigger

__all__ = [
    "never_sent",
    "outcome_of_error",
    "outcome_of_result",
    "send_items",
    "send_items_async",
]

_FINAL_TRIGGERS: typing.Final = (Trigger.END_OF_DATA, Trigger.BDAT_LAST)


def outcome_of_result(index: int, result: SendResult) -> SendOutcome:
    """ACCEPTED or PARTIAL for a transaction the server answered."""
    status = DeliveryStatus.ACCEPTED if result.ok else DeliveryStatus.PARTIAL
    return SendOutcome(index=index, status=status, result=result)


def outcome_of_error(index: int, error: MailError, *, unknown: bool = False) -> SendOutcome:
    """REFUSED for a server refusal, UNKNOWN after end-of-data, FAILED otherwise."""
    if unknown or isinstance(error, DeliveryUnknown):
        if not isinstance(error, DeliveryUnknown):
            error = DeliveryUnknown(f"the end of data was sent, its reply never came: {error}")
        return SendOutcome(index=index, status=DeliveryStatus.UNKNOWN, error=error)
    if isinstance(error, ReplyError):
        return SendOutcome(index=index, status=DeliveryStatus.REFUSED, error=error)
    return SendOutcome(index=index, status=DeliveryStatus.FAILED, error=error)


def never_sent(outcome: SendOutcome) -> bool:
    """True for a FAILED outcome of an item the session never started (a connection broken or
    closing by 421 before it): sending it elsewhere is no new try.

    ``send_many`` reports such items with a plain :class:`ConnectionLost` whose message starts
    with ``"not sent:"``; the fallback below does the same.
    """
    error = outcome.error
    return (
        outcome.status is DeliveryStatus.FAILED
        and type(error) is ConnectionLost
        and str(error).startswith("not sent:")
    )


def _end_of_data_pending(session: Session | AsyncSession) -> bool:
    """True when the session's connection still awaits an end-of-data (or BDAT LAST) reply."""
    connection = session._driver.pump.connection  # private: the fallback until send_many
    return any(p.trigger in _FINAL_TRIGGERS for p in connection._queue)


def _kwargs(item: Outgoing) -> dict[str, typing.Any]:
    return {
        "sender": item.sender,
        "recipients": item.recipients,
        "mail_options": item.mail_options,
        "rcpt_options": item.rcpt_options,
    }


def _failed(index: int, exc: Exception) -> SendOutcome:
    error = InvalidInputError(f"the item could not be sent: {type(exc).__name__}: {exc}")
    return SendOutcome(index=index, status=DeliveryStatus.FAILED, error=error)


def send_items(session: Session, items: Sequence[Outgoing]) -> Iterator[SendOutcome]:
    """Send ``items`` on ``session``; yield one outcome per item sent (indexes into ``items``).

    Stops early when the session closes (the caller reports the rest as never sent).
    """
    native = getattr(session, "send_many", None)
    if native is not None:
        yield from native(items)
        return
    for index, item in enumerate(items):
        try:
            result = session.send_message(item.message, **_kwargs(item))  # type: ignore[arg-type]
        except MailError as exc:
            unknown = not isinstance(exc, ReplyError) and _end_of_data_pending(session)
            yield outcome_of_error(index, exc, unknown=unknown)
        except Exception as exc:  # e.g. a message form the session cannot read
            if _end_of_data_pending(session):
                raise
            yield _failed(index, exc)
        else:
            yield outcome_of_result(index, result)
        if session.closed:
            return


async def send_items_async(
    session: AsyncSession, items: Sequence[Outgoing]
) -> AsyncIterator[SendOutcome]:
    """The asyncio form of :func:`send_items`."""
    native = getattr(session, "send_many", None)
    if native is not None:
        async for outcome in native(items):
            yield outcome
        return
    for index, item in enumerate(items):
        try:
            result = await session.send_message(item.message, **_kwargs(item))  # type: ignore[arg-type]
        except MailError as exc:
            unknown = not isinstance(exc, ReplyError) and _end_of_data_pending(session)
            yield outcome_of_error(index, exc, unknown=unknown)
        except Exception as exc:  # e.g. a message form the session cannot read
            if _end_of_data_pending(session):
                raise
            yield _failed(index, exc)
        else:
            yield outcome_of_result(index, result)
        if session.closed:
            return
