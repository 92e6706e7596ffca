"""The client state machine as data: which command is legal when, and what replies change.

Layer: L1 (sans-IO protocol core). May import L0 (``mailsdk.errors``),
``mailsdk.protocol.commands`` and ``mailsdk.protocol.dialect``; must never import socket, ssl,
asyncio, selectors, threading, time, logging, opentelemetry or msal.

Rule 1 (after h11's ``_state.py``): *everything about transitions lives in this file.* The
connection looks states up here and never decides a transition itself.

Rule 2: the tables describe the *sent* state. With PIPELINING (RFC 2920) the client sends
commands before their replies arrive, so the state moves optimistically when a command is
sent (``SEND_TRANSITIONS``) and is corrected when a reply says the optimism was wrong
(``REPLY_TRANSITIONS``): MAIL refused -> READY, DATA not 354 -> READY, a failed BDAT -> READY.
A correction only applies while the state is still one the command could have led to, and
(for transaction commands) only if the reply belongs to the newest transaction, so a late reply
from an earlier, pipelined transaction can never rewind a newer one.

The states (SMTP and LMTP share them; :class:`~mailsdk.protocol.dialect.Dialect` only changes
which hello verb is legal)::

    CONNECTED --greeting--> GREETED --EHLO/HELO/LHLO--> HELLO_SENT --2xx--> READY
    READY --MAIL--> MAIL --RCPT--> RCPT --DATA--> DATA_SENT --354--> BODY --end_body--> READY
                               RCPT --BDAT--> BDAT --BDAT LAST--> READY
    READY --AUTH--> AUTH --334--> AUTH_CHALLENGE --response--> AUTH --2xx/4xx/5xx--> READY
    READY --STARTTLS--> STARTTLS_SENT --220--> TLS_READY --tls_started()--> GREETED
    any idle state --QUIT--> CLOSING --EOF--> CLOSED;   any error --> ERROR (sticky)
"""

from __future__ import annotations

import enum
import typing

from mailsdk.errors import LocalProtocolError
from mailsdk.protocol.commands import (
    Auth,
    AuthResponse,
    Bdat,
    Command,
    Data,
    Ehlo,
    EndOfData,
    Expn,
    Helo,
    Help,
    Lhlo,
    MailFrom,
    Noop,
    Quit,
    Raw,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
)
from mailsdk.protocol.dialect import Dialect

__all__ = [
    "REPLY_TRANSITIONS",
    "SEND_TRANSITIONS",
    "TRANSACTION_TRIGGERS",
    "ClientState",
    "Outcome",
    "Trigger",
    "outcome_of",
    "state_after_reply",
    "state_after_send",
    "trigger_of",
]


class ClientState(enum.Enum):
    """Where the client is in the session (the optimistic *sent* state)."""

    # Members are singletons compared by identity: hash them the same way, in C. (Enum's own
    # __hash__ hashes the name in Python, and the state table looks these up on every reply.)
    __hash__ = object.__hash__

    #: Connected, waiting for the greeting. Only QUIT may be queued.
    CONNECTED = "CONNECTED"
    #: Greeting received (or TLS just started): EHLO/HELO (LHLO in LMTP) is needed.
    GREETED = "GREETED"
    #: EHLO/HELO/LHLO sent, waiting for its reply.
    HELLO_SENT = "HELLO_SENT"
    #: Session open, no transaction: MAIL, AUTH, STARTTLS, QUIT and simple commands are legal.
    READY = "READY"
    #: AUTH (or a SASL response) sent, waiting for 334 or the final reply.
    AUTH = "AUTH"
    #: A 334 challenge arrived: only an :class:`AuthResponse` is legal.
    AUTH_CHALLENGE = "AUTH_CHALLENGE"
    #: STARTTLS sent, waiting for 220.
    STARTTLS_SENT = "STARTTLS_SENT"
    #: STARTTLS got 220: the driver must run the TLS handshake and call ``tls_started()``.
    TLS_READY = "TLS_READY"
    #: MAIL sent, no RCPT yet.
    MAIL = "MAIL"
    #: At least one RCPT sent: more RCPTs, DATA or BDAT are legal.
    RCPT = "RCPT"
    #: DATA sent, waiting for 354.
    DATA_SENT = "DATA_SENT"
    #: 354 received: the body is being sent (``send_body``/``end_body``).
    BODY = "BODY"
    #: Non-final BDAT chunks sent (RFC 3030).
    BDAT = "BDAT"
    #: QUIT sent: waiting for 221 and EOF.
    CLOSING = "CLOSING"
    #: The server closed the connection.
    CLOSED = "CLOSED"
    #: Something went wrong; the connection can never be used again.
    ERROR = "ERROR"


class Trigger(enum.Enum):
    """What a command means to the state machine."""

    # Members are singletons compared by identity: hash them the same way, in C. (Enum's own
    # __hash__ hashes the name in Python, and the state table looks these up on every reply.)
    __hash__ = object.__hash__

    GREETING = "GREETING"  # pseudo: the greeting is "queued" when the connection starts
    HELLO = "HELLO"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    END_OF_DATA = "END_OF_DATA"
    BDAT = "BDAT"
    BDAT_LAST = "BDAT_LAST"
    RSET = "RSET"
    SIMPLE = "SIMPLE"  # NOOP, VRFY, EXPN, HELP, Raw: no state change
    AUTH = "AUTH"
    AUTH_RESPONSE = "AUTH_RESPONSE"
    STARTTLS = "STARTTLS"
    QUIT = "QUIT"


class Outcome(enum.Enum):
    """How a reply answered its command."""

    # Members are singletons compared by identity: hash them the same way, in C. (Enum's own
    # __hash__ hashes the name in Python, and the state table looks these up on every reply.)
    __hash__ = object.__hash__

    POSITIVE = "POSITIVE"  # 2xx (for STARTTLS: 220)
    GO_AHEAD = "GO_AHEAD"  # 354 to DATA, 334 to AUTH
    NEGATIVE = "NEGATIVE"  # everything else


_S = ClientState
_T = Trigger

_IDLE_COMMANDS: typing.Final = {_T.RSET: _S.READY, _T.SIMPLE: _S.READY, _T.QUIT: _S.CLOSING}

#: (state, trigger) -> state after *sending*. A missing entry means "illegal now".
#: RFC 5321 §4.1.4: NOOP, HELP, EXPN, VRFY and RSET may be used at any time in a session;
#: MAIL needs a prior EHLO/HELO; RFC 4954 §4: AUTH is not permitted during a mail transaction;
#: RFC 2920 §3.1: EHLO, DATA, STARTTLS, AUTH, QUIT... end a pipelined group (nothing after them
#: until their reply). RFC 3030 §2: only BDAT, RSET and QUIT may follow a non-final BDAT.
SEND_TRANSITIONS: typing.Final[dict[ClientState, dict[Trigger, ClientState]]] = {
    _S.CONNECTED: {_T.QUIT: _S.CLOSING},
    _S.GREETED: {
        _T.HELLO: _S.HELLO_SENT,
        _T.RSET: _S.GREETED,
        _T.SIMPLE: _S.GREETED,
        _T.QUIT: _S.CLOSING,
    },
    _S.HELLO_SENT: {},
    _S.READY: {
        **_IDLE_COMMANDS,
        _T.HELLO: _S.HELLO_SENT,
        _T.MAIL: _S.MAIL,
        _T.AUTH: _S.AUTH,
        _T.STARTTLS: _S.STARTTLS_SENT,
    },
    _S.AUTH: {},
    _S.AUTH_CHALLENGE: {_T.AUTH_RESPONSE: _S.AUTH},
    _S.STARTTLS_SENT: {},
    _S.TLS_READY: {},
    _S.MAIL: {**_IDLE_COMMANDS, _T.SIMPLE: _S.MAIL, _T.RCPT: _S.RCPT},
    _S.RCPT: {
        **_IDLE_COMMANDS,
        _T.SIMPLE: _S.RCPT,
        _T.RCPT: _S.RCPT,
        _T.DATA: _S.DATA_SENT,
        _T.BDAT: _S.BDAT,
        _T.BDAT_LAST: _S.READY,
    },
    _S.DATA_SENT: {},
    # end_body() is optimistic: the next transaction may be pipelined right behind the body.
    _S.BODY: {_T.END_OF_DATA: _S.READY},
    _S.BDAT: {_T.BDAT: _S.BDAT, _T.BDAT_LAST: _S.READY, _T.RSET: _S.READY, _T.QUIT: _S.CLOSING},
    _S.CLOSING: {},
    _S.CLOSED: {},
    _S.ERROR: {},
}

#: (trigger, outcome) -> (states the correction applies in, new state). Missing: no change.
REPLY_TRANSITIONS: typing.Final[
    dict[tuple[Trigger, Outcome], tuple[frozenset[ClientState], ClientState]]
] = {
    (_T.GREETING, Outcome.POSITIVE): (frozenset({_S.CONNECTED}), _S.GREETED),
    (_T.GREETING, Outcome.NEGATIVE): (frozenset({_S.CONNECTED}), _S.GREETED),
    (_T.HELLO, Outcome.POSITIVE): (frozenset({_S.HELLO_SENT}), _S.READY),
    (_T.HELLO, Outcome.NEGATIVE): (frozenset({_S.HELLO_SENT}), _S.GREETED),
    (_T.AUTH, Outcome.GO_AHEAD): (frozenset({_S.AUTH}), _S.AUTH_CHALLENGE),
    (_T.AUTH, Outcome.POSITIVE): (frozenset({_S.AUTH}), _S.READY),
    (_T.AUTH, Outcome.NEGATIVE): (frozenset({_S.AUTH}), _S.READY),
    (_T.AUTH_RESPONSE, Outcome.GO_AHEAD): (frozenset({_S.AUTH}), _S.AUTH_CHALLENGE),
    (_T.AUTH_RESPONSE, Outcome.POSITIVE): (frozenset({_S.AUTH}), _S.READY),
    (_T.AUTH_RESPONSE, Outcome.NEGATIVE): (frozenset({_S.AUTH}), _S.READY),
    # RFC 3207 §4.2: after 220 the client MUST start the handshake; anything else: no TLS.
    (_T.STARTTLS, Outcome.POSITIVE): (frozenset({_S.STARTTLS_SENT}), _S.TLS_READY),
    (_T.STARTTLS, Outcome.NEGATIVE): (frozenset({_S.STARTTLS_SENT}), _S.READY),
    # MAIL refused: the pipelined RCPTs will fail; no DATA/BDAT may be sent for it.
    (_T.MAIL, Outcome.NEGATIVE): (frozenset({_S.MAIL, _S.RCPT}), _S.READY),
    # RFC 5321 §4.1.1.4: only 354 lets the body follow.
    (_T.DATA, Outcome.GO_AHEAD): (frozenset({_S.DATA_SENT}), _S.BODY),
    (_T.DATA, Outcome.POSITIVE): (frozenset({_S.DATA_SENT}), _S.READY),
    (_T.DATA, Outcome.NEGATIVE): (frozenset({_S.DATA_SENT}), _S.READY),
    # RFC 3030 §2: after a failed chunk the client MUST NOT send further BDAT segments.
    (_T.BDAT, Outcome.NEGATIVE): (frozenset({_S.BDAT}), _S.READY),
}

#: Triggers whose reply corrections apply only to the newest transaction.
TRANSACTION_TRIGGERS: typing.Final = frozenset({_T.MAIL, _T.RCPT, _T.DATA, _T.BDAT})

_GO_AHEAD_CODES: typing.Final = {_T.DATA: 354, _T.AUTH: 334, _T.AUTH_RESPONSE: 334}


def trigger_of(command: Command, dialect: Dialect) -> Trigger:
    """Classify a command for the state machine.

    Args:
        command: the command about to be sent.
        dialect: SMTP or LMTP (decides which hello verb is legal).

    Returns:
        The :class:`Trigger`.

    Raises:
        LocalProtocolError: the command cannot be sent with ``send()`` (``EndOfData``), or the
            hello verb does not belong to the dialect (EHLO/HELO in LMTP, LHLO in SMTP).
    """
    match command:
        case Ehlo() | Helo() | Lhlo():
            if command.verb not in dialect.hello_verbs:
                raise LocalProtocolError(f"{command.verb} is not valid in {dialect.name}")
            return Trigger.HELLO
        case MailFrom():
            return Trigger.MAIL
        case RcptTo():
            return Trigger.RCPT
        case Data():
            return Trigger.DATA
        case Bdat():
            return Trigger.BDAT_LAST if command.last else Trigger.BDAT
        case Rset():
            return Trigger.RSET
        case Noop() | Vrfy() | Expn() | Help() | Raw():
            return Trigger.SIMPLE
        case Auth():
            return Trigger.AUTH
        case AuthResponse():
            return Trigger.AUTH_RESPONSE
        case StartTls():
            return Trigger.STARTTLS
        case Quit():
            return Trigger.QUIT
        case EndOfData():
            raise LocalProtocolError("EndOfData is not sent with send(): use end_body()")
        case _:  # pragma: no cover - defensive for untyped callers
            raise LocalProtocolError(f"not a command: {command!r}")


def outcome_of(trigger: Trigger, code: int) -> Outcome:
    """Classify a reply code for ``trigger``.

    Args:
        trigger: what the reply answers.
        code: the three-digit reply code.

    Returns:
        ``GO_AHEAD`` for 354 to DATA and 334 to AUTH, ``POSITIVE`` for 2xx (220 to STARTTLS),
        otherwise ``NEGATIVE``.
    """
    go = _GO_AHEAD_CODES.get(trigger)
    if go is not None and code == go:
        return Outcome.GO_AHEAD
    if trigger is Trigger.STARTTLS:
        return Outcome.POSITIVE if code == 220 else Outcome.NEGATIVE
    return Outcome.POSITIVE if 200 <= code < 300 else Outcome.NEGATIVE


def state_after_send(state: ClientState, trigger: Trigger, verb: str) -> ClientState:
    """Return the state after sending a command, refusing it when illegal.

    Args:
        state: the current state.
        trigger: the command's trigger.
        verb: the command verb (for the error message).

    Returns:
        The new (optimistic) state.

    Raises:
        LocalProtocolError: the command is not legal in ``state``.
    """
    new = SEND_TRANSITIONS[state].get(trigger)
    if new is None:
        raise LocalProtocolError(f"cannot send {verb} in state {state.name}")
    return new


def state_after_reply(state: ClientState, trigger: Trigger, outcome: Outcome) -> ClientState:
    """Return the state after a reply to a command with ``trigger``.

    Args:
        state: the current state.
        trigger: what the reply answers.
        outcome: how it answered.

    Returns:
        The corrected state (``state`` itself when no correction applies).
    """
    rule = REPLY_TRANSITIONS.get((trigger, outcome))
    if rule is None:
        return state
    sources, target = rule
    return target if state in sources else state
