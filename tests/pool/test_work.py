"""The outcome helpers of pool/_work.py: which FAILED outcomes used no try."""

from __future__ import annotations

from mailsdk import errors
from mailsdk.flows import DeliveryStatus, SendOutcome
from mailsdk.pool._work import never_sent, not_started, out_of_step, outcome_of_error
from mailsdk.protocol.reply import Reply


def failed(error: errors.MailError) -> SendOutcome:
    return SendOutcome(index=0, status=DeliveryStatus.FAILED, error=error)


def test_never_sent_reads_the_typed_marker_never_the_text() -> None:
    marked = SendOutcome(
        index=0, status=DeliveryStatus.FAILED, error=errors.ConnectionLost("x"), never_started=True
    )
    assert never_sent(marked)
    # The old text alone means nothing any more: only the marker set where it was made.
    assert not never_sent(failed(errors.ConnectionLost("not sent: the server closed (421)")))
    assert not never_sent(failed(errors.ConnectionLost("connection reset by peer")))
    assert never_sent(not_started(4, "stopped", key="k"))
    unsent = not_started(4, "stopped", key="k")
    assert (unsent.index, unsent.key, unsent.attempts) == (4, "k", 0)


def test_only_a_failed_outcome_can_be_never_started() -> None:
    unknown = SendOutcome(
        index=0,
        status=DeliveryStatus.UNKNOWN,
        error=errors.DeliveryUnknown("x"),
        never_started=True,
    )
    assert not never_sent(unknown)  # an UNKNOWN is never treated as unsent (never resent)


def test_outcome_of_error() -> None:
    refusal = errors.DataRefused(Reply.build(554, "5.6.0 no"), "DATA")
    assert outcome_of_error(3, refusal).status is DeliveryStatus.REFUSED
    assert outcome_of_error(3, errors.ConnectionLost("x")).status is DeliveryStatus.FAILED
    unknown = outcome_of_error(3, errors.ConnectionLost("x"), unknown=True)
    assert unknown.status is DeliveryStatus.UNKNOWN
    assert isinstance(unknown.error, errors.DeliveryUnknown) and unknown.index == 3


def test_out_of_step_refusal_becomes_a_retryable_failure() -> None:
    lie = errors.DataRefused(Reply.build(250, "2.1.5 OK"), "DATA")
    outcome = SendOutcome(index=4, status=DeliveryStatus.REFUSED, error=lie)
    failed_outcome = out_of_step(outcome)
    assert failed_outcome is not None
    assert failed_outcome.status is DeliveryStatus.FAILED and failed_outcome.index == 4
    assert isinstance(failed_outcome.error, errors.RemoteProtocolError)
    honest = errors.DataRefused(Reply.build(554, "5.6.0 no"), "DATA")
    assert out_of_step(SendOutcome(index=0, status=DeliveryStatus.REFUSED, error=honest)) is None


def test_renumbered_copies_every_field_of_an_outcome() -> None:
    # renumbered() lists the fields by hand (it runs once per message): a field added to
    # SendOutcome must be added there too, or outcomes would silently lose it.
    import attrs

    from mailsdk.pool._work import RENUMBERED_FIELDS, renumbered

    assert set(RENUMBERED_FIELDS) == {a.name for a in attrs.fields(SendOutcome)}
    marked = SendOutcome(
        index=3,
        status=DeliveryStatus.FAILED,
        error=errors.ConnectionLost("x"),
        key="old",
        attempts=0,
        never_started=True,
    )
    moved = renumbered(marked, 9, "k", 0)
    assert moved == attrs.evolve(marked, index=9, key="k")
