"""Many messages on one connection: ``deliver_many``, pipelined across transactions.

Layer: L3 flows (sans-IO). May import ``mailsdk.protocol``, ``mailsdk.esmtp`` and L0. Must never
import transport, telemetry or client, nor any I/O module of the standard library.

The flow pulls prepared messages (:class:`Delivery`) from its runner one at a time (``Pull``),
and reports one :class:`~mailsdk.flows.SendOutcome` per message (``Report``), in input order,
as soon as it is known. The per-message decisions are the pure steps of
:mod:`mailsdk.flows.judge`; this module only schedules them.

Wire, PIPELINING offered (RFC 2920 §3.1: "the actual transfer of message content is explicitly
allowed to be the first 'command' in a group"): one write, one round trip per message::

    C: MAIL FROM:<a@x> / RCPT TO:<b@y> / DATA                   (message 1's envelope)
    S: 250 / 250 / 354
    C: <message 1> . / MAIL FROM:<a@x> / RCPT TO:<c@y> / DATA   (one write)
    S: 250 queued / 250 / 250 / 354
    C: <message 2> . / MAIL FROM:<a@x> / ...

With CHUNKING the content goes in BDAT chunks written back to back, and the next envelope rides
behind ``BDAT ... LAST``. Without PIPELINING every command waits for its reply (lock-step).

Rules:

* a refusal (sender, every recipient, DATA, a chunk, the final reply) ends only its own message;
  RSET is sent only where a transaction is left open on the server (MAIL accepted, content not
  ended), never after an end-of-data reply, which ends the transaction whatever it says;
* a 354 to a pipelined DATA after the envelope was refused gets an empty body (RFC 2920 §3.1);
* a 421 (RFC 5321 §3.8) ends the run: nothing more is written;
* when the connection breaks, a message whose end-of-data (or ``BDAT LAST``) was written and
  got no reply is UNKNOWN (it may have been delivered: never resend it blindly); the message in
  progress before that point, and every later one, is FAILED: it was never handed over.
"""

from __future__ import annotations

import collections
import enum
import typing
from collections.abc import Generator, Sequence

import attrs

from mailsdk.errors import (
    ConnectionLost,
    DeliveryUnknown,
    MailError,
    RemoteProtocolError,
    ReplyError,
)
from mailsdk.esmtp import Capabilities, MailOptions, RcptOptions
from mailsdk.flows.actions import Action, BodyChunk, Close, Exchange, Phase, Pull, Report
from mailsdk.flows.content import bdat_chunks, body_chunks
from mailsdk.flows.envelope import PreparedMessage
from mailsdk.flows.judge import (
    EnvelopePlan,
    EnvelopeVerdict,
    ParameterCache,
    TransactionOptions,
    judge_data,
    judge_envelope,
    judge_final,
    plan_envelope,
)
from mailsdk.flows.outcomes import DeliveryStatus, SendOutcome
from mailsdk.flows.results import SendResult
from mailsdk.protocol.commands import Command, Data, EndOfData, Rset
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.events import CommandReplied
from mailsdk.protocol.reply import Reply

__all__ = ["Delivery", "deliver_many"]


@attrs.frozen(kw_only=True)
class Delivery:
    """One item a runner hands to :func:`deliver_many` (the result of a ``Pull``).

    Attributes:
        index: the item's position in the caller's input (0-based).
        key: the caller's key for the item, echoed on its outcome.
        prepared: the message ready for the wire, or ``None`` when preparing it failed.
        error: why preparing it failed (the item is reported FAILED, nothing is written).
        mail_options: MAIL parameters for this message.
        rcpt_options: RCPT parameters for this message.
        owner: opaque: the runner's handle on the message (its telemetry span), given back on
            every exchange that carries the message's frames.
    """

    index: int
    key: str | None = None
    prepared: PreparedMessage | None = None
    error: MailError | None = None
    mail_options: MailOptions | None = None
    rcpt_options: RcptOptions | None = None
    owner: object = None


class _Kind(enum.Enum):
    LOCAL = "local"  # failed before anything was written: its outcome is ready
    ENVELOPE = "envelope"  # MAIL, RCPT... (and DATA) written, replies owed
    CONTENT = "content"  # the content is being written; the end of it is not
    FINAL = "final"  # end-of-data / BDAT LAST written: its replies decide
    SERVICE = "service"  # an RSET or the empty body after a refusal: no outcome of its own


@attrs.define
class _Group:
    """Commands in flight whose replies are read together, in wire order."""

    kind: _Kind
    item: Delivery | None
    count: int = 0
    plan: EnvelopePlan | None = None
    verdict: EnvelopeVerdict | None = None
    error: MailError | None = None
    outcome: SendOutcome | None = None  # SERVICE: the refusal it follows, reported after it


def _outcome(
    item: Delivery,
    status: DeliveryStatus,
    *,
    result: SendResult | None = None,
    error: MailError | None = None,
) -> SendOutcome:
    return SendOutcome(index=item.index, status=status, result=result, error=error, key=item.key)


def _not_started(item: Delivery, error: MailError) -> SendOutcome:
    """FAILED, marked never started: nothing of the message was handed over, no try used."""
    return SendOutcome(
        index=item.index,
        status=DeliveryStatus.FAILED,
        error=error,
        key=item.key,
        attempts=0,
        never_started=True,
    )


def _delivered(item: Delivery, result: SendResult) -> SendOutcome:
    status = DeliveryStatus.PARTIAL if result.refused else DeliveryStatus.ACCEPTED
    return _outcome(item, status, result=result)


def _refused_result(
    prepared: PreparedMessage, verdict: EnvelopeVerdict, reply: Reply
) -> SendResult:
    # The server answered the content: keep every recipient's reply for the caller.
    refused = dict(verdict.refused)
    replies = dict(verdict.rcpt_replies)
    for recipient in verdict.accepted:
        refused.setdefault(recipient, reply)
        replies[recipient] = refused[recipient]
    return SendResult(
        sender=prepared.envelope.sender,
        accepted=(),
        refused=refused,
        reply=reply,
        recipient_replies=replies,
        size=prepared.size,
    )


def _final_outcome(
    item: Delivery,
    plan: EnvelopePlan,
    verdict: EnvelopeVerdict,
    events: Sequence[CommandReplied],
    dialect: Dialect,
) -> SendOutcome:
    prepared = typing.cast("PreparedMessage", item.prepared)
    judged = judge_final(
        prepared.envelope, verdict, events, size=prepared.size, dialect=dialect, bdat=plan.use_bdat
    )
    if isinstance(judged, SendResult):
        return _delivered(item, judged)
    return _outcome(
        item,
        DeliveryStatus.REFUSED,
        result=_refused_result(prepared, verdict, judged.reply),
        error=judged,
    )


#: In-memory content up to this size goes in one exchange with its end-of-data. The drivers
#: write nothing before an exchange that waits until 128 KiB are buffered, so within that
#: exchange no write can fail between the content and its end (where a failure would make
#: the message FAILED, not UNKNOWN).
_ONE_EXCHANGE: typing.Final = 64 * 1024


def _index(group: _Group) -> int:
    return group.item.index if group.item is not None else -1


def _replies(events: Sequence[CommandReplied]) -> list[Reply]:
    return [e.reply for e in events if e.final]


def _closing(events: Sequence[CommandReplied]) -> bool:
    return any(e.reply.code == 421 for e in events)


class _Run:
    """The state of one ``deliver_many`` run (a flow split into generator methods)."""

    def __init__(
        self,
        caps: Capabilities,
        dialect: Dialect,
        options: TransactionOptions,
        tls_active: bool = False,
    ) -> None:
        self.caps = caps
        self.tls_active = tls_active
        self.dialect = dialect
        self.options = options
        self.groups: collections.deque[_Group] = collections.deque()
        self.current: _Group | None = None  # the group being read or written
        self.exhausted = False
        self.closing = False
        self.held: _Group | None = None  # a judged final reply not reported yet (see run)
        self.parameters: ParameterCache = {}

    def release(self) -> Generator[Action, object, None]:
        """Report the held outcome: the replies after it came in step."""
        if self.held is not None and self.held.outcome is not None:
            outcome, self.held = self.held.outcome, None
            yield Report(outcome)

    # -- input --------------------------------------------------------------------------------

    def pull(self, *, prepare: bool = True) -> Generator[Action, object, Delivery | None]:
        item = yield Pull(prepare)
        if item is None:
            self.exhausted = True
            return None
        if not isinstance(item, Delivery):
            raise TypeError(f"deliver_many pulled {type(item).__name__}, not a Delivery")
        return item

    def plan(self, item: Delivery) -> EnvelopePlan | MailError:
        if item.error is not None or item.prepared is None:
            return item.error or MailError("the message could not be prepared")
        try:
            return plan_envelope(
                item.prepared,
                self.caps,
                mail_options=item.mail_options,
                rcpt_options=item.rcpt_options,
                options=self.options,
                tls_active=self.tls_active,
                cache=self.parameters,
            )
        except MailError as exc:  # a capability or input check: nothing was written
            return exc

    # -- writing ------------------------------------------------------------------------------

    def write_content(self, group: _Group) -> Generator[Action, object, int]:
        """Write ``group``'s content and its end; returns how many commands it queued."""
        item, plan = typing.cast("Delivery", group.item), typing.cast("EnvelopePlan", group.plan)
        prepared = typing.cast("PreparedMessage", item.prepared)
        group.kind = _Kind.CONTENT
        if plan.use_bdat:
            count = 0
            for chunk in bdat_chunks(prepared, self.options.chunk_size, binary=plan.binary):
                if chunk.last:
                    group.kind = _Kind.FINAL  # from here on a failure leaves the fate unknown
                yield Exchange((chunk,), 0, Phase.DATA, item.owner)
                count += 1
            return count
        if prepared.stream is None and not prepared.headers and len(prepared.data) <= _ONE_EXCHANGE:
            group.kind = _Kind.FINAL
            data = prepared.data
            body = (BodyChunk(data, prepared.canonical), EndOfData()) if data else (EndOfData(),)
            yield Exchange(body, 0, Phase.DATA, item.owner)
            return 1
        for piece in body_chunks(prepared):
            yield Exchange((piece,), 0, Phase.DATA, item.owner)
        group.kind = _Kind.FINAL
        yield Exchange((EndOfData(),), 0, Phase.DATA, item.owner)
        return 1

    def service(
        self, command: Command, outcome: SendOutcome, item: Delivery
    ) -> Generator[Action, object, None]:
        """Queue an RSET (or an empty body) after ``item``'s refusal; the refusal is reported
        once it is answered, so the command's span stays inside the message's."""
        yield Exchange((command,), 0, Phase.COMMAND, item.owner)
        self.groups.append(_Group(_Kind.SERVICE, item, 1, outcome=outcome))

    # -- failure ------------------------------------------------------------------------------

    def lost(self, cause: MailError) -> Generator[Action, object, None]:
        """Report every message in flight after the connection broke, then the rest."""
        # Usually the driver has given the connection up already; but a source that failed
        # while its content was being written leaves a DATA transfer that cannot be ended
        # without sending a message: only closing the connection is safe.
        yield Close()
        held, self.held = self.held, None
        if held is not None and isinstance(cause, RemoteProtocolError) and cause.reply_missing:
            # A reply the server owed never came, right after this message's: its "reply" may
            # have been meant for a later command. Its end of data was written: fate unknown.
            # (One reply too many, or garbage, does not cast doubt on replies before it.)
            held = _Group(_Kind.FINAL, held.item)
        pending = [held] if held is not None else []
        pending += ([self.current] if self.current is not None else []) + list(self.groups)
        self.current = None
        self.groups.clear()
        # In input order: the envelope being written may already follow a FINAL group.
        owned = sorted((g for g in pending if g.item is not None), key=_index)
        for group in owned:
            item = typing.cast("Delivery", group.item)
            if group.outcome is not None:  # a refusal whose RSET got no answer: still refused
                yield Report(group.outcome)
            elif group.kind is _Kind.LOCAL:
                yield Report(_outcome(item, DeliveryStatus.FAILED, error=group.error))
            elif group.kind is _Kind.FINAL:
                unknown = DeliveryUnknown(
                    f"the end of the message was sent but no reply came ({cause}); it may "
                    "have been delivered and is not resent",
                    cause=cause,
                )
                yield Report(_outcome(item, DeliveryStatus.UNKNOWN, error=unknown))
            elif isinstance(cause, ReplyError) and group.kind is _Kind.ENVELOPE:
                yield Report(_outcome(item, DeliveryStatus.REFUSED, error=cause))
            else:  # envelope or content written, its end never: not delivered
                yield Report(_outcome(item, DeliveryStatus.FAILED, error=cause))
        yield from self.drain(f"the connection was lost ({cause})")

    def drain(self, why: str) -> Generator[Action, object, None]:
        """Report every message not yet started as FAILED: it was never sent."""
        while not self.exhausted:
            item = yield from self.pull(prepare=False)
            if item is not None:
                never = ConnectionLost(f"not sent: {why} before this message was started")
                yield Report(_not_started(item, never))

    def abandon_unread(self) -> Generator[Action, object, None]:
        """After a 421: the groups still owed a reply will get none."""
        yield from self.release()
        for group in list(self.groups):
            if group.item is None:
                continue
            if group.outcome is not None:
                yield Report(group.outcome)
                continue
            if group.kind is _Kind.LOCAL:
                yield Report(_outcome(group.item, DeliveryStatus.FAILED, error=group.error))
                continue
            closing = ConnectionLost("not sent: the server is closing the connection (421)")
            if group.kind is _Kind.FINAL:
                unknown = DeliveryUnknown(
                    "the end of the message was sent but the server is closing the connection "
                    "(421) without a reply; it may have been delivered and is not resent",
                    cause=closing,
                )
                yield Report(_outcome(group.item, DeliveryStatus.UNKNOWN, error=unknown))
            else:
                yield Report(_not_started(group.item, closing))
        self.groups.clear()
        yield from self.drain("the server closed the connection (421)")


class _Pipelined(_Run):
    """PIPELINING: each message's envelope rides in the write of the previous one's content."""

    def start_next(self) -> Generator[Action, object, None]:
        """Pull items until one has its envelope written (or the input ends)."""
        while not self.exhausted:
            item = yield from self.pull()
            if item is None:
                return
            plan = self.plan(item)
            if isinstance(plan, MailError):
                self.groups.append(_Group(_Kind.LOCAL, item, error=plan))
                continue
            frames = plan.commands if plan.use_bdat else (*plan.commands, Data())
            self.current = _Group(_Kind.ENVELOPE, item, len(frames), plan=plan)
            yield Exchange(frames, 0, Phase.COMMAND, item.owner)
            self.groups.append(self.current)
            self.current = None
            return

    def run(self) -> Generator[Action, object, None]:
        yield from self.start_next()
        while self.groups:
            group = self.current = self.groups.popleft()
            if group.kind is _Kind.LOCAL:
                self.current = None
                assert group.item is not None
                yield from self.release()
                yield Report(_outcome(group.item, DeliveryStatus.FAILED, error=group.error))
                continue
            events = yield from _read(group.count)
            yield from self.release()  # the replies after it arrived in step: it stands
            self.closing = self.closing or _closing(events)
            if group.kind is _Kind.ENVELOPE:
                yield from self.on_envelope(group, events)
                self.current = None
                if self.closing:
                    yield from self.abandon_unread()
                    return
                yield from self.start_next()
                continue
            self.current = None
            if group.outcome is not None:
                yield Report(group.outcome)
            if group.kind is _Kind.FINAL:
                outcome = _final_outcome(
                    typing.cast("Delivery", group.item),
                    typing.cast("EnvelopePlan", group.plan),
                    typing.cast("EnvelopeVerdict", group.verdict),
                    events,
                    self.dialect,
                )
                if self.groups and not self.closing:
                    # Reported once the next replies arrive in step: a server that sent one
                    # reply too few would otherwise have the next MAIL's 250 "confirm" this
                    # message (the connection detects the shift a reply or two later).
                    self.held = _Group(_Kind.FINAL, group.item, outcome=outcome)
                else:
                    yield Report(outcome)
            if self.closing:
                yield from self.abandon_unread()
                return
        yield from self.release()

    def on_envelope(
        self, group: _Group, events: Sequence[CommandReplied]
    ) -> Generator[Action, object, None]:
        item, plan = typing.cast("Delivery", group.item), typing.cast("EnvelopePlan", group.plan)
        prepared = typing.cast("PreparedMessage", item.prepared)
        replies = _replies(events)
        data_reply = None if plan.use_bdat else replies.pop()
        verdict = judge_envelope(prepared.envelope, replies)
        refusal: ReplyError | None = verdict.error
        if refusal is None and data_reply is not None:
            refusal = judge_data(data_reply)
        if refusal is not None:
            outcome = _outcome(item, DeliveryStatus.REFUSED, error=refusal)
            if self.closing:
                yield Report(outcome)
            elif data_reply is not None and data_reply.code == 354:
                # RFC 2920 §3.1: DATA was accepted after the envelope was refused: end it with
                # an empty body; the end-of-data closes the transaction.
                yield from self.service(EndOfData(), outcome, item)
            elif verdict.open_transaction:
                yield from self.service(Rset(), outcome, item)
            else:
                yield Report(outcome)
            return
        if self.closing:  # a 421 elsewhere in the group: nothing more may be written
            closing = ConnectionLost("not sent: the server is closing the connection (421)")
            yield Report(_not_started(item, closing))
            return
        group.verdict = verdict
        group.count = yield from self.write_content(group)
        self.groups.append(group)


class _LockStep(_Run):
    """No PIPELINING: every command waits for its reply (RFC 5321 §4.1)."""

    broken: MailError | None = None  # an RSET after a refusal found the connection gone

    def run(self) -> Generator[Action, object, None]:
        while not self.exhausted:
            item = yield from self.pull()
            if item is None:
                return
            plan = self.plan(item)
            if isinstance(plan, MailError):
                yield Report(_outcome(item, DeliveryStatus.FAILED, error=plan))
                continue
            self.current = _Group(_Kind.ENVELOPE, item, plan=plan)
            outcome = yield from self.one(self.current)
            self.current = None
            yield Report(outcome)
            if self.broken is not None:
                yield from self.drain(f"the connection was lost ({self.broken})")
                return
            if self.closing:
                yield from self.drain("the server closed the connection (421)")
                return

    def ask(self, command: Command, owner: object) -> Generator[Action, object, Reply]:
        events = yield Exchange((command,), 1, Phase.COMMAND, owner)
        replies = _replies(typing.cast("tuple[CommandReplied, ...]", events))
        self.closing = self.closing or any(r.code == 421 for r in replies)
        return replies[-1]

    def reset(self, owner: object) -> Generator[Action, object, None]:
        """RSET, best effort: a broken connection must not hide the refusal behind it."""
        if self.closing:
            return
        try:
            yield from self.ask(Rset(), owner)
        except MailError as exc:
            self.broken = exc

    def refuse(
        self, item: Delivery, error: ReplyError, *, reset: bool
    ) -> Generator[Action, object, SendOutcome]:
        if reset:
            yield from self.reset(item.owner)
        return _outcome(item, DeliveryStatus.REFUSED, error=error)

    def one(self, group: _Group) -> Generator[Action, object, SendOutcome]:
        item, plan = typing.cast("Delivery", group.item), typing.cast("EnvelopePlan", group.plan)
        prepared = typing.cast("PreparedMessage", item.prepared)
        replies = [(yield from self.ask(plan.mail, item.owner))]
        if replies[0].is_positive:
            for rcpt in plan.rcpts:
                replies.append((yield from self.ask(rcpt, item.owner)))
                if self.closing:
                    break
        verdict = judge_envelope(prepared.envelope, replies)
        if verdict.error is not None:
            return (yield from self.refuse(item, verdict.error, reset=verdict.open_transaction))
        group.verdict = verdict
        if plan.use_bdat:
            events = yield from self.bdat(group)
        else:
            refusal = judge_data((yield from self.ask(Data(), item.owner)))
            if refusal is not None:
                return (yield from self.refuse(item, refusal, reset=True))
            yield from self.write_content(group)
            events = yield from _read(1)
        self.closing = self.closing or _closing(events)
        return _final_outcome(item, plan, verdict, events, self.dialect)

    def bdat(self, group: _Group) -> Generator[Action, object, tuple[CommandReplied, ...]]:
        item, plan = typing.cast("Delivery", group.item), typing.cast("EnvelopePlan", group.plan)
        prepared = typing.cast("PreparedMessage", item.prepared)
        group.kind = _Kind.CONTENT
        events: tuple[CommandReplied, ...] = ()
        for chunk in bdat_chunks(prepared, self.options.chunk_size, binary=plan.binary):
            if chunk.last:
                group.kind = _Kind.FINAL
            events = yield from _exchange(Exchange((chunk,), 1, Phase.DATA, item.owner))
            if not chunk.last and not events[-1].reply.is_positive:
                # RFC 3030 §2: a refused chunk fails the transaction: reset, send no more.
                self.closing = self.closing or _closing(events)
                yield from self.reset(item.owner)
                return events
        return events


def _exchange(action: Exchange) -> Generator[Action, object, tuple[CommandReplied, ...]]:
    result = yield action
    return typing.cast("tuple[CommandReplied, ...]", result)


def _read(count: int) -> Generator[Action, object, tuple[CommandReplied, ...]]:
    return _exchange(Exchange((), count, Phase.COMMAND))


def deliver_many(
    caps: Capabilities,
    *,
    dialect: Dialect = Dialect.SMTP,
    options: TransactionOptions | None = None,
    tls_active: bool = False,
) -> Generator[Action, object, None]:
    """Deliver every message the runner hands over (``Pull``), reporting each outcome.

    Args:
        caps: the server's capabilities (from the latest EHLO/LHLO).
        dialect: SMTP or LMTP (per-recipient results, RFC 2033 §4.2).
        options: pipelining, chunking and 8BITMIME policy.
        tls_active: the session is encrypted (``REQUIRETLS`` is refused without it).

    The flow returns normally when the input is exhausted, after a 421 and after the
    connection broke (every item then has its outcome); it raises only what is no
    :class:`~mailsdk.errors.MailError` (a cancellation, or a bug).
    """
    opts = options or TransactionOptions()
    run: _Pipelined | _LockStep
    if opts.pipelining and caps.pipelining:
        run = _Pipelined(caps, dialect, opts, tls_active)
    else:
        run = _LockStep(caps, dialect, opts, tls_active)
    try:
        yield from run.run()
    except MailError as exc:  # the connection broke (the driver has given it up)
        yield from run.lost(exc)
