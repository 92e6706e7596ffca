"""JSON-safe forms of what crosses a process boundary: outgoing items, outcomes, message keys.

Layer: L7 (integrations, shared helpers). Imports ``mailsdk.flows`` and L0 only; no framework.

Task arguments and results travel through a broker and a result backend as JSON, so messages
become base64 text with an explicit envelope (derived here, once, on the producer side: the
worker never guesses), and outcomes become plain dicts. Nothing secret is ever part of either:
credentials live in the worker's configuration, never in a task.
"""

from __future__ import annotations

import base64
import binascii
import email.message
import email.parser
import email.policy
import typing
from collections.abc import Mapping

from mailsdk.errors import (
    ConnectionLost,
    DeliveryUnknown,
    InvalidInputError,
    MailError,
    ReplyError,
)
from mailsdk.flows import DeliveryStatus, Outgoing, SendOutcome, SendResult
from mailsdk.flows.envelope import prepare_message
from mailsdk.protocol.reply import Reply

__all__ = [
    "JsonDict",
    "WireItem",
    "decode_item",
    "encode_item",
    "message_key",
    "outcome_from_json",
    "outcome_to_json",
]

#: A JSON object as produced by :func:`outcome_to_json` (str keys, JSON values).
JsonDict: typing.TypeAlias = dict[str, typing.Any]


class WireItem(typing.NamedTuple):
    """An outgoing message ready for a task: bytes plus its full envelope and ledger key."""

    data: bytes
    sender: str
    recipients: tuple[str, ...]
    key: str


def _headers_of(data: bytes) -> email.message.Message:
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    return parser.parsebytes(data)


_BLIND: typing.Final = (b"bcc", b"resent-bcc")


def _without_blind_copies(data: bytes) -> bytes:
    """``data`` with its ``Bcc``/``Resent-Bcc`` fields (and their folded lines) removed from the
    header section; every other byte is kept as given. Line ends may be CRLF or bare LF."""
    lines = data.splitlines(keepends=True)
    kept: list[bytes] = []
    dropping = False
    for index, line in enumerate(lines):
        if not line.strip(b"\r\n"):  # the empty line: the body follows, untouched
            return b"".join(kept) + b"".join(lines[index:])
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() in _BLIND
        if not dropping:
            kept.append(line)
    return b"".join(kept)


def message_key(item: Outgoing) -> str:
    """The ledger key of ``item``: its ``Outgoing.key``, else the message's Message-ID.

    Raises:
        InvalidInputError: the item has neither (a ledger cannot tell two sends apart then).
    """
    if item.key:
        return item.key
    message = item.message
    msg_id: str | None = None
    if isinstance(message, email.message.Message):
        value = message.get("Message-ID")
        msg_id = str(value) if value is not None else None
    elif isinstance(message, bytes | str):
        raw = message.encode("utf-8", "surrogateescape") if isinstance(message, str) else message
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        value = _headers_of(head + b"\r\n\r\n").get("Message-ID")
        msg_id = str(value) if value is not None else None
    if not msg_id or not msg_id.strip():
        raise InvalidInputError("a ledger needs Outgoing.key or a Message-ID header to key by")
    return msg_id.strip()


def encode_item(item: Outgoing) -> JsonDict:
    """Turn ``item`` into a JSON-safe task argument (message as base64, explicit envelope).

    Only ``bytes``, ``str`` and ``email.message.Message`` messages can travel; the envelope is
    derived here when the item does not give it (Bcc is stripped from the bytes).

    Raises:
        InvalidInputError: a streamed message source, or no envelope or key can be derived.
    """
    message = item.message
    recipients = list(item.recipients) if item.recipients is not None else None
    if isinstance(message, email.message.Message):
        prepared = prepare_message(message, sender=item.sender, recipients=recipients)
        data, sender = prepared.data, prepared.envelope.sender
        rcpts = prepared.envelope.recipients
    elif isinstance(message, bytes | str):
        data = message.encode("utf-8") if isinstance(message, str) else message
        if item.sender is None or recipients is None:
            parsed = email.message_from_bytes(data, policy=email.policy.default)
            derived = prepare_message(parsed, sender=item.sender, recipients=recipients)
            sender, rcpts = derived.envelope.sender, derived.envelope.recipients
            # The envelope came from the headers, Bcc included: like a Message, the blind
            # copies must not be sent in the headers every recipient reads.
            data = _without_blind_copies(data)
        else:
            sender, rcpts = item.sender, tuple(recipients)
    else:
        raise InvalidInputError(
            "only bytes, str and email.message.Message messages can be sent through a task "
            "(read streamed sources into bytes first)"
        )
    if item.mail_options is not None or item.rcpt_options is not None:
        raise InvalidInputError("per-item MAIL/RCPT options cannot travel through a task yet")
    return {
        "data": base64.b64encode(data).decode("ascii"),
        "sender": sender,
        "recipients": list(rcpts),
        "key": message_key(item),
    }


def decode_item(payload: Mapping[str, typing.Any]) -> WireItem:
    """Inverse of :func:`encode_item`, validating every field.

    Raises:
        InvalidInputError: a malformed payload (never a bare ``KeyError``/``TypeError``).
    """
    try:
        data = base64.b64decode(str(payload["data"]), validate=True)
        sender = payload["sender"]
        recipients = payload["recipients"]
        key = payload["key"]
    except (KeyError, TypeError, binascii.Error) as exc:
        raise InvalidInputError(f"malformed task item: {type(exc).__name__}") from None
    if not isinstance(sender, str) or not isinstance(key, str) or not key:
        raise InvalidInputError("malformed task item: sender and key must be strings")
    if not isinstance(recipients, list):
        raise InvalidInputError("malformed task item: recipients must be a list of strings")
    names = typing.cast("list[object]", recipients)  # decoded JSON: checked just below
    if not all(isinstance(r, str) for r in names):
        raise InvalidInputError("malformed task item: recipients must be a list of strings")
    return WireItem(data, sender, tuple(typing.cast("list[str]", names)), key)


def _reply_json(reply: Reply | None) -> JsonDict | None:
    if reply is None:
        return None
    return {
        "code": reply.code,
        "enhanced": str(reply.enhanced) if reply.enhanced is not None else None,
        "text": reply.text,
    }


def outcome_to_json(outcome: SendOutcome) -> JsonDict:
    """A JSON-safe summary of ``outcome``: status, replies, enhanced codes, queue id, error.

    The error is its type name and message only (mailsdk errors never carry secrets).
    """
    result = outcome.result
    error = outcome.error
    reply = result.reply if result is not None else None
    if reply is None and isinstance(error, ReplyError):
        reply = error.reply
    return {
        "index": outcome.index,
        "key": outcome.key,
        "status": outcome.status.value,
        "attempts": outcome.attempts,
        "never_started": outcome.never_started,
        "reply": _reply_json(reply),
        "queue_id": result.queue_id if result is not None else None,
        "accepted": list(result.accepted) if result is not None else [],
        "refused": {r: _reply_json(rep) for r, rep in result.refused.items()}
        if result is not None
        else {},
        "error": {"type": type(error).__name__, "message": str(error)} if error else None,
        "transient": bool(error.is_transient) if isinstance(error, ReplyError) else None,
    }


def _reply_from(value: object) -> Reply | None:
    if not isinstance(value, Mapping):
        return None
    fields = typing.cast("Mapping[str, typing.Any]", value)
    code, text = fields.get("code"), fields.get("text")
    if not isinstance(code, int):
        return None
    return Reply.build(code, *(str(text).split("\n") if text else ()))


def _error_from(
    status: DeliveryStatus, value: object, reply: Reply | None, *, never_started: bool = False
) -> MailError:
    fields = typing.cast("Mapping[str, typing.Any]", value if isinstance(value, Mapping) else {})
    message = str(fields.get("message") or fields.get("type") or status.value)
    kind = str(fields.get("type") or "")
    if status is DeliveryStatus.UNKNOWN:
        return DeliveryUnknown(message)
    if reply is not None and status is DeliveryStatus.REFUSED:
        return ReplyError(reply, message=message)
    if kind:
        message = f"{kind}: {message}" if not message.startswith(kind) else message
    return ConnectionLost(message) if never_started else MailError(message)


_STATUS = {s.value: s for s in DeliveryStatus}
_DEFERRED: typing.Final = "deferred"  # the worker's status for an item it never started


def outcome_from_json(result: Mapping[str, typing.Any], *, sender: str = "") -> SendOutcome:
    """The :class:`SendOutcome` a JSON result (:func:`outcome_to_json` plus the worker's fields)
    stands for: status, the final reply, accepted and refused recipients, the error.

    A ``deferred`` item becomes FAILED (UNKNOWN when another live worker held it), a
    ``lost`` one UNKNOWN (its task vanished and nothing says it was not sent); a duplicate the
    ledger refused to resend keeps the ledger's status with ``attempts`` 0 (nothing was sent
    this time).
    """
    raw = str(result.get("status"))
    status = _STATUS.get(raw)
    if status is None:
        # "lost": its task vanished; deferred while another live worker held it (sending it,
        # or about to): both may be at the server, so neither is reported as never sent.
        maybe_sent = raw == "lost" or bool(result.get("holder"))
        status = DeliveryStatus.UNKNOWN if maybe_sent else DeliveryStatus.FAILED
    reply = _reply_from(result.get("reply"))
    index = int(result.get("index", 0))
    key = result.get("key")
    key = str(key) if key is not None else None
    attempts = 0 if result.get("duplicate") else max(1, int(result.get("attempts") or 1))
    sent_result = None
    if status.delivered and reply is not None:
        given = typing.cast("Mapping[str, object]", result.get("refused") or {})
        refused: dict[str, Reply] = {}
        for rcpt, value in given.items():
            reply_of = _reply_from(value)
            if reply_of is not None:
                refused[str(rcpt)] = reply_of
        accepted = tuple(str(a) for a in result.get("accepted") or ())
        sent_result = SendResult(
            sender=sender,
            accepted=accepted,
            refused=refused,
            reply=reply,
            recipient_replies={**dict.fromkeys(accepted, reply), **refused},
            size=0,
        )
    # Deferred: the worker never started it; otherwise the sender's own typed marker says so.
    never_started = status is DeliveryStatus.FAILED and (
        raw == _DEFERRED or result.get("never_started") is True
    )
    error = None
    if status is not DeliveryStatus.ACCEPTED:
        note = result.get("reason")
        if note and status is DeliveryStatus.FAILED:
            note = f"not sent: {note}"
        reason = result.get("error") or ({"message": note} if note else None)
        if reason is not None or status is not DeliveryStatus.PARTIAL:
            error = _error_from(status, reason, reply, never_started=never_started)
    return SendOutcome(
        index=index,
        status=status,
        result=sent_result,
        error=error,
        key=key,
        attempts=0 if never_started else attempts,
        never_started=never_started,
    )
