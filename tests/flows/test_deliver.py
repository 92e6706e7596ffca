"""``deliver_many`` sans-IO: the exact bytes of every write, and one outcome per message.

The flow runs against a real :class:`ClientConnection` (``tests/_support/wire.py``); each test
scripts the server's replies to each write. The key property is RFC 2920 §3.1's: message N's
content, its end-of-data and message N+1's MAIL/RCPT/DATA go out in one write.
"""

from __future__ import annotations

import pytest
from tests._support.wire import DROP, STALL, Step, WireRun

from mailsdk.errors import (
    ConnectionLost,
    DataRefused,
    DeliveryUnknown,
    InvalidInputError,
    ReadTimeout,
    RecipientsRefused,
    SenderRefused,
)
from mailsdk.esmtp import Capabilities, parse_ehlo
from mailsdk.flows import (
    Delivery,
    DeliveryStatus,
    SendOutcome,
    TransactionOptions,
    deliver_many,
    prepare_raw,
)
from mailsdk.protocol.dialect import Dialect
from mailsdk.protocol.reply import Reply

A, S, F, R, U = (
    DeliveryStatus.ACCEPTED,
    DeliveryStatus.PARTIAL,
    DeliveryStatus.FAILED,
    DeliveryStatus.REFUSED,
    DeliveryStatus.UNKNOWN,
)


def caps(*lines: str) -> Capabilities:
    return parse_ehlo(Reply.build(250, "mx.example.com", *lines))


def body(i: int) -> bytes:
    return b"Subject: m%d\r\n\r\n.dot %d\r\n" % (i, i)


def wire_body(i: int) -> bytes:
    return b"Subject: m%d\r\n\r\n..dot %d\r\n.\r\n" % (i, i)  # dot-stuffed, terminated


def item(i: int, *recipients: str, key: str | None = None) -> Delivery:
    rcpts = recipients or (f"r{i}@example.com",)
    return Delivery(index=i, key=key, prepared=prepare_raw(f"s{i}@example.org", rcpts, body(i)))


def envelope(i: int, *recipients: str, data: bool = True) -> bytes:
    rcpts = recipients or (f"r{i}@example.com",)
    out = b"MAIL FROM:<s%d@example.org>\r\n" % i
    out += b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts)
    return out + (b"DATA\r\n" if data else b"")


OK_ENV = b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"


def queued(i: int) -> bytes:
    return b"250 2.0.0 Ok: queued as Q%d\r\n" % i


def statuses(outcomes: list[object]) -> list[DeliveryStatus]:
    return [o.status for o in outcomes if isinstance(o, SendOutcome)]


def outcomes_of(reported: list[object]) -> list[SendOutcome]:
    assert all(isinstance(o, SendOutcome) for o in reported)
    return [o for o in reported if isinstance(o, SendOutcome)]


PIPELINING = caps("PIPELINING")


def test_each_body_shares_its_write_with_the_next_envelope() -> None:
    run = WireRun()
    steps = [
        Step(envelope(0), OK_ENV),
        Step(wire_body(0) + envelope(1), queued(0) + OK_ENV),
        Step(wire_body(1) + envelope(2), queued(1) + OK_ENV),
        Step(wire_body(2), queued(2)),
    ]
    items = [item(0, key="k0"), item(1), item(2)]
    out = outcomes_of(run.run(deliver_many(PIPELINING), items, steps))
    assert [(o.index, o.status) for o in out] == [(0, A), (1, A), (2, A)]
    assert [o.result.queue_id for o in out if o.result] == ["Q0", "Q1", "Q2"]
    assert out[0].key == "k0"
    assert len(run.writes) == 4  # one write (one round trip) per message, plus the first


def _script(behaviours: list[str]) -> tuple[list[Step], list[DeliveryStatus]]:
    """The RFC's expected wire for messages that each behave as named (the test oracle)."""
    env_replies = {
        "ok": OK_ENV,
        "final": OK_ENV,
        "mail": b"550 5.7.1 sender refused\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n",
        "rcpt": b"250 ok\r\n550 5.1.1 no user\r\n554 5.5.1 no valid recipients\r\n",
        "rcpt354": b"250 ok\r\n550 5.1.1 no user\r\n354 go\r\n",
        "data": b"250 ok\r\n250 ok\r\n451 4.3.0 try later\r\n",
    }
    expected = {"ok": A, "final": R, "mail": R, "rcpt": R, "rcpt354": R, "data": R}
    steps = [Step(envelope(0), env_replies[behaviours[0]])]
    for i, how in enumerate(behaviours):
        nxt = i + 1 < len(behaviours)
        write, reply = b"", b""
        if how in ("ok", "final"):
            write, reply = wire_body(i), queued(i) if how == "ok" else b"554 5.7.1 spam\r\n"
        elif how == "rcpt354":  # RFC 2920 §3.1: an empty body ends the accepted DATA
            write, reply = b".\r\n", b"554 5.5.1 no valid recipients\r\n"
        elif how in ("rcpt", "data"):  # MAIL was accepted: the transaction needs a reset
            write, reply = b"RSET\r\n", b"250 2.0.0 reset\r\n"
        if nxt:
            write += envelope(i + 1)
            reply += env_replies[behaviours[i + 1]]
        if write:
            steps.append(Step(write, reply))
    return steps, [expected[b] for b in behaviours]


@pytest.mark.parametrize("how", ["mail", "rcpt", "rcpt354", "data", "final"])
@pytest.mark.parametrize("position", [0, 1, 2])
def test_a_refusal_at_any_position_affects_only_its_message(how: str, position: int) -> None:
    behaviours = ["ok"] * 3
    behaviours[position] = how
    steps, expected = _script(behaviours)
    run = WireRun()
    out = outcomes_of(run.run(deliver_many(PIPELINING), [item(i) for i in range(3)], steps))
    assert [o.status for o in out] == expected
    refused = out[position]
    error_type = {
        "mail": SenderRefused,
        "rcpt": RecipientsRefused,
        "rcpt354": RecipientsRefused,
        "data": DataRefused,
        "final": DataRefused,
    }[how]
    assert isinstance(refused.error, error_type)
    if how == "final":  # the server answered the content: the result keeps its reply
        assert refused.result is not None
        assert refused.result.reply.code == 554
    assert b"RSET" not in b"".join(run.writes) or how in ("rcpt", "data")


def test_partial_acceptance_is_partial() -> None:
    steps = [
        Step(
            envelope(0, "a@x.test", "b@x.test"),
            b"250 ok\r\n250 ok\r\n550 5.1.1 no b\r\n354 go\r\n",
        ),
        Step(wire_body(0), queued(0)),
    ]
    out = outcomes_of(
        WireRun().run(deliver_many(PIPELINING), [item(0, "a@x.test", "b@x.test")], steps)
    )
    assert out[0].status is S
    assert out[0].result is not None and list(out[0].result.refused) == ["b@x.test"]


def test_421_ends_the_run_and_later_messages_are_never_sent() -> None:
    run = WireRun()
    steps = [
        Step(envelope(0), OK_ENV),
        Step(wire_body(0) + envelope(1), queued(0) + b"421 4.3.2 shutting down\r\n"),
        Step(b"", DROP),  # and the server closes
    ]
    items = [item(i) for i in range(4)]
    out = outcomes_of(run.run(deliver_many(PIPELINING), items, steps))
    assert [o.status for o in out] == [A, R, F, F]
    assert out[1].error is not None and out[1].error.reply.code == 421  # type: ignore[attr-defined]
    for never in out[2:]:
        assert isinstance(never.error, ConnectionLost)
        assert "not sent" in str(never.error)
        assert never.never_started and never.attempts == 0  # the typed marker, no try counted
    assert not any(o.never_started for o in out[:2])
    assert run.pulled == [True, True, False, False, False]  # the rest were not even prepared


def test_drop_after_the_final_dot_is_unknown_and_later_messages_failed() -> None:
    run = WireRun()
    steps = [Step(envelope(0), OK_ENV), Step(wire_body(0) + envelope(1), DROP)]
    out = outcomes_of(run.run(deliver_many(PIPELINING), [item(i) for i in range(3)], steps))
    assert [o.status for o in out] == [U, F, F]
    assert isinstance(out[0].error, DeliveryUnknown)
    assert isinstance(out[0].error.cause, ConnectionLost)
    assert out[0].result is None


def test_drop_before_the_final_dot_is_failed_not_unknown() -> None:
    # message 0 is confirmed; message 1's envelope replies never come: its content was never
    # sent, so it is FAILED (safe to retry), never UNKNOWN.
    run = WireRun()
    steps = [
        Step(envelope(0), OK_ENV),
        Step(wire_body(0) + envelope(1), queued(0) + b"250 ok\r\n"),
        Step(b"", DROP),
    ]
    out = outcomes_of(run.run(deliver_many(PIPELINING), [item(i) for i in range(3)], steps))
    assert [o.status for o in out] == [A, F, F]
    assert not any(isinstance(o.error, DeliveryUnknown) for o in out)


def test_timeout_after_the_final_dot_is_unknown() -> None:
    steps = [Step(envelope(0), OK_ENV), Step(wire_body(0), STALL)]
    out = outcomes_of(WireRun().run(deliver_many(PIPELINING), [item(0)], steps))
    assert out[0].status is U
    assert isinstance(out[0].error, DeliveryUnknown)
    assert isinstance(out[0].error.cause, ReadTimeout)


def test_lmtp_reports_per_recipient_results_and_pipelines_the_next_envelope() -> None:
    run = WireRun(dialect=Dialect.LMTP)
    two = ("a@x.test", "b@x.test")
    steps = [
        Step(envelope(0, *two), b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        Step(
            wire_body(0) + envelope(1),
            b"250 2.0.0 a delivered\r\n452 4.2.2 b over quota\r\n" + OK_ENV,
        ),
        Step(wire_body(1), b"250 2.0.0 delivered\r\n"),
    ]
    flow = deliver_many(PIPELINING, dialect=Dialect.LMTP)
    out = outcomes_of(run.run(flow, [item(0, *two), item(1)], steps))
    assert [o.status for o in out] == [S, A]
    first = out[0].result
    assert first is not None and first.lmtp
    assert first.accepted == ("a@x.test",)
    assert first.refused["b@x.test"].code == 452


CHUNKING = caps("PIPELINING", "CHUNKING")


def bdat_item(i: int, content: bytes) -> Delivery:
    return Delivery(
        index=i, prepared=prepare_raw(f"s{i}@example.org", [f"r{i}@example.com"], content)
    )


def test_bdat_chunks_are_pipelined_and_the_next_envelope_waits_for_their_replies() -> None:
    first, second, third = b"abcdefgh" * 3, b"12345678", b"ABCDEFGH"
    framed = b"BDAT 8\r\nabcdefghBDAT 8\r\nabcdefghBDAT 8 LAST\r\nabcdefgh"
    steps = [
        Step(envelope(0, data=False), b"250 ok\r\n250 ok\r\n"),
        # all three chunks in one write: no round trip per chunk; the next envelope waits for
        # their replies (a refused chunk would leave the transaction open: RSET first)
        Step(framed, b"250 ok\r\n" * 2 + queued(0)),
        Step(envelope(1, data=False), b"250 ok\r\n" * 2),
        # a message in one chunk: the next envelope rides behind its BDAT LAST
        Step(b"BDAT 8 LAST\r\n" + second + envelope(2, data=False), queued(1) + b"250 ok\r\n" * 2),
        Step(b"BDAT 8 LAST\r\n" + third, queued(2)),
    ]
    flow = deliver_many(CHUNKING, options=TransactionOptions(chunk_size=8))
    items = [bdat_item(0, first), bdat_item(1, second), bdat_item(2, third)]
    out = outcomes_of(WireRun().run(flow, items, steps))
    assert [o.status for o in out] == [A, A, A]
    assert out[0].result is not None and out[0].result.queue_id == "Q0"


def test_a_refused_bdat_chunk_refuses_the_message_and_resets_before_the_next() -> None:
    # RFC 3030 §2: after a refused chunk the transaction has failed but is still open on the
    # server, which discards the chunks behind it: RSET before the next MAIL.
    steps = [
        Step(envelope(0, data=False), b"250 ok\r\n250 ok\r\n"),
        Step(b"BDAT 4\r\nabcdBDAT 4 LAST\r\nefgh", b"552 5.3.4 too big\r\n554 5.5.0 no\r\n"),
        Step(b"RSET\r\n" + envelope(1, data=False), b"250 ok\r\n" * 3),
        Step(b"BDAT 4 LAST\r\n1234", queued(1)),
    ]
    flow = deliver_many(CHUNKING, options=TransactionOptions(chunk_size=4))
    out = outcomes_of(
        WireRun().run(flow, [bdat_item(0, b"abcdefgh"), bdat_item(1, b"1234")], steps)
    )
    assert [o.status for o in out] == [R, A]
    assert isinstance(out[0].error, DataRefused)
    assert out[0].error.reply.code == 552


def test_lock_step_without_pipelining() -> None:
    steps = [
        Step(b"MAIL FROM:<s0@example.org>\r\n", b"250 ok\r\n"),
        Step(b"RCPT TO:<r0@example.com>\r\n", b"250 ok\r\n"),
        Step(b"DATA\r\n", b"354 go\r\n"),
        Step(wire_body(0), queued(0)),
        Step(b"MAIL FROM:<s1@example.org>\r\n", b"550 no\r\n"),
        Step(b"MAIL FROM:<s2@example.org>\r\n", b"250 ok\r\n"),
        Step(b"RCPT TO:<r2@example.com>\r\n", b"550 no\r\n"),
        Step(b"RSET\r\n", b"250 ok\r\n"),
    ]
    out = outcomes_of(WireRun().run(deliver_many(caps()), [item(i) for i in range(3)], steps))
    assert [o.status for o in out] == [A, R, R]


def test_lock_step_drop_after_the_dot_is_unknown() -> None:
    steps = [
        Step(b"MAIL FROM:<s0@example.org>\r\n", b"250 ok\r\n"),
        Step(b"RCPT TO:<r0@example.com>\r\n", b"250 ok\r\n"),
        Step(b"DATA\r\n", b"354 go\r\n"),
        Step(wire_body(0), DROP),
    ]
    out = outcomes_of(WireRun().run(deliver_many(caps()), [item(0), item(1)], steps))
    assert [o.status for o in out] == [U, F]


def test_items_that_failed_to_prepare_are_reported_in_order_and_never_written() -> None:
    bad = Delivery(index=1, key="bad", error=InvalidInputError("no recipients"))
    no_rcpt = Delivery(index=2, prepared=prepare_raw("s@example.org", [], b"x\r\n"))
    steps = [
        Step(envelope(0), OK_ENV),
        Step(wire_body(0) + envelope(3), queued(0) + OK_ENV),
        Step(wire_body(3), queued(3)),
    ]
    items = [item(0), bad, no_rcpt, item(3)]
    out = outcomes_of(WireRun().run(deliver_many(PIPELINING), items, steps))
    assert [(o.index, o.status) for o in out] == [(0, A), (1, F), (2, F), (3, A)]
    assert out[1].key == "bad"
    assert isinstance(out[2].error, InvalidInputError)


# -- servers that lie: nothing is reported delivered on a reply meant for another command ---------


def test_a_missing_end_of_data_reply_never_confirms_the_message() -> None:
    # The server skips message 0's final reply: the next MAIL's 250 would "confirm" it. The
    # 354 then lands on the RCPT, which the connection refuses as out of step.
    run = WireRun()
    steps = [
        Step(envelope(0), OK_ENV),
        Step(wire_body(0) + envelope(1), b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"),
    ]
    out = outcomes_of(run.run(deliver_many(PIPELINING), [item(i) for i in range(3)], steps))
    assert [o.status for o in out] == [U, F, F]
    assert not any(o.status.delivered for o in out)


def test_an_extra_reply_is_detected_and_no_later_message_is_confirmed() -> None:
    run = WireRun()
    steps = [
        Step(envelope(0), OK_ENV),
        Step(wire_body(0) + envelope(1), queued(0) + b"250 extra\r\n" + OK_ENV),
    ]
    out = outcomes_of(run.run(deliver_many(PIPELINING), [item(i) for i in range(3)], steps))
    # message 1's DATA got a 250: one reply too many. Message 0's reply came before the extra
    # one, in step, so it stands; nothing after it is trusted.
    assert [o.status for o in out] == [A, F, F]


@pytest.mark.parametrize("bad", [b"354 go\r\n", b"334 what\r\n"])
def test_an_intermediate_reply_to_mail_or_rcpt_breaks_off(bad: bytes) -> None:
    steps = [Step(envelope(0), b"250 ok\r\n" + bad + b"354 go\r\n")]
    out = outcomes_of(WireRun().run(deliver_many(PIPELINING), [item(0), item(1)], steps))
    assert [o.status for o in out] == [F, F]


def test_a_stall_before_the_envelope_replies_fails_the_message() -> None:
    steps = [Step(envelope(0), STALL)]
    out = outcomes_of(WireRun().run(deliver_many(PIPELINING), [item(0), item(1)], steps))
    assert [o.status for o in out] == [F, F]
    assert isinstance(out[0].error, ReadTimeout)


def test_a_confirmed_message_stays_confirmed_when_the_link_drops_later() -> None:
    steps = [
        Step(envelope(0), OK_ENV),
        Step(wire_body(0) + envelope(1), queued(0)),
        Step(b"", DROP),
    ]
    out = outcomes_of(WireRun().run(deliver_many(PIPELINING), [item(0), item(1)], steps))
    assert [o.status for o in out] == [A, F]
