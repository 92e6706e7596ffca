"""ClientConnection: the sans-IO SMTP/LMTP client, pairing every reply with its command.

Layer: L1 (sans-IO protocol core). May import L0 (``mailsdk.errors``), the other
``mailsdk.protocol`` modules and attrs; must never import socket, ssl, asyncio, selectors,
threading, time, logging, opentelemetry or msal.

Theory of operation
-------------------
A :class:`ClientConnection` is a bookkeeper, not a client: it owns no socket, no clock and no
policy. The driver (or a test) moves bytes; the connection says what they mean.

*Sending.* ``send(command)`` checks in the table of :mod:`mailsdk.protocol.state` that the
command is legal in the current state, appends it to the queue of commands awaiting a reply,
moves the state *optimistically* (as if the command will succeed) and returns the exact bytes to
write. Calling ``send`` several times before reading is a PIPELINING group (RFC 2920): MAIL, the
RCPTs and DATA go out in one write. ``send_body``/``end_body`` produce the DATA body (canonical
CRLF, dot-stuffed, SMTP-smuggling safe, see :mod:`mailsdk.protocol.body`) and ``end_body``
queues the :class:`EndOfData` pseudo-command that receives the final reply. Because
``end_body`` leaves the state at ``READY`` optimistically, the next transaction's MAIL, RCPT and
DATA may be queued right behind the body, in the same write (RFC 2920 §3.1: "message content
... can be pipelined"), so a high-latency link needs one round trip per message.

*Receiving.* ``receive_data(data)`` only buffers (``b""`` means EOF). ``next_event()`` parses at
most one reply (bounded: :class:`ReplyLimits`) and pairs it with the oldest queued command,
returning :class:`GreetingReceived`, :class:`CommandReplied` or :class:`ConnectionClosed`, or
:data:`NEED_DATA` when it needs more bytes. A reply that arrives when nothing is queued is a
:class:`~mailsdk.errors.RemoteProtocolError`: replies can never fall out of step with commands.
For the same reason ``send``/``end_body``/``send_bdat`` refuse to queue a command while nothing
is pending and reply bytes are already buffered: they arrived before the command was written
(only an asynchronous ``421``, RFC 5321 §3.8, is left to answer the next command).
Each reply may *correct* the optimistic state: MAIL refused -> ``READY``; DATA answered with
anything but 354 -> ``READY``; a failed BDAT chunk -> ``READY``. Corrections for MAIL, RCPT, DATA
and BDAT only apply to the newest transaction, so late replies of a pipelined earlier
transaction never rewind a newer one.

*LMTP.* With ``Dialect.LMTP`` the reply after the body (``end_body`` or ``BDAT ... LAST``) comes
once per *accepted* RCPT of the transaction, in RCPT order (RFC 2033 §4.2). Each is reported as
``CommandReplied(command, reply, recipient=address)`` where ``command`` is ``EndOfData()`` (DATA)
or the final :class:`Bdat` (CHUNKING). The count is fixed when the first of those replies is
paired; all RCPT replies precede it on the wire. ``CommandReplied.final`` is true on a
command's last reply only, so a driver never has to guess when an LMTP run ends.

*Tags and closing.* ``send``/``end_body``/``send_bdat`` take an opaque ``tag`` that comes back
on the command's :class:`CommandReplied` (drivers attach their telemetry observer); ``outstanding``
lists the tags still owed a reply (to fail them when the connection breaks). Any ``421`` reply
(RFC 5321 §3.8: the server "is closing the transmission channel") sets :attr:`closing`, whatever
command it answered: replies still owed after it will never come.

*STARTTLS.* After the 220 to STARTTLS the state is ``TLS_READY``. Any byte already buffered or
received before ``tls_started()`` is a :class:`~mailsdk.errors.RemoteProtocolError`: it was sent
in plaintext and would otherwise be read as if protected (the STARTTLS command-injection attack,
RFC 3207 §4.2, CVE-2011-0411 family). ``tls_started()`` discards all pre-TLS state and requires a
new EHLO (RFC 3207 §4.2: "the client MUST discard any knowledge obtained from the server").

*AUTH.* ``Auth`` moves to ``AUTH``; a 334 moves to ``AUTH_CHALLENGE`` where only
:class:`AuthResponse` is legal; the final 2xx/4xx/5xx returns to ``READY``. AUTH is legal only
outside a mail transaction (RFC 4954 §4).

*Closing and EOF.* ``Quit`` moves to ``CLOSING``; its 221 is paired as usual and the EOF that
follows yields :class:`ConnectionClosed`. EOF at any other time also yields
:class:`ConnectionClosed` (``pending`` tells the driver whether replies were still owed, i.e.
whether to report :class:`~mailsdk.errors.ConnectionLost`). EOF in the middle of a reply
(partial, unparsed bytes) raises :class:`~mailsdk.errors.RemoteProtocolError`: a truncated reply
is malformed. After :class:`ConnectionClosed`, ``next_event`` keeps returning it.

*Errors.* ``send`` refuses an illegal command with :class:`~mailsdk.errors.LocalProtocolError`
and changes nothing (no byte was produced). Any exception from ``receive_data`` or
``next_event`` moves the connection to ``ERROR``, as does ``send_failed()``; from then on every
call raises :class:`~mailsdk.errors.LocalProtocolError`. Decisions (what to do about a 550)
belong to the flows, not here.

Wire example (PIPELINING with one refused RCPT)::

    C: MAIL FROM:<a@x>  RCPT TO:<b@y>  RCPT TO:<c@y>  DATA      (one write)
    S: 250 / 550 / 250 / 354                                   (four CommandReplied events)
"""

from __future__ import annotations

import collections
import typing

import attrs

from mailsdk.errors import LocalProtocolError, RemoteProtocolError
from mailsdk.protocol.body import BdatEncoder, DataEncoder
from mailsdk.protocol.commands import (
    Command,
    Data,
    EndOfData,
    MailFrom,
    Noop,
    Quit,
    Raw,
    RcptTo,
    Rset,
)
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.events import (
    NEED_DATA,
    CommandReplied,
    ConnectionClosed,
    Event,
    GreetingReceived,
    NeedData,
)
from mailsdk.protocol.reply import Reply
from mailsdk.protocol.reply_parser import ReplyLimits, ReplyParser, unsolicited_reply
from mailsdk.protocol.state import (
    REPLY_TRANSITIONS,
    SEND_TRANSITIONS,
    TRANSACTION_TRIGGERS,
    ClientState,
    Outcome,
    Trigger,
    outcome_of,
    state_after_reply,
    state_after_send,
    trigger_of,
)

__all__ = ["DEFAULT_LIMITS", "ClientConnection"]

#: The default reply limits (8 KiB lines, 16,384 lines, 1 MiB per reply).
DEFAULT_LIMITS: typing.Final = ReplyLimits()


def _no_names() -> list[str]:
    return []


@attrs.define
class _Transaction:
    """Bookkeeping for one MAIL transaction (for LMTP reply counting and stale corrections)."""

    accepted: list[str] = attrs.Factory(_no_names)
    failed_chunk: bool = False


@attrs.define
class _Pending:
    """A queued command awaiting its reply (``command`` is None for the greeting)."""

    command: Command | None
    trigger: Trigger
    txn: _Transaction | None
    recipients: list[str] | None = None
    replied: int = 0
    tag: object = None


#: Commands a 3xx can never answer (RFC 5321 §4.3.2).
_NEVER_INTERMEDIATE: typing.Final = frozenset(
    {
        Trigger.HELLO,
        Trigger.MAIL,
        Trigger.RCPT,
        Trigger.END_OF_DATA,
        Trigger.BDAT,
        Trigger.BDAT_LAST,
        Trigger.RSET,
    }
)


#: Commands whose trigger depends on nothing but their type (the rest: ``trigger_of``). Sending
#: MAIL/RCPT/DATA is the bulk path: a dict lookup instead of a ``match`` per command.
_FIXED_TRIGGERS: typing.Final[dict[type, Trigger]] = {
    MailFrom: Trigger.MAIL,
    RcptTo: Trigger.RCPT,
    Data: Trigger.DATA,
    Rset: Trigger.RSET,
    Noop: Trigger.SIMPLE,
    Quit: Trigger.QUIT,
}
#: Triggers whose replies ``outcome_of`` must classify (a 3xx go-ahead, STARTTLS's 220); any
#: other reply is positive exactly when it is 2xx.
_SPECIAL_OUTCOMES: typing.Final = frozenset(
    {Trigger.DATA, Trigger.AUTH, Trigger.AUTH_RESPONSE, Trigger.STARTTLS}
)
_LMTP_FINAL: typing.Final = frozenset({Trigger.END_OF_DATA, Trigger.BDAT_LAST})
_END_OF_DATA: typing.Final = EndOfData()  # immutable: one for every end of data


def _verb_of(entry: _Pending) -> str:
    command = entry.command
    if command is None or isinstance(command, Raw):
        return "the command"
    return "the end of the data" if isinstance(command, EndOfData) else command.verb


class ClientConnection:
    """The sans-IO client side of an SMTP or LMTP session (see the module's theory of operation).

    Args:
        dialect: ``Dialect.SMTP`` (default) or ``Dialect.LMTP``.
        limits: reply size limits for the parser.

    Wire::

        S: 220 mx.example ESMTP        -> next_event(): GreetingReceived
        C: EHLO me.example             <- send(Ehlo("me.example"))
        S: 250 mx.example              -> next_event(): CommandReplied(Ehlo(...), Reply(250...))
    """

    def __init__(self, *, dialect: Dialect = Dialect.SMTP, limits: ReplyLimits = DEFAULT_LIMITS):
        self._dialect = dialect
        self._per_recipient = dialect.replies_per_recipient
        self._parser = ReplyParser(limits)
        self._state = ClientState.CONNECTED
        self._queue: collections.deque[_Pending] = collections.deque(
            [_Pending(None, Trigger.GREETING, None)]
        )
        self._txn: _Transaction | None = None
        self._data_encoder: DataEncoder | None = None
        self._bdat_encoder: BdatEncoder | None = None
        self._eof = False
        self._overflow = False  # an over-long line is buffered behind complete replies
        self._closing = False

    # -- introspection --------------------------------------------------------------------------

    @property
    def dialect(self) -> Dialect:
        """SMTP or LMTP (LMTP: one end-of-data reply per accepted recipient)."""
        return self._dialect

    @dialect.setter
    def dialect(self, value: Dialect) -> None:
        self._dialect = value
        self._per_recipient = value.replies_per_recipient

    @property
    def state(self) -> ClientState:
        """The current (optimistic) state."""
        return self._state

    @property
    def pending(self) -> int:
        """Replies still owed: queued commands (and the greeting, before it arrives)."""
        return len(self._queue)

    @property
    def closing(self) -> bool:
        """True once the server answered ``421``: it is closing the channel (RFC 5321 §3.8)."""
        return self._closing

    @property
    def outstanding(self) -> tuple[object, ...]:
        """The tags of the commands still owed a reply, oldest first (the greeting's is None)."""
        return tuple(p.tag for p in self._queue)

    @property
    def oldest_tag(self) -> object:
        """The tag of the command whose reply comes next (``None`` if nothing is queued)."""
        return self._queue[0].tag if self._queue else None

    @property
    def enhanced_status_codes(self) -> bool:
        """Whether replies are parsed for RFC 3463 codes unconditionally (set after EHLO)."""
        return self._parser.parse_enhanced

    @enhanced_status_codes.setter
    def enhanced_status_codes(self, value: bool) -> None:
        self._parser.parse_enhanced = value

    @property
    def accepted_recipients(self) -> tuple[str, ...]:
        """Recipients of the newest transaction whose RCPT got a 2xx so far."""
        return tuple(self._txn.accepted) if self._txn is not None else ()

    @property
    def trailing_data(self) -> bytes:
        """Received bytes not yet turned into events."""
        return self._parser.buffered

    # -- sending --------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._state is ClientState.ERROR:
            raise LocalProtocolError("the connection is in the ERROR state and cannot be used")

    def _check_in_step(self) -> None:
        """Refuse to queue a command while unsolicited reply bytes are buffered.

        With nothing pending, every buffered byte arrived *before* the command about to be
        queued was written, so it cannot be its reply; pairing it anyway would put every later
        reply out of step (a premature ``250`` after ``354`` would "accept" a message the server
        never saw). RFC 5321 §3.8 allows one exception: a ``421`` sent "asynchronously from
        command receipt (on the assumption that the client will receive it after the next
        command is issued)", which is left to answer the next command.

        Raises:
            RemoteProtocolError: unsolicited bytes are buffered (the connection moves to
                ``ERROR``).
        """
        if self._queue:
            return
        error = unsolicited_reply(self._parser)
        if error is not None:
            self._state = ClientState.ERROR
            raise error

    def send(self, command: Command, tag: object = None) -> bytes:
        """Queue ``command`` for its reply and return its wire bytes.

        Args:
            command: any command except :class:`EndOfData` (use :meth:`end_body`). A
                :class:`Bdat` sent this way carries no payload: write exactly ``size`` bytes
                after it yourself, or use :meth:`send_bdat`.
            tag: returned on the command's reply event(s) (``CommandReplied.tag``).

        Returns:
            The bytes to write (the command line with CRLF).

        Raises:
            LocalProtocolError: the command is illegal in the current state (nothing changes).
            RemoteProtocolError: reply bytes the server sent before this command are buffered
                (see :meth:`_check_in_step`).
        """
        state = self._state
        if state is ClientState.ERROR:  # _check_usable, inlined on the hot path
            self._check_usable()
        trigger = _FIXED_TRIGGERS.get(type(command)) or trigger_of(command, self._dialect)
        new_state = SEND_TRANSITIONS[state].get(trigger)
        if new_state is None:
            # A raw line's first word may be a SASL payload: never put it in an error message.
            verb = "a raw command" if isinstance(command, Raw) else command.verb
            new_state = state_after_send(state, trigger, verb)  # raises LocalProtocolError
        data = command.to_bytes()  # before any bookkeeping: a failure must change nothing
        if not self._queue:
            self._check_in_step()
        if trigger is Trigger.MAIL:
            self._txn = _Transaction()
            self._bdat_encoder = None
        elif trigger in (Trigger.RSET, Trigger.BDAT_LAST):
            self._bdat_encoder = None
        txn = self._txn if trigger in TRANSACTION_TRIGGERS or trigger is Trigger.BDAT_LAST else None
        self._queue.append(_Pending(command, trigger, txn, tag=tag))
        self._state = new_state
        return data

    def send_body(self, chunk: bytes, *, canonical: bool = False) -> bytes:
        """Encode the next piece of the DATA body (only after DATA got 354).

        Args:
            chunk: raw message bytes, any size; split anywhere.
            canonical: the caller knows ``chunk``'s line endings are all CRLF already.

        Returns:
            The canonical, dot-stuffed wire bytes for this chunk.

        Raises:
            LocalProtocolError: not in the ``BODY`` state.
        """
        if self._state is ClientState.ERROR:  # _check_usable, inlined on the hot path
            self._check_usable()
        if self._state is not ClientState.BODY or self._data_encoder is None:
            raise LocalProtocolError(f"cannot send body data in state {self._state.name}")
        return self._data_encoder.encode(chunk, canonical=canonical)

    def end_body(self, tag: object = None) -> bytes:
        """Finish the DATA body and queue :class:`EndOfData` for the final reply(ies).

        Args:
            tag: returned on the end-of-data reply event(s).

        Returns:
            The remaining bytes including the ``.\\r\\n`` terminator.

        Raises:
            LocalProtocolError: not in the ``BODY`` state.
            RemoteProtocolError: the server already sent a reply the body cannot have caused.
        """
        if self._state is ClientState.ERROR:  # _check_usable, inlined on the hot path
            self._check_usable()
        new_state = state_after_send(self._state, Trigger.END_OF_DATA, "end of data")
        assert self._data_encoder is not None
        if not self._queue:  # _check_in_step's own test, inlined on the hot path
            self._check_in_step()
        tail = self._data_encoder.finish()
        self._data_encoder = None
        self._queue.append(_Pending(_END_OF_DATA, Trigger.END_OF_DATA, self._txn, tag=tag))
        self._state = new_state
        return tail

    def send_bdat(
        self, chunk: bytes, *, last: bool, canonicalize: bool = True, tag: object = None
    ) -> bytes:
        """Frame one BDAT chunk (RFC 3030): header line plus payload; queues the :class:`Bdat`.

        Args:
            chunk: raw message bytes for this chunk.
            last: mark the final chunk (``BDAT n LAST``).
            canonicalize: convert bare CR/LF to CRLF (carried across chunks); pass ``False``
                for ``BODY=BINARYMIME`` content.
            tag: returned on the chunk's reply event(s).

        Returns:
            ``b"BDAT n[ LAST]\\r\\n"`` followed by the ``n`` payload bytes.

        Raises:
            LocalProtocolError: BDAT is illegal in the current state.
            RemoteProtocolError: unsolicited reply bytes are buffered.
        """
        self._check_usable()
        trigger = Trigger.BDAT_LAST if last else Trigger.BDAT
        new_state = state_after_send(self._state, trigger, "BDAT")
        self._check_in_step()
        if self._bdat_encoder is None:
            self._bdat_encoder = BdatEncoder(canonicalize=canonicalize)
        command, payload = self._bdat_encoder.frame(chunk, last=last)
        if last:
            self._bdat_encoder = None
        self._queue.append(_Pending(command, trigger, self._txn, tag=tag))
        self._state = new_state
        return command.to_bytes() + payload

    def lend_parser(self) -> ReplyParser:
        """Lend the reply parser to a run that pairs replies itself (``flows.ExpressRun``):
        only an idle ``READY`` session can. Until :meth:`parser_returned` the caller owns the
        conversation; the state stays ``READY`` (its transactions end before it returns).

        Raises:
            LocalProtocolError: the session is not idle.
        """
        self._check_usable()
        if self._state is not ClientState.READY or self._queue or self._closing or self._eof:
            raise LocalProtocolError(f"cannot lend the reply parser in state {self._state.name}")
        return self._parser

    def parser_returned(self, *, closing: bool) -> None:
        """The run that borrowed the parser ended; ``closing``: the server said 421."""
        if closing:
            self._closing = True

    def send_failed(self) -> None:
        """Tell the connection that writing failed: it moves to ``ERROR`` for good."""
        self._state = ClientState.ERROR

    def tls_started(self) -> None:
        """Report that the TLS handshake after STARTTLS's 220 completed.

        All pre-TLS knowledge is discarded and the state becomes ``GREETED``: EHLO is required
        again (RFC 3207 §4.2).

        Raises:
            LocalProtocolError: not in the ``TLS_READY`` state.
        """
        self._check_usable()
        if self._state is not ClientState.TLS_READY:
            raise LocalProtocolError(f"tls_started() called in state {self._state.name}")
        self._parser.clear()
        self._parser.parse_enhanced = False
        self._queue.clear()
        self._txn = None
        self._state = ClientState.GREETED

    # -- receiving ------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes received from the server; ``b""`` signals EOF.

        Args:
            data: the received bytes.

        Raises:
            RemoteProtocolError: bytes after STARTTLS's 220 (injection) or an over-long line
                (raised by :meth:`next_event` instead when complete replies precede it in the
                buffer: they are returned first).
            LocalProtocolError: the connection is in ``ERROR``, or data follows EOF.
        """
        if self._state is ClientState.ERROR:  # _check_usable, inlined on the hot path
            self._check_usable()
        try:
            if self._eof:
                if data:
                    raise LocalProtocolError("received data after EOF")
                return
            if not data:
                self._eof = True
                return
            if self._state is ClientState.TLS_READY:
                raise RemoteProtocolError(
                    "server sent data after 220 to STARTTLS (STARTTLS injection, RFC 3207 §4.2)"
                )
            if self._overflow:
                raise RemoteProtocolError("reply line too long (more data after the limit)")
            try:
                self._parser.feed(data)
            except RemoteProtocolError:
                # The over-long line may share the chunk with complete replies ("250 queued"
                # for a message): those still come out of next_event(), which then raises
                # (the parser stops at the same line), so the outcome never depends on how
                # the bytes were split. Any further data is refused: the buffer stays bounded.
                if b"\n" not in self._parser.buffered:
                    raise
                self._overflow = True
        except BaseException:
            self._state = ClientState.ERROR
            raise

    def next_event(self) -> Event | NeedData:
        """Return the next event, or :data:`NEED_DATA`.

        Returns:
            :class:`GreetingReceived`, :class:`CommandReplied`, :class:`ConnectionClosed` or
            :data:`NEED_DATA`.

        Raises:
            RemoteProtocolError: a malformed/oversized/unsolicited reply, STARTTLS injection,
                or EOF in the middle of a reply.
            LocalProtocolError: the connection is in ``ERROR``.
        """
        if self._state is ClientState.ERROR:  # _check_usable, inlined on the hot path
            self._check_usable()
        try:
            if self._state is ClientState.CLOSED:
                return ConnectionClosed()
            reply = self._parser.next_reply()
            if reply is None:
                if not self._eof:
                    return NEED_DATA
                if self._parser.buffered:
                    raise RemoteProtocolError("connection closed in the middle of a reply")
                self._state = ClientState.CLOSED
                return ConnectionClosed()
            if not self._queue:
                raise RemoteProtocolError(
                    f"unexpected reply with no command pending: {reply.code} {reply.text[:80]!r}"
                )
            return self._pair(self._queue[0], reply)
        except BaseException:
            self._state = ClientState.ERROR
            raise

    def _pair(self, entry: _Pending, reply: Reply) -> Event:
        trigger = entry.trigger
        code = reply.code
        if trigger in _SPECIAL_OUTCOMES:
            outcome = outcome_of(trigger, code)
        else:
            outcome = Outcome.POSITIVE if 200 <= code < 300 else Outcome.NEGATIVE
        if code == 421:
            self._closing = True
        if 300 <= code < 400 and trigger in _NEVER_INTERMEDIATE:
            # RFC 5321 §4.3.2: only DATA (354) and AUTH (334) get a 3xx. Anything else means
            # the replies are out of step with the commands (a server that sent one reply too
            # few or too many): pairing on would attribute a reply to the wrong message.
            raise RemoteProtocolError(
                f"{code} cannot answer {_verb_of(entry)}: the server's replies are out of "
                "step with the commands (a reply is missing)",
                reply_missing=True,
            )
        if trigger is Trigger.DATA and 200 <= code < 300:
            # RFC 5321 §4.3.2: DATA is answered 354 (go ahead) or refused, never 2xx.
            raise RemoteProtocolError(
                f"{code} cannot answer DATA: the server's replies are out of step (one "
                "reply too many)"
            )
        if entry.command is None:  # the greeting
            self._queue.popleft()
            self._state = state_after_reply(self._state, trigger, outcome)
            return GreetingReceived(reply)
        recipient: str | None = None
        final = True
        if self._per_recipient and trigger in _LMTP_FINAL:
            # RFC 2033 §4.2: one reply per RCPT that succeeded, in RCPT order.
            if entry.recipients is None:
                # After a failed BDAT chunk (or with no accepted RCPT) one reply is expected.
                txn = entry.txn
                failed = txn is None or txn.failed_chunk
                entry.recipients = [] if failed or txn is None else list(txn.accepted)
            if entry.recipients:
                recipient = entry.recipients[entry.replied]
            entry.replied += 1
            final = entry.replied >= max(1, len(entry.recipients))
            if final:
                self._queue.popleft()
        else:
            self._queue.popleft()
        txn = entry.txn
        if txn is not None:
            if trigger is Trigger.RCPT and outcome is Outcome.POSITIVE:
                txn.accepted.append(entry.command.recipient)  # type: ignore[union-attr]
            elif trigger is Trigger.BDAT and outcome is Outcome.NEGATIVE:
                txn.failed_chunk = True
        rule = REPLY_TRANSITIONS.get((trigger, outcome))  # state_after_reply, inlined
        if rule is not None and (txn is self._txn or trigger not in TRANSACTION_TRIGGERS):
            sources, target = rule
            if self._state in sources:
                self._state = target
                if target is ClientState.BODY:
                    self._data_encoder = DataEncoder()
                elif target is ClientState.TLS_READY and self._parser.buffered:
                    # RFC 3207 §4.2: bytes sent before the handshake must not be trusted.
                    raise RemoteProtocolError(
                        "server sent data after 220 to STARTTLS (STARTTLS injection, RFC 3207 §4.2)"
                    )
        return CommandReplied(entry.command, reply, recipient, final, entry.tag)
