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

Decisions: partial acceptance is a result; all recipients refused raises
:class:`~mailsdk.errors.RecipientsRefused`; a refused sender or data raises with the reply. After
a failure the transaction is reset (RSET) so the session stays usable, except after a 421 (the
server is closing: the client layer closes the connection).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import attrs

from mailsdk.errors import (
    CapabilityError,
    ConfigurationError,
    DataRefused,
    InvalidInputError,
    ProtocolError,
    RecipientsRefused,
    SenderRefused,
    TransportError,
)
from mailsdk.esmtp import Capabilities, MailOptions, RcptOptions, mail_parameters, rcpt_parameters
from mailsdk.flows.actions import Action, Close, send_bdat, send_body, submit, submit_one
from mailsdk.flows.envelope import PreparedMessage
from mailsdk.flows.results import SendResult
from mailsdk.protocol.commands import Command, Data, MailFrom, RcptTo, Rset
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.events import CommandReplied
from mailsdk.protocol.reply import Reply

__all__ = ["DEFAULT_CHUNK_SIZE", "TransactionOptions", "reset", "transaction"]

#: BDAT chunk size (RFC 3030 leaves it to the client).
DEFAULT_CHUNK_SIZE = 256 * 1024


@attrs.frozen(kw_only=True)
class TransactionOptions:
    """How to run transactions.

    Attributes:
        pipelining: use PIPELINING when the server offers it.
        chunking: ``None`` uses BDAT when CHUNKING is offered; ``True`` requires it; ``False``
            always uses DATA.
        chunk_size: BDAT chunk size in bytes.
        require_8bitmime: refuse (``CapabilityError``) to send 8-bit data to a server that does
            not offer 8BITMIME; when ``False`` the data is sent as is (smtplib's behaviour).
    """

    pipelining: bool = True
    chunking: bool | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    require_8bitmime: bool = True

    def __attrs_post_init__(self) -> None:
        # Checked here, not when the first BDAT is due: by then MAIL and RCPT are accepted and
        # the session would be left in the middle of a transaction.
        if self.chunk_size <= 0:
            raise ConfigurationError(f"chunk_size must be positive, not {self.chunk_size!r}")


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
            yield from send_body(b"")


def _mail_options(
    prepared: PreparedMessage, caps: Capabilities, base: MailOptions, opts: TransactionOptions
) -> MailOptions:
    body = base.body
    if body is None and prepared.eight_bit:
        if caps.eightbitmime:
            body = "8BITMIME"
        elif opts.require_8bitmime:
            raise CapabilityError(
                "the message has 8-bit data but the server does not offer 8BITMIME",
                extension="8BITMIME",
            )
    return attrs.evolve(
        base, size=prepared.size, body=body, smtputf8=base.smtputf8 or prepared.smtputf8
    )


def _use_bdat(caps: Capabilities, opts: TransactionOptions) -> bool:
    if opts.chunking is None:
        return caps.chunking
    if opts.chunking and not caps.chunking:
        raise CapabilityError(
            "BDAT was requested but the server does not offer CHUNKING", extension="CHUNKING"
        )
    return opts.chunking


def transaction(
    prepared: PreparedMessage,
    caps: Capabilities,
    *,
    mail_options: MailOptions | None = None,
    rcpt_options: RcptOptions | None = None,
    dialect: Dialect = Dialect.SMTP,
    options: TransactionOptions | None = None,
    tls_active: bool = False,
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
    """
    opts = options or TransactionOptions()
    env = prepared.envelope
    if not env.recipients:
        raise InvalidInputError("a message needs at least one recipient")
    base = mail_options or MailOptions()
    if base.requiretls and not tls_active:
        # RFC 8689 §4.2: REQUIRETLS is for a session that is itself encrypted; a server that
        # advertises it in plaintext is lying or being impersonated.
        raise CapabilityError(
            "REQUIRETLS needs an encrypted session (RFC 8689 §4.2) and this one has no TLS",
            extension="REQUIRETLS",
        )
    mparams = mail_parameters(_mail_options(prepared, caps, base, opts), caps)
    rparams = rcpt_parameters(rcpt_options or RcptOptions(), caps)
    use_bdat = _use_bdat(caps, opts)
    commands: list[Command] = [MailFrom(env.sender, mparams)]
    commands.extend(RcptTo(r, rparams) for r in env.recipients)

    data_reply: Reply | None = None
    if opts.pipelining and caps.pipelining:
        group = [*commands] if use_bdat else [*commands, Data()]
        replies = list((yield from submit(*group)))
        if not use_bdat:
            data_reply = replies.pop()
    else:
        replies = [(yield from submit_one(commands[0]))]
        if replies[0].is_positive:
            for command in commands[1:]:
                replies.append((yield from submit_one(command)))
                if replies[-1].code == 421:
                    break  # the server is closing the channel: nothing more may be sent

    mail_reply = replies[0]
    if not mail_reply.is_positive:
        yield from _abandon_data(data_reply)
        yield from reset(mail_reply)
        raise SenderRefused(mail_reply, env.sender)
    rcpt_replies = dict(zip(env.recipients, replies[1:], strict=False))
    accepted = [r for r, rep in rcpt_replies.items() if rep.is_positive]
    refused = {r: rep for r, rep in rcpt_replies.items() if not rep.is_positive}
    closing = next((r for r, rep in rcpt_replies.items() if rep.code == 421), None)
    if closing is not None:
        # 421 (RFC 5321 §3.8): the transaction is over whatever was accepted; the 421 goes
        # last so that it is the error's reply (the driver then closes the connection).
        refused[closing] = refused.pop(closing)
        raise RecipientsRefused(refused)
    if not accepted:
        yield from _abandon_data(data_reply)
        yield from reset()
        raise RecipientsRefused(refused)

    if use_bdat:
        final = yield from _send_bdat(prepared.data, opts.chunk_size)
    else:
        if data_reply is None:
            data_reply = yield from submit_one(Data())
        if data_reply.code != 354:
            yield from reset(data_reply)
            raise DataRefused(data_reply, "DATA")
        final = yield from send_body(prepared.data)

    if dialect is Dialect.LMTP:
        return (
            yield from _lmtp_result(
                sender=env.sender,
                accepted=accepted,
                refused=refused,
                rcpt_replies=rcpt_replies,
                events=final,
                size=prepared.size,
                command="BDAT" if use_bdat else "DATA",
            )
        )
    end = final[-1].reply
    if not end.is_positive:
        yield from reset(end)
        # The reply to the end of the data answers BDAT ... LAST when chunking (RFC 3030 §2).
        raise DataRefused(end, "BDAT" if use_bdat else "DATA")
    return SendResult(
        sender=env.sender,
        accepted=tuple(accepted),
        refused=refused,
        reply=end,
        recipient_replies=rcpt_replies,
        size=prepared.size,
    )


def _send_bdat(
    data: bytes, chunk_size: int
) -> Generator[Action, object, tuple[CommandReplied, ...]]:
    if chunk_size <= 0:
        raise InvalidInputError("chunk_size must be positive")
    offsets = list(range(0, len(data), chunk_size)) or [0]
    for i, start in enumerate(offsets):
        last = i == len(offsets) - 1
        events = yield from send_bdat(data[start : start + chunk_size], last=last)
        if last:
            return events
        reply = events[-1].reply
        if not reply.is_positive:
            yield from reset(reply)
            raise DataRefused(reply, "BDAT")
    raise AssertionError("unreachable")  # pragma: no cover


def _lmtp_result(
    *,
    sender: str,
    accepted: list[str],
    refused: dict[str, Reply],
    rcpt_replies: dict[str, Reply],
    events: tuple[CommandReplied, ...],
    size: int,
    command: str,
) -> Generator[Action, object, SendResult]:
    per_recipient = {e.recipient: e.reply for e in events if e.recipient is not None}
    if len(events) == 1 and not per_recipient:
        # A refusal of the whole data (e.g. 554 to BDAT) applies to every recipient.
        per_recipient = dict.fromkeys(accepted, events[0].reply)
    delivered = [r for r in accepted if per_recipient.get(r, events[-1].reply).is_positive]
    for r in accepted:
        reply = per_recipient.get(r, events[-1].reply)
        rcpt_replies[r] = reply
        if not reply.is_positive:
            refused[r] = reply
    if not delivered:
        yield from reset(events[-1].reply)
        raise RecipientsRefused(refused, command)
    return SendResult(
        sender=sender,
        accepted=tuple(delivered),
        refused=refused,
        reply=events[-1].reply,
        recipient_replies=rcpt_replies,
        size=size,
        lmtp=True,
    )
