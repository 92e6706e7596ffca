"""The state ``deliver_many`` keeps for a run, and what it reports when the run cannot go on.

Layer: L3 flows (sans-IO). May import ``mailsdk.protocol``, ``mailsdk.esmtp`` and L0. Must never
import transport, telemetry or client, nor any I/O module of the standard library.

:mod:`mailsdk.flows.deliver` schedules the messages (pipelined or lock-step); this module holds
what both schedules share: the item a runner hands over (:class:`Delivery`), the groups of
commands in flight, the outcomes built from replies, and the reporting of every message left
when the connection breaks, the server says 421 or the input ends early.
"""

from __future__ import annotations

import collections
import enum
import typing
from collections.abc import Generator, Sequence

import attrs

from mailsdk.errors import (
    ConnectionLost,
    DataRefused,
    DeliveryUnknown,
    MailError,
    RemoteProtocolError,
    ReplyError,
)
from mailsdk.esmtp import Capabilities, MailOptions, RcptOptions
from mailsdk.flows.actions import (
    Action,
    BodyChunk,
    Close,
    Exchange,
    Phase,
    Pull,
    Report,
)
from mailsdk.flows.content import bdat_chunks, body_chunks
from mailsdk.flows.envelope import PreparedMessage
from mailsdk.flows.judge import (
    EnvelopePlan,
    EnvelopeVerdict,
    ParameterCache,
    TransactionOptions,
    judge_end,
    judge_final,
    plan_envelope,
)
from mailsdk.flows.outcomes import DeliveryStatus, SendOutcome
from mailsdk.flows.results import SendResult
from mailsdk.protocol.commands import Command, Data, EndOfData
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.events import CommandReplied
from mailsdk.protocol.reply import Reply

__all__ = [
    "Delivery",
    "abandoned_outcome",
    "broken_outcome",
    "end_outcome",
    "never_sent",
    "plan_item",
]


@attrs.frozen(kw_only=True)
class Delivery:
    """One item a runner hands to :func:`~mailsdk.flows.deliver_many` (the result of a ``Pull``).

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


class Kind(enum.Enum):
    LOCAL = "local"  # failed before anything was written: its outcome is ready
    ENVELOPE = "envelope"  # MAIL, RCPT... (and DATA) written, replies owed
    CONTENT = "content"  # the content is being written; the end of it is not
    FINAL = "final"  # end-of-data / BDAT LAST written: its replies decide
    SERVICE = "service"  # an RSET or the empty body after a refusal: no outcome of its own


@attrs.define
class Group:
    """Commands in flight whose replies are read together, in wire order."""

    kind: Kind
    item: Delivery | None
    count: int = 0
    plan: EnvelopePlan | None = None
    verdict: EnvelopeVerdict | None = None
    error: MailError | None = None
    outcome: SendOutcome | None = None  # SERVICE: the refusal it follows, reported after it
    #: BDAT in several chunks: the next envelope waits for their replies (a refused chunk
    #: leaves the transaction open on the server: RFC 3030 §2, RSET first).
    wait_next: bool = False


def item_outcome(
    item: Delivery,
    status: DeliveryStatus,
    *,
    result: SendResult | None = None,
    error: MailError | None = None,
) -> SendOutcome:
    return SendOutcome(index=item.index, status=status, result=result, error=error, key=item.key)


def not_started(item: Delivery, error: MailError) -> SendOutcome:
    """FAILED, marked never started: nothing of the message was handed over, no try used."""
    return SendOutcome(
        index=item.index,
        status=DeliveryStatus.FAILED,
        error=error,
        key=item.key,
        attempts=0,
        never_started=True,
    )


def never_sent(item: Delivery, why: str) -> SendOutcome:
    """FAILED, never started: ``why`` (the run could not go on) came before the message."""
    return not_started(item, ConnectionLost(f"not sent: {why} before this message was started"))


def broken_outcome(item: Delivery, cause: MailError, *, final: bool, envelope: bool) -> SendOutcome:
    """A message in flight when the connection broke with ``cause``: ``final`` (its end of
    data was written) is UNKNOWN; an ``envelope`` awaiting its replies is REFUSED by a reply
    error; otherwise it was never handed over (FAILED)."""
    if final:
        unknown = DeliveryUnknown(
            f"the end of the message was sent but no reply came ({cause}); it may "
            "have been delivered and is not resent",
            cause=cause,
        )
        return item_outcome(item, DeliveryStatus.UNKNOWN, error=unknown)
    if isinstance(cause, ReplyError) and envelope:
        return item_outcome(item, DeliveryStatus.REFUSED, error=cause)
    return item_outcome(item, DeliveryStatus.FAILED, error=cause)


def abandoned_outcome(item: Delivery, *, final: bool) -> SendOutcome:
    """A message still owed a reply when the server said 421: ``final`` (its end of data was
    written) is UNKNOWN, anything else was never started."""
    closing = ConnectionLost("not sent: the server is closing the connection (421)")
    if final:
        unknown = DeliveryUnknown(
            "the end of the message was sent but the server is closing the connection "
            "(421) without a reply; it may have been delivered and is not resent",
            cause=closing,
        )
        return item_outcome(item, DeliveryStatus.UNKNOWN, error=unknown)
    return not_started(item, closing)


def plan_item(
    item: Delivery,
    caps: Capabilities,
    options: TransactionOptions,
    *,
    tls_active: bool,
    cache: ParameterCache,
) -> EnvelopePlan | MailError:
    """``item``'s envelope plan, or why it cannot be sent (nothing is written for it)."""
    if item.error is not None or item.prepared is None:
        return item.error or MailError("the message could not be prepared")
    try:
        return plan_envelope(
            item.prepared,
            caps,
            mail_options=item.mail_options,
            rcpt_options=item.rcpt_options,
            options=options,
            tls_active=tls_active,
            cache=cache,
        )
    except MailError as exc:  # a capability or input check: nothing was written
        return exc


def _delivered(item: Delivery, result: SendResult) -> SendOutcome:
    status = DeliveryStatus.PARTIAL if result.refused else DeliveryStatus.ACCEPTED
    return item_outcome(item, status, result=result)


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


def final_outcome(
    item: Delivery,
    plan: EnvelopePlan,
    verdict: EnvelopeVerdict,
    events: Sequence[CommandReplied],
    dialect: Dialect,
) -> SendOutcome:
    prepared = item.prepared
    assert prepared is not None
    judged = judge_final(
        prepared.envelope, verdict, events, size=prepared.size, dialect=dialect, bdat=plan.use_bdat
    )
    if isinstance(judged, SendResult):
        return _delivered(item, judged)
    return item_outcome(
        item,
        DeliveryStatus.REFUSED,
        result=_refused_result(prepared, verdict, judged.reply),
        error=judged,
    )


def end_outcome(
    item: Delivery, plan: EnvelopePlan, verdict: EnvelopeVerdict, replies: Sequence[Reply]
) -> SendOutcome:
    """An SMTP message's outcome from the replies to its content: the end of data's, or with
    BDAT one per chunk, ``LAST`` last (RFC 3030 §2: a refused chunk fails the message)."""
    prepared = item.prepared
    assert prepared is not None
    judged: SendResult | ReplyError | None = None
    if plan.use_bdat:
        for reply in replies[:-1]:
            if not reply.is_positive:
                judged = DataRefused(reply, "BDAT")
                break
    if judged is None:
        command = "BDAT" if plan.use_bdat else "DATA"
        judged = judge_end(
            prepared.envelope, verdict, replies[-1], size=prepared.size, command=command
        )
    if isinstance(judged, SendResult):
        return _delivered(item, judged)
    return item_outcome(
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


def _unwritten_end(group: Group, error: RemoteProtocolError) -> None:
    """The connection refused to queue ``group``'s end of data because reply bytes arrived
    before it (out of step): nothing of it was written, so the message is FAILED, not UNKNOWN."""
    if error.unsolicited:
        group.kind = Kind.CONTENT


# Immutable actions and commands the run sends over and over: built once.
PULL_ACTION: typing.Final = Pull(True)
_PULL_UNPREPARED: typing.Final = Pull(False)
DATA_ACTION: typing.Final = Data()
_END_OF_DATA: typing.Final = EndOfData()


_READS: dict[int, Exchange] = {}


def read_exchange(count: int) -> Exchange:
    """The exchange that only reads ``count`` commands' replies (immutable: built once)."""
    exchange = _READS.get(count)
    if exchange is None:
        exchange = Exchange((), count, Phase.COMMAND)
        if len(_READS) < 64:  # a few envelope sizes repeat; stay bounded
            _READS[count] = exchange
    return exchange


def _index(group: Group) -> int:
    return group.item.index if group.item is not None else -1


def reply_list(events: Sequence[CommandReplied]) -> list[Reply]:
    return [e.reply for e in events if e.final]  # LMTP: a command's last reply stands for it


def is_closing(events: Sequence[CommandReplied]) -> bool:
    for e in events:  # noqa: SIM110 - no generator: this runs for every group of every message
        if e.reply.code == 421:
            return True
    return False


class Run:
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
        self.groups: collections.deque[Group] = collections.deque()
        self.current: Group | None = None  # the group being read or written
        self.exhausted = False
        self.closing = False
        self.held: Group | None = None  # a judged final reply not reported yet (see run)
        self.parameters: ParameterCache = {}

    def release(self) -> Generator[Action, object, None]:
        """Report the held outcome: the replies after it came in step."""
        if self.held is not None and self.held.outcome is not None:
            outcome, self.held = self.held.outcome, None
            yield Report(outcome)

    # -- input --------------------------------------------------------------------------------

    def pull(self, *, prepare: bool = True) -> Generator[Action, object, Delivery | None]:
        return self.pulled((yield PULL_ACTION if prepare else _PULL_UNPREPARED))

    def pulled(self, item: object) -> Delivery | None:
        """Check what a ``Pull`` returned (``None``: the input is exhausted)."""
        if item is None:
            self.exhausted = True
            return None
        if type(item) is not Delivery and not isinstance(item, Delivery):
            raise TypeError(f"deliver_many pulled {type(item).__name__}, not a Delivery")
        return item

    def plan(self, item: Delivery) -> EnvelopePlan | MailError:
        return plan_item(
            item, self.caps, self.options, tls_active=self.tls_active, cache=self.parameters
        )

    # -- writing ------------------------------------------------------------------------------

    def write_content(self, group: Group) -> Generator[Action, object, int]:
        """Write ``group``'s content and its end; returns how many commands it queued."""
        item, plan = group.item, group.plan
        assert item is not None
        assert plan is not None
        assert item.prepared is not None
        prepared = item.prepared
        group.kind = Kind.CONTENT
        if plan.use_bdat:
            count = 0
            for chunk in bdat_chunks(prepared, self.options.chunk_size, binary=plan.binary):
                if chunk.last:
                    group.kind = Kind.FINAL  # from here on a failure leaves the fate unknown
                try:
                    yield Exchange((chunk,), 0, Phase.DATA, item.owner)
                except RemoteProtocolError as exc:
                    _unwritten_end(group, exc)
                    raise
                count += 1
            return count
        if prepared.stream is None and not prepared.headers and len(prepared.data) <= _ONE_EXCHANGE:
            group.kind = Kind.FINAL
            data = prepared.data
            body = (BodyChunk(data, prepared.canonical), _END_OF_DATA) if data else (_END_OF_DATA,)
            try:
                yield Exchange(body, 0, Phase.DATA, item.owner)
            except RemoteProtocolError as exc:
                _unwritten_end(group, exc)
                raise
            return 1
        for piece in body_chunks(prepared):
            yield Exchange((piece,), 0, Phase.DATA, item.owner)
        group.kind = Kind.FINAL
        try:
            yield Exchange((EndOfData(),), 0, Phase.DATA, item.owner)
        except RemoteProtocolError as exc:
            _unwritten_end(group, exc)
            raise
        return 1

    def service(
        self, command: Command, outcome: SendOutcome, item: Delivery
    ) -> Generator[Action, object, None]:
        """Queue an RSET (or an empty body) after ``item``'s refusal; the refusal is reported
        once it is answered, so the command's span stays inside the message's."""
        service = Group(Kind.SERVICE, item, 1, outcome=outcome)
        try:
            yield Exchange((command,), 0, Phase.COMMAND, item.owner)
        except MailError:
            # The command could not be queued (reply bytes came before it): the server's
            # refusal still stands, as when the command gets no answer (see ``lost``).
            self.current = service
            raise
        self.groups.append(service)

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
            held = Group(Kind.FINAL, held.item)
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
            elif group.kind is Kind.LOCAL:
                yield Report(item_outcome(item, DeliveryStatus.FAILED, error=group.error))
            else:
                final, envelope = group.kind is Kind.FINAL, group.kind is Kind.ENVELOPE
                yield Report(broken_outcome(item, cause, final=final, envelope=envelope))
        yield from self.drain(f"the connection was lost ({cause})")

    def drain(self, why: str) -> Generator[Action, object, None]:
        """Report every message not yet started as FAILED: it was never sent."""
        while not self.exhausted:
            item = yield from self.pull(prepare=False)
            if item is not None:
                yield Report(never_sent(item, why))

    def abandon_unread(self) -> Generator[Action, object, None]:
        """After a 421: the groups still owed a reply will get none."""
        yield from self.release()
        for group in list(self.groups):
            if group.item is None:
                continue
            if group.outcome is not None:
                yield Report(group.outcome)
                continue
            if group.kind is Kind.LOCAL:
                yield Report(item_outcome(group.item, DeliveryStatus.FAILED, error=group.error))
                continue
            yield Report(abandoned_outcome(group.item, final=group.kind is Kind.FINAL))
        self.groups.clear()
        yield from self.drain("the server closed the connection (421)")
