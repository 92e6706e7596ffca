"""The retry classification table (mailsdk.protocol.retry) and its predicates on replies/errors."""

from __future__ import annotations

import pickle

import pytest

from mailsdk import errors
from mailsdk.protocol.reply import Reply
from mailsdk.protocol.retry import RetryAdvice, classify_reply

A = RetryAdvice


@pytest.mark.parametrize(
    ("code", "text", "advice", "reconnect"),
    [
        (250, "2.0.0 ok", A.NONE, False),
        (354, "go ahead", A.NONE, False),
        (550, "5.1.1 user unknown", A.NEVER, False),
        (554, "4.4.1 contradiction: the basic code wins", A.NEVER, False),
        (552, "5.3.4 too many recipients", A.NEVER, False),
        (600, "weird", A.NEVER, False),
        (450, "4.2.2 mailbox full", A.LATER, False),
        (452, "4.3.1 insufficient system storage", A.LATER, False),
        (451, "local error in processing", A.LATER, False),
        (421, "service not available", A.LATER, True),
        (451, "4.4.1 no answer from host", A.LATER, True),
        (421, "4.7.0 too many connections from your IP", A.SLOW_DOWN, True),
        (451, "4.7.1 greylisted, try again later", A.SLOW_DOWN, False),
        (450, "4.7.1 rate limited", A.SLOW_DOWN, False),
        (432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", A.SLOW_DOWN, False),
        (452, "4.3.2 concurrency limit", A.SLOW_DOWN, False),
        (451, "4.4.5 system congestion", A.SLOW_DOWN, True),
        (452, "too many messages this hour", A.SLOW_DOWN, False),
        (452, "4.5.3 too many recipients", A.SPLIT, False),
        (452, "Too many recipients received this transaction", A.SPLIT, False),
    ],
)
def test_table(code: int, text: str, advice: RetryAdvice, reconnect: bool) -> None:
    reply = Reply.build(code, text)
    verdict = reply.verdict
    assert verdict.advice is advice, verdict.reason
    assert verdict.reconnect is reconnect
    assert reply.is_retryable is (advice in (A.LATER, A.SLOW_DOWN, A.SPLIT))
    assert verdict.throttled is (advice is A.SLOW_DOWN)


def test_table_without_enhanced_status() -> None:
    assert classify_reply(451).advice is A.LATER
    assert classify_reply(550).advice is A.NEVER
    assert classify_reply(451, (4, 7, 1)).throttled


def test_reply_errors_follow_the_table() -> None:
    assert errors.DataRefused(Reply.build(451, "4.3.0 try later"), "DATA").is_retryable
    assert not errors.DataRefused(Reply.build(554, "5.6.0 rejected"), "DATA").is_retryable
    assert errors.SenderRefused(Reply.build(451, "4.7.1 slow down"), "a@x.test").is_retryable
    refused = {"a@x.test": Reply.build(550, "5.1.1 no"), "b@x.test": Reply.build(450, "4.2.2 full")}
    assert errors.RecipientsRefused(refused).is_retryable
    assert not errors.RecipientsRefused({"a@x.test": Reply.build(550, "5.1.1 no")}).is_retryable


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (errors.ConnectError("refused"), True),
        (errors.ConnectTimeout("slow", phase="connect"), True),
        (errors.ConnectionLost("reset"), True),
        (errors.ReadTimeout("silent", phase="command"), True),
        (errors.WriteTimeout("stuck", phase="data"), True),
        (errors.PoolTimeout("busy", phase="checkout"), True),
        (errors.DeliveryUnknown("no reply after the dot"), False),
        (errors.TLSError("bad certificate"), False),
        (errors.InvalidInputError("CR in header"), False),
        (errors.ConfigurationError("bad"), False),
        (errors.CapabilityError("no SMTPUTF8", extension="SMTPUTF8"), False),
        (errors.AuthError("no mechanism"), False),
        (errors.RemoteProtocolError("garbage"), False),
        (errors.LocalProtocolError("misuse"), False),
    ],
)
def test_transport_and_local_errors(error: errors.MailError, retryable: bool) -> None:
    assert error.is_retryable is retryable
    assert pickle.loads(pickle.dumps(error)).is_retryable is retryable
