"""Pure pool bookkeeping: which connection takes the next send, which are closed."""

from __future__ import annotations

import pytest

from mailsdk.pool._book import Open, PoolBook, PoolLimits, Reuse, Wait


def book(**kw: object) -> PoolBook[str]:
    return PoolBook(PoolLimits(**kw))  # type: ignore[arg-type]


def test_opens_up_to_the_limit_then_waits() -> None:
    b = book(max_connections=2)
    first, _ = b.checkout(0.0)
    second, _ = b.checkout(0.0)
    assert isinstance(first, Open) and isinstance(second, Open)
    assert first.slot is not second.slot
    third, _ = b.checkout(0.0)
    assert isinstance(third, Wait)
    assert (b.open, b.busy, b.idle) == (2, 2, 0)


def test_a_busy_slot_is_never_handed_out_twice() -> None:
    b = book(max_connections=3)
    taken = set()
    for _ in range(3):
        decision, _ = b.checkout(0.0)
        assert isinstance(decision, Open)
        b.opened(decision.slot, f"s{decision.slot.id}", None, 0.0)
        taken.add(decision.slot.id)
    assert len(taken) == 3
    assert isinstance(b.checkout(0.0)[0], Wait)


def test_reuse_most_recent_and_health_check_after_idle() -> None:
    b = book(max_connections=2, health_check_after=1.0)
    a, _ = b.checkout(0.0)
    c, _ = b.checkout(0.0)
    assert isinstance(a, Open) and isinstance(c, Open)
    b.opened(a.slot, "a", None, 0.0)
    b.opened(c.slot, "c", None, 0.0)
    assert b.checkin(a.slot, 1.0, sent=1, usable=True)
    assert b.checkin(c.slot, 2.0, sent=1, usable=True)
    reuse, _ = b.checkout(2.5)
    assert isinstance(reuse, Reuse) and reuse.slot.session == "c" and not reuse.check
    reuse2, _ = b.checkout(2.5)
    assert isinstance(reuse2, Reuse) and reuse2.slot.session == "a" and reuse2.check


def test_retire_after_max_messages_and_age() -> None:
    b = book(max_connections=1, max_messages_per_connection=3, max_connection_age=100.0)
    d, _ = b.checkout(0.0)
    assert isinstance(d, Open)
    b.opened(d.slot, "s", None, 0.0)
    assert b.allowance(d.slot) == 3
    assert not b.checkin(d.slot, 1.0, sent=3, usable=True)  # caller QUITs it
    assert b.open == 0
    d2, _ = b.checkout(1.0)
    assert isinstance(d2, Open)
    b.opened(d2.slot, "t", None, 1.0)
    assert not b.checkin(d2.slot, 101.0, sent=1, usable=True)


def test_broken_sessions_are_dropped() -> None:
    b = book(max_connections=1)
    d, _ = b.checkout(0.0)
    assert isinstance(d, Open)
    assert not b.checkin(d.slot, 0.0, sent=0, usable=False)
    assert isinstance(b.checkout(0.0)[0], Open)


def test_idle_expiry_returns_slots_to_close() -> None:
    b = book(max_connections=2, idle_timeout=10.0)
    d, _ = b.checkout(0.0)
    assert isinstance(d, Open)
    b.opened(d.slot, "s", None, 0.0)
    b.checkin(d.slot, 0.0, sent=1, usable=True)
    decision, expired = b.checkout(11.0)
    assert [s.session for s in expired] == ["s"]
    assert isinstance(decision, Open)


def test_discarded_open_frees_the_place() -> None:
    b = book(max_connections=1)
    d, _ = b.checkout(0.0)
    assert isinstance(d, Open)
    b.discard(d.slot)  # connect failed
    assert isinstance(b.checkout(0.0)[0], Open)


def test_close_returns_idle_and_retires_busy_at_checkin() -> None:
    b = book(max_connections=2)
    d1, _ = b.checkout(0.0)
    d2, _ = b.checkout(0.0)
    assert isinstance(d1, Open) and isinstance(d2, Open)
    b.opened(d1.slot, "idle", None, 0.0)
    b.opened(d2.slot, "busy", None, 0.0)
    b.checkin(d1.slot, 0.0, sent=1, usable=True)
    assert [s.session for s in b.close()] == ["idle"]
    assert not b.checkin(d2.slot, 0.0, sent=1, usable=True)
    with pytest.raises(RuntimeError):
        b.checkout(0.0)


@pytest.mark.parametrize(
    "kw",
    [
        {"max_connections": 0},
        {"max_messages_per_connection": 0},
        {"idle_timeout": -1.0},
        {"checkout_timeout": float("nan")},
        {"health_check_after": -1.0},
    ],
)
def test_bad_limits(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PoolLimits(**kw)  # type: ignore[arg-type]
