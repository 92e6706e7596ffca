"""RetryPolicy and plan_retry: what is resent, to whom, when; UNKNOWN never unless asked."""

from __future__ import annotations

import attrs
import pytest

from mailsdk import errors
from mailsdk.batch import RetryPolicy, plan_retry
from mailsdk.flows import DeliveryStatus, SendOutcome, SendResult
from mailsdk.protocol.reply import Reply

OK = Reply.build(250, "2.0.0 queued as Q1")
FULL = Reply.build(452, "4.2.2 mailbox full")
UNKNOWN_USER = Reply.build(550, "5.1.1 unknown")
TOO_MANY = Reply.build(452, "4.5.3 too many recipients")
POLICY = RetryPolicy(attempts=3, backoff=1.0, multiplier=2.0, jitter=0.0, max_elapsed=100.0)


def result(accepted: tuple[str, ...], refused: dict[str, Reply]) -> SendResult:
    return SendResult(sender="s@x.test", accepted=accepted, refused=refused, reply=OK, size=10)


def outcome(status: DeliveryStatus, **kw: object) -> SendOutcome:
    return SendOutcome(index=0, status=status, **kw)  # type: ignore[arg-type]


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(backoff=1.0, multiplier=3.0, max_delay=5.0, jitter=0.0)
    assert [policy.delay(n) for n in (1, 2, 3)] == [1.0, 3.0, 5.0]
    jittered = RetryPolicy(backoff=2.0, jitter=0.5)
    assert jittered.delay(1, lambda: 0.0) == 2.0
    assert jittered.delay(1, lambda: 0.999) == pytest.approx(1.001)


@pytest.mark.parametrize("kw", [{"attempts": 0}, {"backoff": -1.0}, {"jitter": float("nan")}])
def test_bad_policies_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kw)  # type: ignore[arg-type]


def test_accepted_is_final() -> None:
    assert not plan_retry(POLICY, outcome(DeliveryStatus.ACCEPTED), tries=1, elapsed=0).retry


def test_failed_transport_error_is_retried_whole() -> None:
    lost = outcome(DeliveryStatus.FAILED, error=errors.ConnectionLost("reset"))
    decision = plan_retry(POLICY, lost, tries=1, elapsed=0)
    assert decision.retry and decision.recipients is None and decision.delay == 1.0
    assert plan_retry(POLICY, lost, tries=2, elapsed=0).delay == 2.0
    assert not plan_retry(POLICY, lost, tries=3, elapsed=0).retry  # attempts used up
    assert not plan_retry(POLICY, lost, tries=1, elapsed=99.5).retry  # max elapsed
    assert not plan_retry(POLICY, lost, tries=1, elapsed=0, replayable=False).retry


def test_unknown_is_never_resent_unless_asked() -> None:
    unknown = outcome(DeliveryStatus.UNKNOWN, error=errors.DeliveryUnknown("no reply"))
    assert not plan_retry(POLICY, unknown, tries=1, elapsed=0).retry
    opted = RetryPolicy(resend_unknown=True, jitter=0.0)
    assert plan_retry(opted, unknown, tries=1, elapsed=0).retry


def test_permanent_refusals_are_final() -> None:
    refused = outcome(
        DeliveryStatus.REFUSED, error=errors.DataRefused(Reply.build(554, "5.6.0 no"), "DATA")
    )
    assert not plan_retry(POLICY, refused, tries=1, elapsed=0).retry
    everyone = errors.RecipientsRefused({"a@x.test": UNKNOWN_USER})
    assert not plan_retry(
        POLICY, outcome(DeliveryStatus.REFUSED, error=everyone), tries=1, elapsed=0
    ).retry


def test_only_4xx_recipients_are_retried() -> None:
    partial = outcome(
        DeliveryStatus.PARTIAL,
        result=result(("ok@x.test",), {"full@x.test": FULL, "gone@x.test": UNKNOWN_USER}),
    )
    decision = plan_retry(POLICY, partial, tries=1, elapsed=0)
    assert decision.retry and decision.recipients == ("full@x.test",)
    everyone = errors.RecipientsRefused({"full@x.test": FULL, "gone@x.test": UNKNOWN_USER})
    decision = plan_retry(
        POLICY, outcome(DeliveryStatus.REFUSED, error=everyone), tries=1, elapsed=0
    )
    assert decision.recipients == ("full@x.test",)


def test_sender_4xx_retries_the_whole_message() -> None:
    busy = errors.SenderRefused(Reply.build(451, "4.3.0 try later"), "s@x.test")
    decision = plan_retry(POLICY, outcome(DeliveryStatus.REFUSED, error=busy), tries=1, elapsed=0)
    assert decision.retry and decision.recipients is None


def test_too_many_recipients_splits_at_once_without_using_attempts() -> None:
    split = outcome(
        DeliveryStatus.PARTIAL,
        result=result(("a@x.test", "b@x.test"), {"c@x.test": TOO_MANY, "d@x.test": TOO_MANY}),
    )
    decision = plan_retry(POLICY, split, tries=3, elapsed=0)
    assert decision.retry and decision.recipients == ("c@x.test", "d@x.test")
    assert decision.delay == 0.0 and not decision.counts


def test_throttling_penalises_and_backs_off() -> None:
    throttled = errors.SenderRefused(Reply.build(421, "4.7.0 too many connections"), "s@x.test")
    policy = RetryPolicy(throttle_delay=7.0, jitter=0.0)
    decision = plan_retry(
        policy, outcome(DeliveryStatus.REFUSED, error=throttled), tries=1, elapsed=0
    )
    assert decision.retry and decision.throttle == 7.0 and decision.delay >= 7.0
    assert decision.reconnect
    final = plan_retry(
        RetryPolicy.never(), outcome(DeliveryStatus.REFUSED, error=throttled), tries=1, elapsed=0
    )
    assert not final.retry and final.throttle == 5.0  # still slows the pool down


def test_failed_after_a_protocol_violation_is_retried() -> None:
    broken = outcome(DeliveryStatus.FAILED, error=errors.RemoteProtocolError("bad reply line"))
    assert plan_retry(POLICY, broken, tries=1, elapsed=0).retry
    local = outcome(DeliveryStatus.FAILED, error=errors.InvalidInputError("CR in a header"))
    assert not plan_retry(POLICY, local, tries=1, elapsed=0).retry


def test_never_started() -> None:
    from mailsdk.batch import never_started

    unsent = outcome(DeliveryStatus.FAILED, error=errors.ConnectionLost("stopped"))
    assert never_started(attrs.evolve(unsent, never_started=True))
    assert not never_started(unsent)  # the marker, never the text, says so
    text_only = outcome(DeliveryStatus.FAILED, error=errors.ConnectionLost("not sent: stopped"))
    assert not never_started(text_only)
    lookalike = errors.DeliveryUnknown("not sent: no")
    assert not never_started(outcome(DeliveryStatus.UNKNOWN, error=lookalike))


@pytest.mark.parametrize(
    "kw",
    [
        {"attempts": "3"},
        {"attempts": 2.5},
        {"backoff": "1"},
        {"max_elapsed": float("nan")},  # would silently mean "no limit"
        {"max_elapsed": -1.0},
        {"throttle_delay": float("inf")},
    ],
)
def test_policy_values_of_the_wrong_kind_are_a_typed_error(kw: dict[str, object]) -> None:
    with pytest.raises(errors.ConfigurationError, match="RetryPolicy"):
        RetryPolicy(**kw)  # type: ignore[arg-type]
