"""What crosses the broker: encoded items (explicit envelope, Bcc stripped) and JSON outcomes."""

from __future__ import annotations

import email.message
import io
import json

import pytest

from mailsdk import DeliveryStatus, EnhancedStatus, MailOptions, Outgoing, Reply, SendOutcome
from mailsdk.errors import ConnectionLost, DeliveryUnknown, InvalidInputError, RecipientsRefused
from mailsdk.flows import SendResult
from mailsdk.integrations._deliver import is_retryable
from mailsdk.integrations._wire import decode_item, encode_item, outcome_from_json, outcome_to_json


def _message() -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["From"] = "Alice <alice@client.test>"
    msg["To"] = "bob@example.test"
    msg["Bcc"] = "hidden@example.test"
    msg["Message-ID"] = "<m1@client.test>"
    msg.set_content("hi")
    return msg


def test_an_email_message_travels_with_its_envelope_and_without_bcc() -> None:
    payload = encode_item(Outgoing(_message()))
    json.dumps(payload)  # JSON-safe
    item = decode_item(payload)
    assert item.sender == "alice@client.test"
    assert item.recipients == ("bob@example.test", "hidden@example.test")
    assert item.key == "<m1@client.test>"
    assert b"hidden@example.test" not in item.data
    assert item.data.endswith(b"hi\r\n")


def test_raw_bytes_derive_the_missing_envelope_from_headers() -> None:
    raw = b"From: a@client.test\r\nTo: b@example.test\r\nMessage-ID: <r@x>\r\n\r\nbody\r\n"
    item = decode_item(encode_item(Outgoing(raw, key="k-1")))
    assert (item.sender, item.recipients, item.key) == ("a@client.test", ("b@example.test",), "k-1")
    assert item.data == raw


@pytest.mark.parametrize(
    "outgoing",
    [
        Outgoing(io.BytesIO(b"x"), key="k"),
        Outgoing(b"From: a@x\r\nTo: b@x\r\n\r\n"),  # no key, no Message-ID
        Outgoing(
            b"Message-ID: <a@x>\r\n\r\n",
            sender="a@x",
            recipients=["b@x"],
            mail_options=MailOptions(),
        ),
    ],
)
def test_what_cannot_travel_is_refused_before_publishing(outgoing: Outgoing) -> None:
    with pytest.raises(InvalidInputError):
        encode_item(outgoing)


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"data": "!!notbase64", "sender": "a", "recipients": [], "key": "k"},
        {"data": "", "sender": 3, "recipients": [], "key": "k"},
        {"data": "", "sender": "a", "recipients": "b@x", "key": "k"},
        {"data": "", "sender": "a", "recipients": [], "key": ""},
    ],
)
def test_malformed_payloads_are_typed_errors(payload: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        decode_item(payload)


def test_outcomes_as_json_carry_replies_codes_and_queue_id() -> None:
    reply = Reply(250, [b"2.0.0 Ok: queued as ABC123"], EnhancedStatus(2, 0, 0))
    result = SendResult(
        sender="a@x",
        accepted=("b@x",),
        refused={"c@x": Reply(550, [b"5.1.1 no such user"], EnhancedStatus(5, 1, 1))},
        reply=reply,
        size=10,
    )
    doc = outcome_to_json(
        SendOutcome(index=3, status=DeliveryStatus.PARTIAL, result=result, key="k")
    )
    assert json.loads(json.dumps(doc)) == doc
    assert doc["status"] == "partial" and doc["queue_id"] == "ABC123"
    assert doc["reply"] == {"code": 250, "enhanced": "2.0.0", "text": "2.0.0 Ok: queued as ABC123"}
    assert doc["refused"]["c@x"]["enhanced"] == "5.1.1"


def test_retryable_results() -> None:
    unknown = SendOutcome(
        index=0, status=DeliveryStatus.UNKNOWN, error=DeliveryUnknown("no reply"), key="k"
    )
    refusal = RecipientsRefused({"b@x": Reply(450, [b"4.2.0 busy"])})
    refused = outcome_to_json(
        SendOutcome(index=1, status=DeliveryStatus.REFUSED, error=refusal, key="k")
    )
    assert refused["status"] == "refused" and refused["transient"] is True
    assert is_retryable(refused)
    assert not is_retryable(outcome_to_json(unknown))  # UNKNOWN is never retried
    assert is_retryable({"status": "deferred"})
    assert not is_retryable({"status": "failed", "retryable": False})


def test_json_results_come_back_as_outcomes() -> None:
    result = SendResult(
        sender="a@x",
        accepted=("b@x",),
        refused={"c@x": Reply(550, (b"5.1.1 no such user",), EnhancedStatus(5, 1, 1))},
        reply=Reply(250, (b"2.0.0 Ok: queued as ABC123",), EnhancedStatus(2, 0, 0)),
        size=10,
    )
    sent = SendOutcome(index=3, status=DeliveryStatus.PARTIAL, result=result, key="k")
    back = outcome_from_json(json.loads(json.dumps(outcome_to_json(sent))), sender="a@x")
    assert (back.index, back.status, back.key) == (3, DeliveryStatus.PARTIAL, "k")
    assert back.result is not None and back.result.queue_id == "ABC123"
    assert back.result.accepted == ("b@x",) and back.result.refused["c@x"].code == 550
    refused = outcome_from_json(
        outcome_to_json(
            SendOutcome(
                index=0,
                status=DeliveryStatus.REFUSED,
                error=RecipientsRefused({"b@x": Reply(450, [b"4.2.0 busy"])}),
            )
        )
    )
    assert refused.status is DeliveryStatus.REFUSED and refused.result is None
    assert refused.error is not None and "busy" in str(refused.error)
    deferred = outcome_from_json({"index": 1, "key": "d", "status": "deferred", "reason": "x"})
    assert deferred.status is DeliveryStatus.FAILED and "not sent: x" in str(deferred.error)
    assert deferred.never_started and deferred.attempts == 0
    for holder in ("claimed", "sending"):  # another live worker has it: maybe sent, not unsent
        held = {"index": 1, "key": "d", "status": "deferred", "reason": "x", "holder": holder}
        assert outcome_from_json(held).status is DeliveryStatus.UNKNOWN
        assert not outcome_from_json(held).never_started
    duplicate = outcome_from_json(
        {"index": 2, "key": "e", "status": "accepted", "duplicate": True, "attempts": 1}
    )
    assert duplicate.status is DeliveryStatus.ACCEPTED and duplicate.attempts == 0
    lost = outcome_from_json({"index": 4, "key": "f", "status": "lost", "error": None})
    assert lost.status is DeliveryStatus.UNKNOWN  # nothing says it was not sent


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_raw_bytes_whose_envelope_comes_from_the_headers_travel_without_bcc(eol: bytes) -> None:
    # The Bcc addresses join the envelope, so the header must not reach every recipient.
    raw = eol.join(
        [
            b"From: a@client.test",
            b"To: b@example.test",
            b"Bcc: hidden@example.test,",
            b"\tother@example.test",
            b"Resent-Bcc: x@example.test",
            b"Message-ID: <r@x>",
            b"",
            b"Bcc: this line is body text",
            b"",
        ]
    )
    item = decode_item(encode_item(Outgoing(raw)))
    assert item.recipients == ("b@example.test", "hidden@example.test", "other@example.test")
    assert b"hidden@" not in item.data
    assert b"other@" not in item.data
    assert b"x@example.test" not in item.data
    head, _sep, body = item.data.partition(eol + eol)
    assert head == eol.join([b"From: a@client.test", b"To: b@example.test", b"Message-ID: <r@x>"])
    assert body == b"Bcc: this line is body text" + eol


def test_raw_bytes_with_an_explicit_envelope_are_sent_as_given() -> None:
    raw = b"From: a@client.test\r\nBcc: kept@example.test\r\nMessage-ID: <r@x>\r\n\r\nbody\r\n"
    item = decode_item(encode_item(Outgoing(raw, sender="a@client.test", recipients=["b@x.test"])))
    assert item.data == raw


def test_the_never_started_marker_travels_typed_never_by_text() -> None:
    unsent = SendOutcome(
        index=5,
        status=DeliveryStatus.FAILED,
        error=ConnectionLost("the server closed the connection"),
        attempts=0,
        never_started=True,
    )
    back = outcome_from_json(json.loads(json.dumps(outcome_to_json(unsent))))
    assert back.never_started and back.status is DeliveryStatus.FAILED and back.attempts == 0
    assert isinstance(back.error, ConnectionLost)
    # A message that merely says "not sent" in its error text is not marked.
    worded = SendOutcome(
        index=6, status=DeliveryStatus.FAILED, error=ConnectionLost("not sent: reset")
    )
    assert not outcome_from_json(outcome_to_json(worded)).never_started
