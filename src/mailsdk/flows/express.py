"""The express lane of ``send_many``: the pipelined schedule of ``deliver_many`` at byte level.

Layer: L3 flows (sans-IO). May import ``mailsdk.protocol``, ``mailsdk.esmtp`` and L0. Must never
import transport, telemetry or client, nor any I/O module of the standard library.

:func:`~mailsdk.flows.deliver_many` runs on the general machinery: every command is an action,
a tagged entry in the connection's queue and a reply event, which is what per-command telemetry,
the wire log and LMTP's per-recipient replies need. Without them (an SMTP run with PIPELINING,
telemetry and the wire log off) that machinery is most of the client's CPU per message, so
:class:`ExpressRun` keeps the same schedule and the same rules with none of it: it writes
encoded bytes, pairs each reply with its position in a group of commands, and decides with the
same pure steps (:mod:`mailsdk.flows.judge`) and the same outcome builders
(:mod:`mailsdk.flows._delivery`). Both are checked against each other on the same servers.

Per message, steady state: one write carries message N's content, its end and message N+1's
MAIL/RCPT/DATA (RFC 2920 §3.1); one read brings N's final reply and N+1's envelope replies.
The rules are ``deliver_many``'s (see :mod:`mailsdk.flows.deliver`): a refusal ends only its own
message (RSET, or an empty body after a 354, only where the protocol needs one); a 421 ends the
run; a reply that cannot answer its command (a 3xx to anything but DATA, a 2xx to DATA) or
arrives with no command pending breaks the run as out of step; when the run breaks, a message
whose end of data was written and got no reply is UNKNOWN, the rest FAILED, every later one
never started. A final reply is reported once the next group's replies came in step.

The runner owns I/O and deadlines: it answers :attr:`ExpressRun.want` with :meth:`offer`, writes
what :meth:`take_output` returns, feeds what it reads to :meth:`receive`, hands the outcomes of
:meth:`take_ready` on, and calls :meth:`lost` when I/O fails.
"""

from __future__ import annotations

import collections
import typing

from mailsdk.errors import (
    CommandRefused,
    ConnectionLost,
    MailError,
    RemoteProtocolError,
    ReplyError,
)
from mailsdk.esmtp import Capabilities
from mailsdk.flows._delivery import (
    Delivery,
    abandoned_outcome,
    item_outcome,
    never_sent,
    not_started,
    plan_item,
)
from mailsdk.flows._express_groups import (
    CONTENT,
    ENVELOPE,
    FINAL,
    LOCAL,
    OUTPUT_BLOCK,
    SERVICE,
    WHOLE_CONTENT,
    Group,
    Want,
    awaiting,
    by_index,
    final_outcome,
    lost_outcome,
)
from mailsdk.flows.actions import BdatChunk, BodyChunk, Phase
from mailsdk.flows.content import bdat_chunks, body_chunks
from mailsdk.flows.judge import (
    ParameterCache,
    TransactionOptions,
    judge_data,
    judge_envelope,
)
from mailsdk.flows.outcomes import DeliveryStatus, SendOutcome
from mailsdk.protocol.body import BdatEncoder, DataEncoder, encode_data
from mailsdk.protocol.reply import Reply
from mailsdk.protocol.reply_parser import ReplyParser, unsolicited_reply

__all__ = ["ExpressRun", "Want"]

_RSET: typing.Final = b"RSET\r\n"
_EMPTY_BODY: typing.Final = b".\r\n"


class ExpressRun:
    """One ``send_many`` run on a pipelining SMTP session, as bytes in and bytes out.

    Args:
        parser: the session's reply parser, lent for the run (nothing may be buffered in it
            but a 421, RFC 5321 §3.8).
        caps: the server's capabilities.
        options: the transaction policy.
        tls_active: the session is encrypted (``REQUIRETLS`` needs it).
        cache: the session's envelope parameters and commands, kept across runs.
        reset_after_refusal: RSET after every refusal the server is not closing on (after
            an empty body, and after a refused end of data too), as the single-message
            :func:`~mailsdk.flows.transaction` does; by default RSET is sent only where the
            server holds a transaction open (``deliver_many``'s rule).
    """

    def __init__(
        self,
        parser: ReplyParser,
        caps: Capabilities,
        options: TransactionOptions,
        *,
        tls_active: bool = False,
        cache: ParameterCache | None = None,
        reset_after_refusal: bool = False,
    ) -> None:
        self._parser = parser
        self._reset_always = reset_after_refusal
        self._caps = caps
        self._options = options
        self._tls_active = tls_active
        self._cache: ParameterCache = {} if cache is None else cache
        self._groups: collections.deque[Group] = collections.deque()
        self._writing: Group | None = None  # its content is still being encoded
        self._encoder: DataEncoder | BdatEncoder | None = None
        self._held: Group | None = None  # a judged final reply not reported yet (see _on_final)
        self._out: list[bytes] = []
        self._out_size = 0
        self._last_wire: tuple[bytes, bytes] | None = None  # content -> its DATA encoding
        #: Outcomes ready to hand on, in input order (:meth:`take_ready`); a final reply's
        #: group stands for its outcome until then.
        self.ready: list[SendOutcome | Group] = []
        #: What the run needs from its runner now (:class:`Want`).
        self.want = Want.ITEM
        self._exhausted = False
        #: The server said 421 (RFC 5321 §3.8): nothing more is written.
        self.closing = False
        self._closing_reply: tuple[Reply, str] | None = None
        #: The run broke (:meth:`lost`): the connection must be given up.
        self.broken: MailError | None = None
        self._why = ""  # why the items not yet started are never sent
        #: A reply was paired since the runner last cleared it (its deadline restarts).
        self.progressed = False
        self._overflow = False  # an over-long line is buffered behind complete replies

    # -- state for the runner ---------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing is owed, buffered or half-written: the conversation is in step."""
        return not self._groups and self._writing is None and not self._out

    @property
    def takes_more(self) -> bool:
        """After a write: the run wants an item, or a streamed content is still being encoded
        (:meth:`take_output` has more to give), before any reply needs reading."""
        return self._writing is not None or self.want != Want.NOTHING

    @property
    def will_want(self) -> bool:
        """The run will ask for another item (it may be pulled ahead, while replies are due)."""
        return not self._exhausted and not self.closing and self.broken is None

    @property
    def finished(self) -> bool:
        """Every item has its outcome in :attr:`ready` or has been handed on."""
        return self._exhausted and not self._groups and self._writing is None and not self._out

    def _oldest(self) -> Group | None:
        for group in self._groups:
            if group.kind != LOCAL and group.count:
                return group
        return None

    @property
    def phase(self) -> Phase | None:
        """The deadline phase of the oldest reply owed; ``None``: no reply is owed."""
        group = self._oldest()
        if group is None:
            return None
        kind = group.kind
        # The content's replies (every BDAT chunk's too) wait under the data deadline.
        if kind == FINAL or (kind == SERVICE and group.verb == "DATA.END"):
            return Phase.DATA
        return Phase.COMMAND

    @property
    def owed(self) -> str:
        """What the oldest reply owed answers, for an error ("the end-of-data reply")."""
        group = self._oldest()
        if group is None:
            return "a reply"
        phase = self.phase
        assert phase is not None
        return awaiting(group.label(len(group.replies)), phase)

    @property
    def content_pending(self) -> bool:
        """The output holds message content (a write that times out names the data)."""
        return self._writing is not None or any(g.kind == FINAL for g in self._groups)

    # -- input ------------------------------------------------------------------------------

    def offer(self, item: object) -> None:
        """Answer :attr:`want`: the next item, or ``None`` when the input is exhausted."""
        if item is None:
            self._exhausted = True
            self.want = Want.NOTHING
            return
        if type(item) is not Delivery and not isinstance(item, Delivery):
            raise TypeError(f"deliver_many pulled {type(item).__name__}, not a Delivery")
        if self.want == Want.UNPREPARED:
            self.ready.append(never_sent(item, self._why))
            return
        plan = plan_item(
            item, self._caps, self._options, tls_active=self._tls_active, cache=self._cache
        )
        if isinstance(plan, MailError):
            failed = item_outcome(item, DeliveryStatus.FAILED, error=plan)
            if self._groups or self._held is not None:
                local = Group(LOCAL, item)
                local.outcome = failed
                self._groups.append(local)
            else:
                self.ready.append(failed)
            return
        groups = self._groups
        check = not groups or (groups[0].kind == LOCAL and all(g.kind == LOCAL for g in groups))
        count = 1 + len(plan.rcpts)
        group = Group(ENVELOPE, item, count if plan.use_bdat else count + 1)
        if not plan.use_bdat:
            group.data_at = count
        group.plan = plan
        groups.append(group)  # tracked before the check: a failure leaves it FAILED
        self.want = Want.NOTHING
        if check and self._parser.holds_bytes:
            self._check_in_step()
        wire = plan.wire
        self._out.append(wire)
        self._out_size += len(wire)

    def _check_in_step(self) -> None:
        """Nothing is owed: refuse reply bytes buffered now (``unsolicited_reply``; callers
        test ``holds_bytes`` first, as it does, to spare the call per message)."""
        error = unsolicited_reply(self._parser)
        if error is not None:
            raise error

    # -- output -----------------------------------------------------------------------------

    def take_output(self) -> bytes | None:
        """The next block to write, or ``None`` when nothing is buffered.

        Raises:
            MailError: a streamed source failed while its content was encoded (the runner
                calls :meth:`lost`: a DATA transfer cannot be ended without sending the message).
        """
        if self._writing is not None:
            self._encode_content()
        if not self._out:
            return None
        block = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        return block

    def _start_content(self, group: Group) -> None:
        item, plan = group.item, group.plan
        prepared = item.prepared
        assert prepared is not None
        assert plan is not None
        group.kind = CONTENT  # tracked before the check: a failure leaves it FAILED
        self._groups.append(group)
        if len(self._groups) == 1 and self._parser.holds_bytes:
            self._check_in_step()
        if plan.use_bdat:
            group.count = 0
            group.content = bdat_chunks(prepared, self._options.chunk_size, binary=plan.binary)
            self._encoder = BdatEncoder(canonicalize=not plan.binary)
            self._writing = group
        elif prepared.stream is None and len(prepared.data) <= WHOLE_CONTENT:
            data = prepared.data
            headers = prepared.headers
            last = self._last_wire
            if headers:
                wire = encode_data(headers + data)
            elif last is not None and last[0] is data:
                wire = last[1]  # the same content again (one message, many envelopes)
            else:
                wire = encode_data(data, canonical=prepared.canonical)
                self._last_wire = (data, wire)
            self._out.append(wire)
            self._out_size += len(wire)
            group.kind = FINAL
            group.count = 1
        else:
            group.count = 0
            group.content = body_chunks(prepared)
            self._encoder = DataEncoder()
            self._writing = group

    def _encode_content(self) -> None:
        """Encode the streamed content until a block is buffered or it ends (with its end)."""
        group = self._writing
        assert group is not None
        assert group.content is not None
        encoder = self._encoder
        out = self._out
        while self._out_size < OUTPUT_BLOCK:
            piece: BodyChunk | BdatChunk | None = next(group.content, None)
            if piece is None:
                if isinstance(encoder, DataEncoder):
                    tail = encoder.finish()
                    group.kind = FINAL  # from here on a failure leaves the fate unknown
                    group.count = 1
                    out.append(tail)
                    self._out_size += len(tail)
                self._writing = None
                self._encoder = None
                group.content = None
                if group.count > 1 and isinstance(encoder, BdatEncoder):
                    # RFC 3030 §2: a refused chunk fails the transaction, which stays open on
                    # the server (the chunks behind it are discarded): its replies decide
                    # whether an RSET must come before the next MAIL (_on_final).
                    group.wait_next = True
                else:
                    self._next_envelope()
                return
            if isinstance(piece, BdatChunk):
                assert isinstance(encoder, BdatEncoder)
                command, payload = encoder.frame(piece.data, last=piece.last)
                wire = command.to_bytes() + payload
                group.count += 1
                if piece.last:
                    group.kind = FINAL
            else:
                assert isinstance(encoder, DataEncoder)
                wire = encoder.encode(piece.data, canonical=piece.canonical)
            out.append(wire)
            self._out_size += len(wire)

    def _next_envelope(self) -> None:
        if not self.closing and not self._exhausted:
            self.want = Want.ITEM

    def _service(self, group: Group, wire: bytes, verb: str, outcome: SendOutcome | None) -> None:
        """Queue an RSET (or an empty body) after a refusal; ``outcome`` (the refusal) is
        reported once it is answered (``None``: a later service command reports it)."""
        service = Group(SERVICE, group.item, 1)
        service.verb = verb
        service.outcome = outcome  # tracked before the check: a failure still reports it
        self._groups.append(service)
        if len(self._groups) == 1 and self._parser.holds_bytes:
            self._check_in_step()
        self._out.append(wire)
        self._out_size += len(wire)

    # -- replies ----------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Pair the replies in ``data`` (``b""``: the server closed the connection).

        Raises:
            MailError: the connection closed, a reply is malformed, oversized or out of step
                (the runner gives the connection up and calls :meth:`lost`).
        """
        parser = self._parser
        if data:
            if self._overflow:
                raise RemoteProtocolError("reply line too long (more data after the limit)")
            try:
                parser.feed(data)
            except RemoteProtocolError:
                # The over-long line may share the chunk with complete replies ("250 queued"
                # for a message): those are still paired, then the parser raises at the same
                # line, so the outcome never depends on how the bytes were split (as
                # ClientConnection).
                if b"\n" not in parser.buffered:
                    raise
                self._overflow = True
        if self._pair() and not data:
            # The server closed with replies owed. Complete replies buffered before the EOF
            # (a 421 left to answer the command after it, RFC 5321 §3.8) were paired first.
            if parser.buffered:
                raise RemoteProtocolError("connection closed in the middle of a reply")
            raise self._closed()

    def _pair(self) -> bool:
        """Pair the complete replies buffered; ``True``: a reply owed needs more data."""
        parser = self._parser
        groups = self._groups
        while groups:
            group = groups[0]
            if group.kind == LOCAL:
                groups.popleft()
                self._release()
                assert group.outcome is not None
                self.ready.append(group.outcome)
                continue
            if group.kind == CONTENT:
                return False  # its content is still being written: the runner reads after it
            reply = parser.next_reply()
            if reply is None:
                return True
            self.progressed = True
            code = reply.code
            replies = group.replies
            replies.append(reply)
            position = len(replies) - 1
            if code == 421 and not self.closing:
                self.closing = True
                self._closing_reply = (reply, group.label(position))
            # RFC 5321 §4.3.2: only DATA gets a 3xx (354), and DATA never a 2xx. Anything else
            # means the replies are out of step with the commands (ClientConnection._pair).
            if 300 <= code < 400:
                if position != group.data_at:
                    label = group.label(position)
                    what = "the end of the data" if label == "DATA.END" else label
                    raise RemoteProtocolError(
                        f"{code} cannot answer {what}: the server's replies are out of "
                        "step with the commands (a reply is missing)",
                        reply_missing=True,
                    )
            elif position == group.data_at and 200 <= code < 300:
                raise RemoteProtocolError(
                    f"{code} cannot answer DATA: the server's replies are out of step (one "
                    "reply too many)"
                )
            if position != group.count - 1:
                continue
            groups.popleft()
            if self._held is not None:
                self._release()
            kind = group.kind
            if kind == ENVELOPE:
                self._on_envelope(group)
            elif kind == FINAL:
                self._on_final(group)
            elif group.outcome is not None:  # SERVICE
                self.ready.append(group.outcome)
            if self.closing:
                self._abandon()
                return False
            if self._out or self.want:
                # What comes next answers commands not written yet: the runner writes first
                # (bytes left buffered are checked when the next command is queued).
                return False
        return False

    def _release(self) -> None:
        """The replies after the held final reply came in step: report it."""
        if self._held is not None:
            self.ready.append(self._held)
            self._held = None

    def _on_envelope(self, group: Group) -> None:
        item, plan = group.item, group.plan
        assert plan is not None
        prepared = item.prepared
        assert prepared is not None
        replies = group.replies
        data_reply = None if plan.use_bdat else replies.pop()
        verdict = judge_envelope(prepared.envelope, replies)
        refusal: ReplyError | None = verdict.error
        if refusal is None and data_reply is not None and data_reply.code != 354:
            refusal = judge_data(data_reply)
        if refusal is not None:
            outcome = item_outcome(item, DeliveryStatus.REFUSED, error=refusal)
            if self.closing:
                self.ready.append(outcome)
            elif data_reply is not None and data_reply.code == 354:
                # RFC 2920 §3.1: DATA was accepted after the envelope was refused: end it with
                # an empty body; the end of data closes the transaction.
                reset = self._reset_always
                self._service(group, _EMPTY_BODY, "DATA.END", None if reset else outcome)
                if reset:
                    self._service(group, _RSET, "RSET", outcome)
                self._next_envelope()
            elif verdict.open_transaction or self._reset_always:
                self._service(group, _RSET, "RSET", outcome)
                self._next_envelope()
            else:
                self.ready.append(outcome)
                self._next_envelope()
            return
        if self.closing:  # a 421 elsewhere in the group: nothing more may be written
            closing = ConnectionLost("not sent: the server is closing the connection (421)")
            self.ready.append(not_started(item, closing))
            return
        group.verdict = verdict
        group.replies = []
        self._start_content(group)
        if self._writing is None:
            self._next_envelope()

    def _on_final(self, group: Group) -> None:
        if group.wait_next:  # BDAT chunks: the next envelope waited for these replies
            outcome = final_outcome(group)
            if self.closing:
                self.ready.append(outcome)
                return
            failed = any(not reply.is_positive for reply in group.replies[:-1])
            if failed or (self._reset_always and outcome.status is DeliveryStatus.REFUSED):
                self._service(group, _RSET, "RSET", outcome)
            else:
                self.ready.append(outcome)
            self._next_envelope()
            return
        if self._reset_always and not self.closing:
            outcome = final_outcome(group)
            if outcome.status is DeliveryStatus.REFUSED:
                self._service(group, _RSET, "RSET", outcome)
                return
            self.ready.append(outcome)
            return
        # The outcome is built when the runner takes it (after its next write: that work is
        # then done while the server works on what was written).
        if self._groups and not self.closing:
            # Reported once the next replies arrive in step: a server that sent one reply
            # too few would otherwise have the next MAIL's 250 "confirm" this message.
            self._held = group
        else:
            self.ready.append(group)

    def take_ready(self) -> list[SendOutcome]:
        """The outcomes decided so far, in input order (and forget them)."""
        ready = self.ready
        self.ready = []
        return [
            entry if isinstance(entry, SendOutcome) else final_outcome(entry) for entry in ready
        ]

    # -- the end of a run -------------------------------------------------------------------

    def _closed(self) -> MailError:
        """The error for an EOF with replies owed (a 421 seen before it is the news)."""
        waiting = self.owed.removeprefix("the reply to ")
        if self._closing_reply is None:
            return ConnectionLost(f"the server closed the connection while waiting for {waiting}")
        reply, label = self._closing_reply
        return CommandRefused(
            reply,
            label,
            f"the server is closing the connection ({reply}); no reply came for {waiting}",
        )

    def _abandon(self) -> None:
        """After a 421: the groups still owed a reply will get none."""
        self._release()
        for group in self._groups:
            if group.kind == SERVICE and group.outcome is None:
                continue  # the item's refusal is reported by the service command after it
            if group.outcome is not None:  # LOCAL, SERVICE
                self.ready.append(group.outcome)
                continue
            self.ready.append(abandoned_outcome(group.item, final=group.kind == FINAL))
        self._groups.clear()
        self._out.clear()
        self._out_size = 0
        self._drain("the server closed the connection (421)")

    def _drain(self, why: str) -> None:
        self._why = why
        self.want = Want.NOTHING if self._exhausted else Want.UNPREPARED

    def lost(self, cause: MailError) -> None:
        """The connection broke (the runner has given it up): report every message in flight,
        then account for every later one as never started."""
        self.broken = cause
        groups = list(self._groups)
        if self._writing is not None and self._writing not in groups:
            groups.append(self._writing)
        held = self._held
        if held is not None:
            if isinstance(cause, RemoteProtocolError) and cause.reply_missing:
                # A reply the server owed never came, right after this message's: its "reply"
                # may have been meant for a later command. Its end was written: fate unknown.
                groups.append(Group(FINAL, held.item))
            else:
                self.ready.append(held)
        self._held = None
        self._groups.clear()
        self._writing = None
        self._encoder = None
        self._out.clear()
        self._out_size = 0
        for group in sorted(groups, key=by_index):
            outcome = lost_outcome(group, cause)
            if outcome is not None:
                self.ready.append(outcome)
        self._drain(f"the connection was lost ({cause})")
