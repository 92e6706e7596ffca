"""The pure steps of one mail transaction: what to send, and what the replies mean.

Layer: L3 flows (sans-IO, pure functions). May import ``mailsdk.protocol``, ``mailsdk.esmtp`` and
L0. Must never import transport, telemetry or client, nor any I/O module of the standard library.

A transaction is three decisions, each a function of data only, so the single-message flow
(:func:`mailsdk.flows.transaction`) and the many-message flow (:func:`mailsdk.flows.deliver_many`)
share them and tests can check them without a conversation:

* :func:`plan_envelope`: the MAIL and RCPT commands (and whether BDAT carries the content);
  every capability check happens here, before a byte is written;
* :func:`judge_envelope`: the replies to MAIL and the RCPTs (RFC 5321 §3.3, partial acceptance);
* :func:`judge_final`: the reply (or LMTP replies, RFC 2033 §4.2) after the content.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence

import attrs

from mailsdk.errors import (
    CapabilityError,
    ConfigurationError,
    DataRefused,
    InvalidInputError,
    RecipientsRefused,
    ReplyError,
    SenderRefused,
)
from mailsdk.esmtp import Capabilities, MailOptions, RcptOptions, mail_parameters, rcpt_parameters
from mailsdk.flows.envelope import Envelope, PreparedMessage
from mailsdk.flows.results import SendResult
from mailsdk.protocol.commands import Bdat, Command, MailFrom, RcptTo
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.events import CommandReplied
from mailsdk.protocol.reply import Reply

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "EnvelopePlan",
    "EnvelopeVerdict",
    "ParameterCache",
    "TransactionOptions",
    "judge_data",
    "judge_end",
    "judge_envelope",
    "judge_final",
    "plan_envelope",
]

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


@attrs.frozen
class EnvelopePlan:
    """The commands that open one transaction.

    Attributes:
        mail: the ``MAIL FROM`` command with its ESMTP parameters.
        rcpts: one ``RCPT TO`` per envelope recipient, in order.
        use_bdat: the content goes in BDAT chunks (RFC 3030) rather than after DATA.
        binary: ``BODY=BINARYMIME`` (RFC 3030 §3): the content is sent exactly as given, in
            BDAT chunks, without CR/LF canonicalisation.
    """

    mail: MailFrom
    rcpts: tuple[RcptTo, ...]
    use_bdat: bool
    binary: bool = False
    #: The envelope's wire bytes: MAIL, the RCPTs and (without BDAT) DATA, built once.
    wire: bytes = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        lines = [self.mail.to_bytes(), *(r.to_bytes() for r in self.rcpts)]
        if not self.use_bdat:
            lines.append(b"DATA\r\n")
        object.__setattr__(self, "wire", b"".join(lines))

    @property
    def commands(self) -> tuple[Command, ...]:
        """MAIL then the RCPTs, in wire order."""
        return (self.mail, *self.rcpts)


def _mail_options(
    prepared: PreparedMessage, caps: Capabilities, base: MailOptions, opts: TransactionOptions
) -> MailOptions:
    body = base.body
    # A stream that could not be scanned (eight_bit None) may hold 8-bit data: declaring
    # 8BITMIME for 7-bit content is harmless, so it is declared whenever the server offers it.
    if body is None and prepared.eight_bit is not False:
        if caps.eightbitmime:
            body = "8BITMIME"
        elif prepared.eight_bit and opts.require_8bitmime:
            raise CapabilityError(
                "the message has 8-bit data but the server does not offer 8BITMIME",
                extension="8BITMIME",
            )
    binary = body == "BINARYMIME"
    declared = prepared.binary_declared_size if binary else prepared.declared_size
    size = base.size if declared is None else declared
    return attrs.evolve(base, size=size, body=body, smtputf8=base.smtputf8 or prepared.smtputf8)


def _use_bdat(caps: Capabilities, opts: TransactionOptions) -> bool:
    if opts.chunking is None:
        return caps.chunking
    if opts.chunking and not caps.chunking:
        raise CapabilityError(
            "BDAT was requested but the server does not offer CHUNKING", extension="CHUNKING"
        )
    return opts.chunking


#: Parameters and commands computed for a run, keyed by what they depend on (see
#: :func:`plan_envelope`).
ParameterCache: typing.TypeAlias = dict[tuple[object, ...], tuple[object, ...]]
_CACHE_LIMIT: typing.Final = 1024
_NO_MAIL_OPTIONS: typing.Final = MailOptions()
_NO_RCPT_OPTIONS: typing.Final = RcptOptions()


def plan_envelope(
    prepared: PreparedMessage,
    caps: Capabilities,
    *,
    mail_options: MailOptions | None = None,
    rcpt_options: RcptOptions | None = None,
    options: TransactionOptions | None = None,
    tls_active: bool = False,
    cache: ParameterCache | None = None,
) -> EnvelopePlan:
    """The MAIL and RCPT commands for ``prepared``, checked against the server's capabilities.

    Args:
        prepared: the message.
        caps: the server's capabilities.
        mail_options: MAIL parameters asked for.
        rcpt_options: RCPT parameters asked for (every recipient).
        options: the transaction policy.
        tls_active: whether the session is encrypted: ``REQUIRETLS`` is refused without it.
        cache: a dict kept across messages (a session's, or a run's): the parameters depend
            only on ``caps``, the option objects and the message's size and flags, so a bulk
            run computes them once.

    Raises:
        InvalidInputError: no recipients.
        CapabilityError: the message needs SMTPUTF8/8BITMIME/SIZE/DSN/CHUNKING... the server
            lacks, or REQUIRETLS on a session without TLS (nothing has been written yet).
    """
    opts = options or TransactionOptions()
    env = prepared.envelope
    if not env.recipients:
        raise InvalidInputError("a message needs at least one recipient")
    base = mail_options or _NO_MAIL_OPTIONS
    if base.requiretls and not tls_active:
        # RFC 8689 §4.2: REQUIRETLS is for a session that is itself encrypted; a server that
        # advertises it in plaintext is lying or being impersonated.
        raise CapabilityError(
            "REQUIRETLS needs an encrypted session (RFC 8689 §4.2) and this one has no TLS",
            extension="REQUIRETLS",
        )
    binary = base.body == "BINARYMIME"
    if binary and opts.chunking is False:
        # RFC 3030 §3: BINARYMIME content can only travel in BDAT chunks, never after DATA.
        raise CapabilityError(
            "BODY=BINARYMIME needs BDAT (RFC 3030 §3) but chunking is turned off",
            extension="CHUNKING",
        )
    key = (
        id(caps),
        id(opts),
        id(mail_options),
        id(rcpt_options),
        # BINARYMIME declares the raw size (see _mail_options), which canonical sizes hide.
        prepared.binary_declared_size if binary else prepared.declared_size,
        prepared.eight_bit,
        prepared.smtputf8,
    )
    if cache is not None:
        # A bulk run repeats the same few envelopes: the whole plan is kept (it is immutable).
        plan_key = (key, env.sender, env.recipients)
        planned = cache.get(plan_key)
        if planned is not None:
            found: EnvelopePlan = planned[0]  # type: ignore[assignment]  # (no cast() call: per message)
            return found
    hit = cache.get(key) if cache is not None else None
    if hit is None:
        mparams = mail_parameters(_mail_options(prepared, caps, base, opts), caps)
        rparams = rcpt_parameters(rcpt_options or _NO_RCPT_OPTIONS, caps)
        # mail_parameters has required CHUNKING for BINARYMIME: BDAT is always possible here.
        use_bdat = True if binary else _use_bdat(caps, opts)
        if cache is not None:
            if len(cache) >= _CACHE_LIMIT:  # sizes vary: stay bounded
                cache.clear()
            # The objects are kept so that their ids cannot be reused meanwhile.
            cache[key] = (mparams, rparams, use_bdat, caps, opts, mail_options, rcpt_options)
    else:
        # The cache is filled just above: the first three fields are always these.
        mparams = typing.cast("tuple[str, ...]", hit[0])
        rparams = typing.cast("tuple[str, ...]", hit[1])
        use_bdat = typing.cast("bool", hit[2])
    if cache is None:
        return EnvelopePlan(
            MailFrom(env.sender, mparams),
            tuple(RcptTo(r, rparams) for r in env.recipients),
            use_bdat,
            binary,
        )
    plan = EnvelopePlan(
        _command(cache, MailFrom, env.sender, mparams),
        tuple([_command(cache, RcptTo, r, rparams) for r in env.recipients]),
        use_bdat,
        binary,
    )
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    # The option objects are kept with it so that their ids cannot be reused meanwhile.
    cache[(key, env.sender, env.recipients)] = (plan, caps, opts, mail_options, rcpt_options)
    return plan


_C = typing.TypeVar("_C", MailFrom, RcptTo)


def _command(cache: ParameterCache, kind: type[_C], address: str, params: tuple[str, ...]) -> _C:
    """The MAIL or RCPT command for ``address``, validated and encoded once per run: a bulk
    run repeats the same few addresses (the commands are immutable, so sharing is safe)."""
    key = (kind, address, params)
    hit = cache.get(key)
    if hit is None:
        command = kind(address, params)  # validates: a refusal raises and is not cached
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = (command,)
        return command
    return hit[0]  # type: ignore[return-value]


@attrs.frozen
class EnvelopeVerdict:
    """What the replies to MAIL and the RCPTs decided.

    Attributes:
        accepted: recipients whose RCPT got a 2xx, in order.
        refused: each refused recipient and its reply.
        rcpt_replies: every recipient's reply (those that got one).
        error: the refusal that ends the message here (``SenderRefused``, or
            ``RecipientsRefused`` when no recipient is left or the server said 421), else None.
        open_transaction: the server accepted MAIL, so it holds a transaction that a refusal
            must reset (RSET) before the next MAIL.
        closing: a reply was 421: the server is closing the channel (RFC 5321 §3.8).
    """

    accepted: tuple[str, ...]
    refused: dict[str, Reply]
    rcpt_replies: dict[str, Reply]
    error: ReplyError | None
    open_transaction: bool
    closing: bool


def judge_envelope(envelope: Envelope, replies: Sequence[Reply]) -> EnvelopeVerdict:
    """Judge the replies to MAIL (first) and the RCPTs that got one (in order).

    Partial acceptance is not an error (RFC 5321 §3.3); every recipient refused is.
    """
    mail_reply = replies[0]
    if not 200 <= mail_reply.code < 300:  # is_positive, inlined: this runs per message
        return EnvelopeVerdict(
            accepted=(),
            refused={},
            rcpt_replies={},
            error=SenderRefused(mail_reply, envelope.sender),
            open_transaction=False,
            # Pipelined RCPTs answered after the refused MAIL count too: a 421 to any of them
            # closes the channel as well.
            closing=any(r.code == 421 for r in replies),
        )
    rcpt_replies = dict(zip(envelope.recipients, replies[1:], strict=False))
    # One plain loop (this runs once per message on the bulk path).
    positive: list[str] = []
    refused: dict[str, Reply] = {}
    closing: str | None = None
    for r, rep in rcpt_replies.items():
        if 200 <= rep.code < 300:
            positive.append(r)
        else:
            refused[r] = rep
            if closing is None and rep.code == 421:
                closing = r
    accepted = tuple(positive)
    error: ReplyError | None = None
    if closing is not None:
        # 421 (RFC 5321 §3.8): the transaction is over whatever was accepted; the 421 goes
        # last so that it is the error's reply.
        refused[closing] = refused.pop(closing)
        error = RecipientsRefused(refused)
    elif not accepted:
        error = RecipientsRefused(refused)
    return EnvelopeVerdict(
        accepted=accepted,
        refused=refused,
        rcpt_replies=rcpt_replies,
        error=error,
        open_transaction=True,
        closing=closing is not None,
    )


def judge_data(reply: Reply) -> DataRefused | None:
    """The refusal carried by DATA's reply, or None when it is 354 (go ahead)."""
    return None if reply.code == 354 else DataRefused(reply, "DATA")


def judge_final(
    envelope: Envelope,
    verdict: EnvelopeVerdict,
    events: Sequence[CommandReplied],
    *,
    size: int,
    dialect: Dialect = Dialect.SMTP,
    bdat: bool = False,
) -> SendResult | ReplyError:
    """Judge the content's replies: the result, or the refusal that ends the message.

    Args:
        envelope: the message's envelope.
        verdict: what :func:`judge_envelope` decided (with recipients accepted).
        events: the replies after the content: the end-of-data's (one per accepted recipient
            in LMTP), or with BDAT every chunk's, the ``LAST`` one last.
        size: the content size to report.
        dialect: LMTP judges each recipient's reply (RFC 2033 §4.2).
        bdat: the content went in BDAT chunks.
    """
    command = "BDAT" if bdat else "DATA"
    finals = events  # after DATA, every event answers the end of the data
    if bdat:
        # RFC 3030 §2: a refused chunk fails the message whatever the LAST chunk's reply says.
        for event in events:
            chunk = event.command
            if isinstance(chunk, Bdat) and not chunk.last and not event.reply.is_positive:
                return DataRefused(event.reply, "BDAT")
        finals = [e for e in events if not isinstance(e.command, Bdat) or e.command.last]
    if dialect is Dialect.LMTP:
        return _lmtp_result(envelope, verdict, finals, size=size, command=command)
    return judge_end(envelope, verdict, finals[-1].reply, size=size, command=command)


def judge_end(
    envelope: Envelope, verdict: EnvelopeVerdict, end: Reply, *, size: int, command: str = "DATA"
) -> SendResult | ReplyError:
    """Judge an SMTP transaction's one final reply (``command``: ``"DATA"`` or ``"BDAT"``).

    The reply to the end of the data answers ``BDAT ... LAST`` when chunking (RFC 3030 §2).
    """
    if not 200 <= end.code < 300:  # is_positive, inlined
        return DataRefused(end, command)
    return SendResult(
        sender=envelope.sender,
        accepted=verdict.accepted,
        refused=verdict.refused,  # copied by SendResult's converter
        reply=end,
        recipient_replies=verdict.rcpt_replies,
        size=size,
    )


def _lmtp_result(
    envelope: Envelope,
    verdict: EnvelopeVerdict,
    events: Sequence[CommandReplied],
    *,
    size: int,
    command: str,
) -> SendResult | ReplyError:
    refused = dict(verdict.refused)
    rcpt_replies = dict(verdict.rcpt_replies)
    per_recipient = {e.recipient: e.reply for e in events if e.recipient is not None}
    if len(events) == 1 and not per_recipient:
        # A refusal of the whole data (e.g. 554 to BDAT) applies to every recipient.
        per_recipient = dict.fromkeys(verdict.accepted, events[0].reply)
    last = events[-1].reply
    delivered = [r for r in verdict.accepted if per_recipient.get(r, last).is_positive]
    for r in verdict.accepted:
        reply = per_recipient.get(r, last)
        rcpt_replies[r] = reply
        if not reply.is_positive:
            refused[r] = reply
    if not delivered:
        return RecipientsRefused(refused, command)
    return SendResult(
        sender=envelope.sender,
        accepted=tuple(delivered),
        refused=refused,
        reply=last,
        recipient_replies=rcpt_replies,
        size=size,
        lmtp=True,
    )
