"""One mail transaction: MAIL, RCPT..., DATA or BDAT; PIPELINING; partial acceptance; LMTP.

Layer: L3 flows (sans-IO). May import ``mailsdk.protocol``, ``mailsdk.esmtp`` and L0. Must never
import transport, telemetry or client, nor any I/O module of the standard library.

Wire (PIPELINING offered, one of three recipients refused)::

    C: MAIL FROM:<a@example.org> SIZE=1234
    C: RCPT TO:<b@example.com>
    C: RCPT TO:<nobody@example.com>
    C: RCPT TO:<c@example.com>
    C: DATA                                   (one write, RFC 2920 §3.1)
    S: 250 2.1.0 Ok
    S: 250 2.1.5 Ok
    S: 550 5.1.1 <nobody@example.com>: Recipient address rejected
    S: 250 2.1.5 Ok
    S: 354 End data with <CR><LF>.<CR><LF>
    C: (message, dot-stuffed) .
    S: 250 2.0.0 Ok: queued as 4Xyz

Decisions (the pure steps are in :mod:`mailsdk.flows.judge`): partial acceptance is a result;
all recipients refused raises :class:`~mailsdk.errors.RecipientsRefused`; a refused sender or data
raises with the reply. After a failure the transaction is reset (RSET) so the session stays
usable, except after a 421 (the server is closing: the client layer closes the connection).
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Generator

from mailsdk.errors import (
    DataRefused,
    DeliveryUnknown,
    ProtocolError,
    RemoteProtocolError,
    TransportError,
)
from mailsdk.esmtp import Capabilities, MailOptions, RcptOptions
from mailsdk.flows.actions import (
    Action,
    BodyChunk,
    Close,
    Exchange,
    Phase,
    exchange,
    replies_of,
    submit_one,
)
from mailsdk.flows.content import bdat_chunks, body_chunks
from mailsdk.flows.envelope import PreparedMessage
from mailsdk.flows.judge import (
    DEFAULT_CHUNK_SIZE,
    ParameterCache,
    TransactionOptions,
    judge_data,
    judge_envelope,
    judge_final,
    plan_envelope,
)
from mailsdk.flows.results import SendResult
from mailsdk.protocol.commands import Data, EndOfData, Rset
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.events import CommandReplied
from mailsdk.protocol.reply import Reply

_DATA: typing.Final = Data()
_END: typing.Final = EndOfData()
#: In-memory content up to this size is written with its end-of-data in one exchange: the
#: drivers buffer up to 128 KiB before writing, so the content and its end go in one write
#: (as ``deliver_many`` does).
_ONE_EXCHANGE: typing.Final = 64 * 1024

__all__ = ["DEFAULT_CHUNK_SIZE", "TransactionOptions", "reset", "transaction"]


def reset(trigger: Reply | None = None) -> Generator[Action, object, None]:
    """RSET after a failed step so the session is usable again; skipped after a 421.

    Best effort: if the connection breaks meanwhile (the driver then gives it up), the caller
    still raises the refusal that triggered the reset, not the lost connection (smtplib does
    the same). A 421 to RSET closes the connection.
    """
    if trigger is not None and trigger.code == 421:
        return
    with contextlib.suppress(TransportError, ProtocolError):
        reply = yield from submit_one(Rset())
        if reply.code == 421:
            yield Close()


def _abandon_data(data_reply: Reply | None) -> Generator[Action, object, None]:
    # RFC 2920 §3.1: DATA was accepted although MAIL or every RCPT was refused; end it with an
    # empty body (best effort, like the RSET that follows).
    if data_reply is not None and data_reply.code == 354:
        with contextlib.suppress(TransportError, ProtocolError):
            yield from exchange(EndOfData(), replies=1, phase=Phase.DATA)


def transaction(
    prepared: PreparedMessage,
    caps: Capabilities,
    *,
    mail_options: MailOptions | None = None,
    rcpt_options: RcptOptions | None = None,
    dialect: Dialect = Dialect.SMTP,
    options: TransactionOptions | None = None,
    tls_active: bool = False,
    cache: ParameterCache | None = None,
) -> Generator[Action, object, SendResult]:
    """Run one transaction and return its :class:`SendResult`.

    ``tls_active`` says whether the session is encrypted: ``REQUIRETLS`` is refused without it.

    Raises:
        InvalidInputError: no recipients.
        CapabilityError: the message needs SMTPUTF8/8BITMIME/SIZE/DSN... the server lacks, or
            REQUIRETLS on a session without TLS (raised before MAIL FROM is sent).
        SenderRefused: MAIL FROM was refused.
        RecipientsRefused: every recipient was refused (nothing was sent).
        DataRefused: DATA, a BDAT chunk or the end-of-data reply was a refusal.
        DeliveryUnknown: the end of the content was written and its reply never came (the
            connection broke, the deadline passed or the reply was unreadable): the message may
            have been delivered.
    """
    opts = options or TransactionOptions()
    env = prepared.envelope
    plan = plan_envelope(
        prepared,
        caps,
        mail_options=mail_options,
        rcpt_options=rcpt_options,
        options=opts,
        tls_active=tls_active,
        cache=cache,
    )
    commands = plan.commands
    data_reply: Reply | None = None
    if opts.pipelining and caps.pipelining:
        group = commands if plan.use_bdat else (*commands, _DATA)
        # submit(), inlined: the events straight from the exchange, one reply per command.
        events = replies_of((yield Exchange(group, len(group), Phase.COMMAND)))
        replies = [e.reply for e in events if e.final]
        if not plan.use_bdat:
            data_reply = replies.pop()
    else:
        replies = [(yield from submit_one(commands[0]))]
        if replies[0].is_positive:
            for command in commands[1:]:
                replies.append((yield from submit_one(command)))
                if replies[-1].code == 421:
                    break  # the server is closing the channel: nothing more may be sent

    verdict = judge_envelope(env, replies)
    if verdict.error is not None:
        # A 421 anywhere in the group (the envelope's, judged; DATA's) means the server is
        # closing the channel: nothing more may be written (RFC 5321 §3.8).
        if not verdict.closing and (data_reply is None or data_reply.code != 421):
            yield from _abandon_data(data_reply)
            yield from reset(replies[0] if not verdict.open_transaction else None)
        raise verdict.error

    if plan.use_bdat:
        final = yield from _send_bdat(prepared, opts.chunk_size, binary=plan.binary)
    else:
        if data_reply is None:
            data_reply = yield from submit_one(_DATA)
        refusal = judge_data(data_reply)
        if refusal is not None:
            yield from reset(data_reply)
            raise refusal
        data = prepared.data
        if prepared.stream is None and not prepared.headers and len(data) <= _ONE_EXCHANGE:
            # The common case: the content and its end in one exchange (one write), without
            # the piece-by-piece helpers.
            body = (BodyChunk(data, prepared.canonical), _END) if data else (_END,)
            try:  # _end(), inlined
                final = replies_of((yield Exchange(body, 1, Phase.DATA)))
            except (TransportError, ProtocolError) as exc:
                if isinstance(exc, RemoteProtocolError) and exc.unsolicited:
                    raise  # refused before the end was written (out of step): not sent
                raise _unknown(exc) from exc
        else:
            for piece in body_chunks(prepared):
                yield from exchange(piece, replies=0, phase=Phase.DATA)
            final = yield from _end(exchange(_END, replies=1, phase=Phase.DATA))

    outcome = judge_final(
        env, verdict, final, size=prepared.size, dialect=dialect, bdat=plan.use_bdat
    )
    if not isinstance(outcome, SendResult):
        yield from reset(final[-1].reply)
        raise outcome
    return outcome


def _end(
    ending: Generator[Action, object, tuple[CommandReplied, ...]],
) -> Generator[Action, object, tuple[CommandReplied, ...]]:
    """Write the end of the content and read its reply(ies): from here on, a lost connection or
    an unreadable reply leaves the message's fate unknown (it may have been delivered)."""
    try:
        return (yield from ending)
    except (TransportError, ProtocolError) as exc:
        if isinstance(exc, RemoteProtocolError) and exc.unsolicited:
            # Reply bytes arrived before the end of data could be queued (out of step): it
            # was refused before any of it was written, so the message was not sent.
            raise
        raise _unknown(exc) from exc


def _unknown(exc: TransportError | ProtocolError) -> DeliveryUnknown:
    return DeliveryUnknown(
        f"the end of the message was sent but no reply came ({exc}); it may have been "
        "delivered and is not resent",
        cause=exc,
    )


def _send_bdat(
    prepared: PreparedMessage, chunk_size: int, *, binary: bool = False
) -> Generator[Action, object, tuple[CommandReplied, ...]]:
    for chunk in bdat_chunks(prepared, chunk_size, binary=binary):
        if chunk.last:
            return (yield from _end(exchange(chunk, replies=1, phase=Phase.DATA)))
        events = yield from exchange(chunk, replies=1)
        reply = events[-1].reply
        if not reply.is_positive:
            yield from reset(reply)
            raise DataRefused(reply, "BDAT")
    raise AssertionError("unreachable")  # pragma: no cover
