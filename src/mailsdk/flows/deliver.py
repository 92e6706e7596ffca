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
behind ``BDAT ... LAST`` (after a message of several chunks it waits for their replies: a refused
chunk leaves the failed transaction open on the server, RFC 3030 §2, so RSET comes first).
Without PIPELINING every command waits for its reply (lock-step).

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

import typing
from collections.abc import Generator, Sequence

from mailsdk.errors import ConnectionLost, MailError, ReplyError
from mailsdk.esmtp import Capabilities
from mailsdk.flows._delivery import (
    DATA_ACTION,
    PULL_ACTION,
    Delivery,
    Group,
    Kind,
    Run,
    final_outcome,
    is_closing,
    item_outcome,
    not_started,
    read_exchange,
    reply_list,
)
from mailsdk.flows.actions import Action, Exchange, Frame, Phase, Report
from mailsdk.flows.content import bdat_chunks
from mailsdk.flows.envelope import PreparedMessage
from mailsdk.flows.judge import EnvelopePlan, TransactionOptions, judge_data, judge_envelope
from mailsdk.flows.outcomes import DeliveryStatus, SendOutcome
from mailsdk.protocol.commands import Bdat, Command, Data, EndOfData, Rset
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.events import CommandReplied
from mailsdk.protocol.reply import Reply

__all__ = ["Delivery", "deliver_many"]


class _Pipelined(Run):
    """PIPELINING: each message's envelope rides in the write of the previous one's content."""

    #: The replies of the oldest group, read by the exchange that wrote the newest envelope.
    prefetched: tuple[CommandReplied, ...] | None = None

    def start_next(self) -> Generator[Action, object, None]:
        """Pull items until one has its envelope written (or the input ends)."""
        while not self.exhausted:
            item = self.pulled((yield PULL_ACTION))
            if item is None:
                return
            plan = self.plan(item)
            if isinstance(plan, MailError):
                self.groups.append(Group(Kind.LOCAL, item, error=plan))
                continue
            frames: tuple[Frame, ...] = (
                (plan.mail, *plan.rcpts) if plan.use_bdat else (plan.mail, *plan.rcpts, DATA_ACTION)
            )
            self.current = Group(Kind.ENVELOPE, item, len(frames), plan=plan)
            head = self.groups[0] if self.groups else None
            if head is None or head.kind is Kind.LOCAL:
                yield Exchange(frames, 0, Phase.COMMAND, item.owner)
            else:
                # The replies the oldest group is owed are read by this same exchange, right
                # after the write that carries this envelope: the bytes on the wire are the
                # same, one exchange fewer per message. (The reply deadline is the oldest
                # command's: its tag carries the phase.)
                result = yield Exchange(frames, head.count, Phase.COMMAND, item.owner)
                self.prefetched = result  # type: ignore[assignment]
            self.groups.append(self.current)
            self.current = None
            return

    def run(self) -> Generator[Action, object, None]:
        try:
            yield from self.start_next()
            while self.groups:
                group = self.current = self.groups.popleft()
                if group.kind is Kind.LOCAL:
                    self.current = None
                    assert group.item is not None
                    if self.held is not None:
                        yield from self.release()
                    yield Report(item_outcome(group.item, DeliveryStatus.FAILED, error=group.error))
                    continue
                events: tuple[CommandReplied, ...]
                if self.prefetched is None:
                    result = yield read_exchange(group.count)
                    events = result  # type: ignore[assignment]
                else:  # read by start_next for this group, the oldest
                    events, self.prefetched = self.prefetched, None
                held = self.held
                if held is not None:  # the replies after it arrived in step: it stands
                    self.held = None  # (release(), inlined: this runs for every message)
                    if held.outcome is not None:
                        yield Report(held.outcome)
                if not self.closing:
                    self.closing = is_closing(events)
                if group.kind is Kind.ENVELOPE:
                    yield from self.on_envelope(group, events)
                    self.current = None
                    if self.closing:
                        yield from self.abandon_unread()
                        return
                    if not (self.groups and self.groups[-1].wait_next):
                        yield from self.start_next()
                    continue
                self.current = None
                if group.outcome is not None:
                    yield Report(group.outcome)
                if group.kind is Kind.FINAL:
                    assert group.item is not None
                    assert group.plan is not None
                    assert group.verdict is not None
                    outcome = final_outcome(
                        group.item, group.plan, group.verdict, events, self.dialect
                    )
                    if group.wait_next and not self.closing:
                        if _chunk_refused(events):
                            yield from self.service(Rset(), outcome, group.item)
                        else:
                            yield Report(outcome)
                        yield from self.start_next()
                        continue
                    if self.groups and not self.closing:
                        # Reported once the next replies arrive in step: a server that sent one
                        # reply too few would otherwise have the next MAIL's 250 "confirm" this
                        # message (the connection detects the shift a reply or two later).
                        self.held = Group(Kind.FINAL, group.item, outcome=outcome)
                    else:
                        yield Report(outcome)
                if self.closing:
                    yield from self.abandon_unread()
                    return
            yield from self.release()
        except MailError as exc:  # the connection broke (the driver has given it up)
            yield from self.lost(exc)

    def on_envelope(
        self, group: Group, events: Sequence[CommandReplied]
    ) -> Generator[Action, object, None]:
        item, plan = group.item, group.plan
        assert item is not None
        assert plan is not None
        assert item.prepared is not None
        prepared = item.prepared
        replies = reply_list(events)
        data_reply = None if plan.use_bdat else replies.pop()
        verdict = judge_envelope(prepared.envelope, replies)
        refusal: ReplyError | None = verdict.error
        if refusal is None and data_reply is not None:
            refusal = judge_data(data_reply)
        if refusal is not None:
            outcome = item_outcome(item, DeliveryStatus.REFUSED, error=refusal)
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
            yield Report(not_started(item, closing))
            return
        group.verdict = verdict
        group.count = yield from self.write_content(group)
        group.wait_next = plan.use_bdat and group.count > 1
        self.groups.append(group)


class _LockStep(Run):
    """No PIPELINING: every command waits for its reply (RFC 5321 §4.1)."""

    broken: MailError | None = None  # an RSET after a refusal found the connection gone

    def run(self) -> Generator[Action, object, None]:
        try:
            while not self.exhausted:
                item = yield from self.pull()
                if item is None:
                    return
                plan = self.plan(item)
                if isinstance(plan, MailError):
                    yield Report(item_outcome(item, DeliveryStatus.FAILED, error=plan))
                    continue
                self.current = Group(Kind.ENVELOPE, item, plan=plan)
                outcome = yield from self.one(self.current)
                self.current = None
                yield Report(outcome)
                if self.broken is not None:
                    yield from self.drain(f"the connection was lost ({self.broken})")
                    return
                if self.closing:
                    yield from self.drain("the server closed the connection (421)")
                    return
        except MailError as exc:  # the connection broke (the driver has given it up)
            yield from self.lost(exc)

    def ask(self, command: Command, owner: object) -> Generator[Action, object, Reply]:
        events = yield Exchange((command,), 1, Phase.COMMAND, owner)
        replies = reply_list(typing.cast("tuple[CommandReplied, ...]", events))
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
        return item_outcome(item, DeliveryStatus.REFUSED, error=error)

    def one(self, group: Group) -> Generator[Action, object, SendOutcome]:
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
        self.closing = self.closing or is_closing(events)
        return final_outcome(item, plan, verdict, events, self.dialect)

    def bdat(self, group: Group) -> Generator[Action, object, tuple[CommandReplied, ...]]:
        item, plan = typing.cast("Delivery", group.item), typing.cast("EnvelopePlan", group.plan)
        prepared = typing.cast("PreparedMessage", item.prepared)
        group.kind = Kind.CONTENT
        events: tuple[CommandReplied, ...] = ()
        for chunk in bdat_chunks(prepared, self.options.chunk_size, binary=plan.binary):
            if chunk.last:
                group.kind = Kind.FINAL
            events = yield from _exchange(Exchange((chunk,), 1, Phase.DATA, item.owner))
            if not chunk.last and not events[-1].reply.is_positive:
                # RFC 3030 §2: a refused chunk fails the transaction: reset, send no more.
                self.closing = self.closing or is_closing(events)
                yield from self.reset(item.owner)
                return events
        return events


def _chunk_refused(events: Sequence[CommandReplied]) -> bool:
    """A BDAT chunk before the last was refused (RFC 3030 §2: the transaction failed)."""
    for event in events:
        chunk = event.command
        if isinstance(chunk, Bdat) and not chunk.last and not event.reply.is_positive:
            return True
    return False


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
    # The run's own generator, not one wrapping it: every resume of a wrapper would be one more
    # frame per action of every message (``run`` catches the broken connection itself).
    return run.run()
