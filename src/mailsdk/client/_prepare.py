"""The preparation pipeline: a message source becomes a :class:`~mailsdk.flows.PreparedMessage`.

Layer: L5 client (private). May import L0-L4. Opening a streamed source is delegated to
``_sources.py``; everything else is pure.

One ordered pipeline, each message prepared once:

1. **content** — an ``email.message.Message`` is flattened once (Bcc stripped, SMTPUTF8 policy
   when the envelope needs it); bytes and str are canonicalised to CRLF; a path, a binary file
   or an iterable of chunks becomes a stream read in bounded pieces when it is sent;
2. **envelope** — the explicit sender/recipients, else (``email.message.Message`` only) the
   headers, by smtplib's rules;
3. **trace headers** — the ``smtp.send`` span starts and its W3C trace context is added as
   header lines in front of the content (``PreparedMessage.headers``, the one place where
   added headers exist);
4. **[signing]** — the hook point for DKIM (``mailsdk.dkim``): a step that receives the
   prepared message *after* the trace headers and returns it with its signature header added
   (``PreparedMessage.with_headers``), so the signature covers every header that is sent;
5. **encoding** — SMTPUTF8/8BITMIME/SIZE are derived for MAIL (``flows.judge``); canonical CRLF,
   dot-stuffing or BDAT framing happen on the wire, piece by piece (``protocol.body``).
"""

from __future__ import annotations

import copy
import email.message
import typing
from collections.abc import Callable, Mapping, Sequence

from mailsdk.client._sources import content_of
from mailsdk.errors import InvalidInputError
from mailsdk.flows import Envelope, PreparedMessage, prepare_message, prepare_raw
from mailsdk.flows.envelope import RawMemo
from mailsdk.flows.headers import check_header_block, header_line
from mailsdk.protocol.address import needs_smtputf8
from mailsdk.telemetry.base import NoopSessionObserver, NoopTransactionObserver

if typing.TYPE_CHECKING:
    from mailsdk.telemetry import SessionObserver, TransactionObserver

__all__ = ["Step", "prepare"]

#: A preparation step after the trace headers (DKIM signing joins here): it returns the message
#: with any header it adds in front (``PreparedMessage.with_headers``).
Step: typing.TypeAlias = Callable[[PreparedMessage], PreparedMessage]


_SILENT: typing.Final = NoopTransactionObserver()  # the span of a message when telemetry is off


def _content(
    message: object,
    sender: str | None,
    recipients: Sequence[str] | None,
    memo: RawMemo | None = None,
) -> PreparedMessage:
    """Steps 1 and 2: the content, read or flattened once, and the envelope."""
    if type(message) is bytes or type(message) is str:  # the common case, tested first
        if sender is None or recipients is None:
            raise InvalidInputError("a raw message needs an explicit sender and recipients")
        return prepare_raw(sender, recipients, message, memo=memo)
    if isinstance(message, email.message.Message):
        msg = typing.cast("email.message.Message", message)  # str headers, whatever the policy
        return prepare_message(msg, sender=sender, recipients=recipients)
    if isinstance(message, bytearray | memoryview):
        message = bytes(typing.cast("bytearray | memoryview[int]", message))
    if isinstance(message, bytes | str):
        if sender is None or recipients is None:
            raise InvalidInputError("a raw message needs an explicit sender and recipients")
        return prepare_raw(sender, recipients, message)
    stream = content_of(message)
    if stream is None:
        raise InvalidInputError(
            "a message is an email.message.Message, bytes, str, a path, a binary file or an "
            f"iterable of bytes chunks, not {type(message).__name__}"
        )
    if sender is None or recipients is None:
        raise InvalidInputError("a streamed message needs an explicit sender and recipients")
    smtputf8 = any(needs_smtputf8(a) for a in (sender, *recipients))
    return PreparedMessage(
        Envelope(sender, tuple(recipients)), b"", smtputf8, stream.eight_bit, stream
    )


def _header_lines(headers: Mapping[str, str]) -> bytes:
    # Each value on its own: a CRLF inside one would add a well-formed line of its own.
    return b"".join(header_line(name, value) for name, value in headers.items())


def _traced(
    prepared: PreparedMessage, message: object, headers: Mapping[str, str]
) -> PreparedMessage:
    """Step 3: the trace context in front of the content."""
    if not headers:
        return prepared
    if isinstance(message, email.message.Message) and any(name in message for name in headers):
        # The message carries its own (stale) trace context: replace it rather than send two.
        # Rare, so flattening again here keeps the common path to one flattening.
        # A shallow copy is enough: deleting a header rebinds the copy's header list, so the
        # caller's message is never changed.
        replaced = copy.copy(typing.cast("email.message.Message", message))
        _header_lines(headers)  # the propagator's values are checked as for a raw message
        for name, value in headers.items():
            del replaced[name]
            replaced[name] = value
        env = prepared.envelope
        return prepare_message(replaced, sender=env.sender, recipients=env.recipients)
    lines = _header_lines(headers)
    check_header_block(lines)
    return prepared.with_headers(lines)


def prepare(
    observer: SessionObserver,
    message: object,
    sender: str | None,
    recipients: Sequence[str] | str | None,
    steps: Sequence[Step] = (),
    *,
    memo: RawMemo | None = None,
) -> tuple[PreparedMessage, TransactionObserver]:
    """Run the pipeline for one message and open its ``smtp.send`` span.

    Args:
        observer: the session's telemetry.
        message: any message source.
        sender: the envelope sender, or ``None`` to take it from the headers.
        recipients: the envelope recipients, or ``None`` to take them from the headers.
        steps: steps after the trace headers (signing), in order.
        memo: a run's memory of the raw message it prepared last (``send_many``).

    Raises:
        InvalidInputError: no envelope could be derived, a raw or streamed message without
            an explicit envelope, an unsupported message type, or an unreadable path.
    """
    if isinstance(recipients, str):
        recipients = [recipients]
    # Callers' types are not trusted (``send_many`` items come from anywhere): a wrong type is
    # a typed refusal of that one message, never a TypeError out of the run.
    for address in (sender, *(recipients or ())):  # a plain loop: this runs per message
        if address is not None and type(address) is not str and not isinstance(address, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidInputError(f"envelope addresses are str, not {type(address).__name__}")
    prepared = _content(message, sender, recipients, memo)
    if not steps and type(observer) is NoopSessionObserver:
        return prepared, _SILENT  # telemetry off, no signing: nothing more to do
    env = prepared.envelope
    tx = observer.transaction(
        sender=env.sender, recipients=env.recipients, size=prepared.declared_size
    )
    try:
        headers = tx.trace_headers()
        if headers:  # telemetry off: no trace context, nothing to add
            prepared = _traced(prepared, message, headers)
        for step in steps:
            prepared = step(prepared)
    except BaseException as exc:
        tx.failed(exc)
        raise
    return prepared, tx
