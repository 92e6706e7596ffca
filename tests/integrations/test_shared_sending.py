"""Without Celery: plain senders sharing one account through Redis (limits, cap, ledger), against
aiosmtpd behind a counting relay."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

import pytest

pytest.importorskip("redis", reason="the redis extra is not installed")

import redis
from tests._support.redis_server import RedisServer
from tests._support.smtpd import SmtpdServer
from tests._support.tcp_relay import CountingRelay

from mailsdk import Client, ClientBuilder, PoolTimeout
from mailsdk.integrations._deliver import deliver_chunk
from mailsdk.integrations._sessions import LeasedSession
from mailsdk.integrations._wire import WireItem
from mailsdk.integrations.redis import (
    DeliveryLedger,
    Rate,
    RedisConnectionLimiter,
    RedisRateLimiter,
)

pytestmark = pytest.mark.redis


def _item(n: int, to: str = "bob@example.test") -> WireItem:
    data = f"From: a@client.test\r\nTo: {to}\r\nMessage-ID: <{n}@t>\r\n\r\nbody {n}\r\n".encode()
    return WireItem(data, "a@client.test", (to,), f"<{n}@t>")


def _factory(port: int) -> Callable[[], Client]:
    return lambda: ClientBuilder.smtp("127.0.0.1", port).with_tls("none").with_timeouts(10).build()


def test_senders_share_the_cap_the_ledger_and_idle_connections_free_their_slot(
    smtpd_factory: Callable[..., SmtpdServer], redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    server = smtpd_factory(refuse_rcpt=["nobody@example.test"])
    relay = CountingRelay(server.host, server.port)
    results: list[dict[str, object]] = []
    lock = threading.Lock()

    def sender(offset: int) -> None:
        client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
        sessions = LeasedSession(
            _factory(relay.port),
            RedisConnectionLimiter(client, "acct", limit=1, lease_ttl=2),
            idle_timeout=0.2,
            acquire_timeout=20,
        )
        ledger = DeliveryLedger(client, "plain")
        items = [_item(n) for n in range(offset, offset + 5)] + [_item(0)]  # <0@t> twice
        got = deliver_chunk(items, sessions=sessions, ledger=ledger)
        sessions.close()
        client.close()
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=sender, args=(k * 10,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert relay.peak == 1  # cap 1, seen by the server, across three senders
        assert relay.total >= 2  # ... and the slot moved between them
        sent = sorted(
            m.content.split(b"Message-ID: ")[1].split(b"\r\n")[0] for m in server.recorder.messages
        )
        assert sent == sorted(
            {f"<{n}@t>".encode() for k in range(3) for n in range(k * 10, k * 10 + 5)}
        )
        # <0@t> was offered four times: sent once, the others are duplicates or deferrals.
        zero = [r for r in results if r["key"] == "<0@t>"]
        assert sum(1 for r in zero if r["status"] == "accepted" and not r.get("duplicate")) == 1
        assert RedisConnectionLimiter(redis_client, "acct", limit=1).holders() == 0
    finally:
        relay.close()


def test_no_slot_within_the_wait_is_a_pool_timeout_and_nothing_is_sent(
    smtpd_factory: Callable[..., SmtpdServer], redis_client: redis.Redis
) -> None:
    server = smtpd_factory()
    cap = RedisConnectionLimiter(redis_client, "acct", limit=1)
    squatter = cap.try_acquire()
    assert squatter is not None
    sessions = LeasedSession(_factory(server.port), cap, acquire_timeout=0.3)
    with pytest.raises(PoolTimeout), sessions.use():
        pass
    ledger = DeliveryLedger(redis_client, "plain")
    [result] = deliver_chunk([_item(1)], sessions=sessions, ledger=ledger)
    assert result["status"] == "deferred" and "PoolTimeout" in str(result["reason"])
    assert server.recorder.messages == []
    assert ledger.claim("<1@t>").may_send  # the claim was given back: a retry need not wait
    sessions.close()


def test_refusals_partial_and_rate_waits_are_reported(
    smtpd_factory: Callable[..., SmtpdServer], redis_client: redis.Redis
) -> None:
    server = smtpd_factory(refuse_rcpt=["nobody@example.test"])
    sessions = LeasedSession(_factory(server.port))
    rate = RedisRateLimiter(redis_client, "acct", messages=[Rate.per_second(20, burst=1)])
    partial = WireItem(
        b"From: a@client.test\r\nMessage-ID: <p@t>\r\n\r\nx\r\n",
        "a@client.test",
        ("bob@example.test", "nobody@example.test"),
        "<p@t>",
    )
    started = time.monotonic()
    results = deliver_chunk(
        [_item(1), _item(2, to="nobody@example.test"), partial], sessions=sessions, rate=rate
    )
    assert time.monotonic() - started >= 0.09  # 3 sends at 20/s with a burst of 1: 2 waits
    assert [r["status"] for r in results] == ["accepted", "refused", "partial"]
    assert results[1]["reply"]["code"] == 550 and results[1]["transient"] is False
    assert list(results[2]["refused"]) == ["nobody@example.test"]
    assert results[0]["reply"]["code"] == 250
    sessions.close()


def _server_that_drops_after_end_of_data() -> tuple[int, list[bytes], Callable[[], None]]:
    """Accept one transaction, read up to end-of-data, then close without a reply."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"220 drop.test ESMTP\r\n")
                buf = b""
                in_data = False
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                    if in_data:
                        if b"\r\n.\r\n" in buf:
                            seen.append(buf)
                            break  # end-of-data read; close without the final reply
                        continue
                    while b"\r\n" in buf:
                        line, buf = buf.split(b"\r\n", 1)
                        verb = line[:4].upper()
                        if verb in (b"EHLO", b"HELO"):
                            conn.sendall(b"250 drop.test\r\n")
                        elif verb == b"DATA":
                            conn.sendall(b"354 go\r\n")
                            in_data = True
                            break
                        elif verb == b"QUIT":
                            conn.sendall(b"221 bye\r\n")
                        else:
                            conn.sendall(b"250 ok\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def stop() -> None:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        listener.close()
        thread.join(5)

    return listener.getsockname()[1], seen, stop


def test_no_reply_after_end_of_data_is_parked_unknown_and_never_resent(
    redis_client: redis.Redis,
) -> None:
    port, seen, stop = _server_that_drops_after_end_of_data()
    try:
        sessions = LeasedSession(_factory(port))
        ledger = DeliveryLedger(redis_client, "plain")
        [first] = deliver_chunk([_item(7)], sessions=sessions, ledger=ledger)
        assert first["status"] == "unknown"
        assert first["ledger"] == "unknown"
        assert len(seen) == 1
        assert [e.key for e in ledger.unknown()] == ["<7@t>"]
        # Delivered again (a retry, a redelivered task): parked, not sent a second time.
        [again] = deliver_chunk([_item(7)], sessions=sessions, ledger=ledger)
        assert again["status"] == "unknown" and again["duplicate"] is True
        assert len(seen) == 1
        sessions.close()
    finally:
        stop()


def _wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)


def test_the_keeper_renews_an_open_connections_lease_and_frees_it_when_idle(
    smtpd_factory: Callable[..., SmtpdServer], redis_client: redis.Redis
) -> None:
    server = smtpd_factory()
    cap = RedisConnectionLimiter(redis_client, "acct", limit=1, lease_ttl=0.3)
    sessions = LeasedSession(_factory(server.port), cap, idle_timeout=1.5)
    with sessions.use() as session:
        session.noop()
    # Three lease lifetimes later the connection is still open, so its lease is still alive
    # (renewed by the keeper): nobody else gets the slot.
    time.sleep(0.9)
    assert cap.try_acquire() is None
    # Idle for longer than idle_timeout: closed, and the slot is free for others.
    _wait_until(lambda: cap.holders() == 0)
    assert server.recorder.verbs.count("QUIT") == 1
    # Used again: a new connection under a new lease, renewed by the same keeper.
    with sessions.use() as session:
        session.noop()
    time.sleep(0.9)
    assert cap.try_acquire() is None
    sessions.close()
    assert cap.holders() == 0


def test_a_throttling_reply_penalizes_every_sender_and_is_retryable(
    smtpd_factory: Callable[..., SmtpdServer], redis_client: redis.Redis
) -> None:
    from mailsdk.integrations._deliver import is_retryable

    server = smtpd_factory(data_reply="451 4.7.0 Too many messages, slow down")
    sessions = LeasedSession(_factory(server.port))
    rate = RedisRateLimiter(redis_client, "acct", messages=[Rate.per_second(100)])
    ledger = DeliveryLedger(redis_client, "plain")
    [result] = deliver_chunk([_item(1)], sessions=sessions, rate=rate, ledger=ledger, penalty=30)
    assert result["status"] == "refused" and result["transient"] is True
    assert result["reply"]["enhanced"] == "4.7.0"
    assert is_retryable(result)
    assert result["ledger"] == "failed"  # nothing was accepted: a retry may claim it again
    peer = RedisRateLimiter(redis_client, "acct", messages=[Rate.per_second(100)])
    assert peer.reserve() > 29  # another sender of the same budget waits out the penalty
    assert ledger.claim("<1@t>").may_send
    sessions.close()
