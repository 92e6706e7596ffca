"""The adaptive connection limit (AIMD) and how the pool bookkeeping obeys it (pure)."""

from __future__ import annotations

from mailsdk.pool._book import Open, PoolBook, PoolLimits, Reuse, Wait
from mailsdk.pool._concurrency import Concurrency


def test_throttling_halves_the_limit_down_to_one() -> None:
    c = Concurrency(8)
    assert (c.limit, c.reduced) == (8, False)
    assert c.throttled(c.epoch) and c.limit == 4
    assert c.throttled(c.epoch) and c.limit == 2
    assert c.throttled(c.epoch) and c.limit == 1
    assert not c.throttled(c.epoch) and c.limit == 1  # the floor holds
    assert c.cuts == 3 and c.reduced


def test_replies_to_sends_made_before_a_cut_neither_cut_again_nor_regrow() -> None:
    c = Concurrency(8)
    before = c.epoch  # eight sends in flight, all answered "too many connections"
    assert c.throttled(before) and c.limit == 4
    for _ in range(7):
        assert not c.throttled(before)  # the same overload, already answered with one cut
    assert c.limit == 4
    for _ in range(100):
        assert not c.succeeded(before)  # in flight before the cut: says nothing about now
    assert c.limit == 4


def test_good_replies_regrow_one_connection_per_round() -> None:
    c = Concurrency(4)
    c.throttled(c.epoch)
    c.throttled(c.epoch)
    assert c.limit == 1
    now = c.epoch
    assert c.succeeded(now) and c.limit == 2  # one round at 1 connection: one reply
    assert not c.succeeded(now) and c.limit == 2
    assert c.succeeded(now) and c.limit == 3  # one round at 2 connections: two replies
    assert c.succeeded(now, count=3) and c.limit == 4
    assert not c.succeeded(now, count=100) and c.limit == 4  # never above max_connections


def test_a_throttle_at_the_floor_resets_the_regrowth() -> None:
    c = Concurrency(2)
    c.throttled(c.epoch)
    assert c.limit == 1
    stale = c.epoch
    assert not c.throttled(stale)  # at the floor: no cut, but a new epoch
    assert not c.succeeded(stale) and c.limit == 1


def book(n: int) -> PoolBook[str]:
    return PoolBook(PoolLimits(max_connections=n, health_check_after=10.0))


def open_all(b: PoolBook[str], n: int) -> list[Open[str]]:
    opened = []
    for _ in range(n):
        decision, _ = b.checkout(0.0)
        assert isinstance(decision, Open)
        b.opened(decision.slot, f"s{decision.slot.id}", None, 0.0)
        opened.append(decision)
    return opened


def test_the_book_hands_out_no_more_connections_than_the_limit() -> None:
    b = book(4)
    slots = [o.slot for o in open_all(b, 4)]
    assert b.throttled(b.concurrency.epoch, 0.0) == []  # all busy: none to close yet
    assert b.concurrency.limit == 2
    # Busy connections above the limit close as they come back...
    assert b.checkin(slots[0], 0.1, sent=1, usable=True) is False
    assert b.checkin(slots[1], 0.1, sent=1, usable=True) is False
    assert b.open == 2
    # ...and while the two left are in use, nobody gets a third.
    assert isinstance(b.checkout(0.2)[0], Wait)
    assert b.checkin(slots[2], 0.3, sent=1, usable=True) is True
    assert isinstance(b.checkout(0.4)[0], Reuse)


def test_a_cut_closes_idle_connections_above_the_limit() -> None:
    b = book(4)
    slots = [o.slot for o in open_all(b, 4)]
    for slot in slots:
        assert b.checkin(slot, 1.0, sent=1, usable=True)
    gone = b.throttled(b.concurrency.epoch, 2.0)
    assert len(gone) == 2 and b.open == 2 and b.idle == 2
    # Good replies while the two allowed connections are not both busy: no growth.
    assert not b.succeeded(b.concurrency.epoch, count=10) and b.concurrency.limit == 2
    decisions = [b.checkout(3.0)[0] for _ in range(3)]
    assert [type(d) for d in decisions] == [Reuse, Reuse, Wait]
    assert b.succeeded(b.concurrency.epoch, count=2) and b.concurrency.limit == 3
    decisions = [b.checkout(3.0)[0] for _ in range(2)]
    assert [type(d) for d in decisions] == [Open, Wait]
