"""Without Celery: plain senders sharing one account through Redis (limits, cap, ledger), each
with its own pool, against aiosmtpd behind a counting relay."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import typing
from collections.abc import Callable, Iterator

import pytest

pytest.importorskip("redis", reason="the redis extra is not installed")

import redis
from tests._support.redis_server import RedisServer
from tests._support.smtpd import SmtpdServer
from tests._support.tcp_relay import CountingRelay

from mailsdk import ClientBuilder
from mailsdk.batch import RetryPolicy
from mailsdk.integrations._deliver import deliver_chunk, is_retryable
from mailsdk.integrations._leases import LeaseKeeper
from mailsdk.integrations._wire import WireItem
from mailsdk.integrations.redis import (
    AsyncRedisConnectionLimiter,
    CoordinationUnavailable,
    DeliveryLedger,
    LedgerState,
    Rate,
    RedisConnectionLimiter,
    RedisRateLimiter,
    from_url,
)
from mailsdk.pool import Pool

pytestmark = pytest.mark.redis


def _item(n: int, to: str = "bob@example.test") -> WireItem:
    data = f"From: a@client.test\r\nTo: {to}\r\nMessage-ID: <{n}@t>\r\n\r\nbody {n}\r\n".encode()
    return WireItem(data, "a@client.test", (to,), f"<{n}@t>")


@contextlib.contextmanager
def _pool(
    port: int, cap: RedisConnectionLimiter | None = None, **options: typing.Any
) -> Iterator[Pool]:
    """A process's pool: the shared cap (leases kept alive) as its connection limiter."""
    client = ClientBuilder.smtp("127.0.0.1", port).with_tls("none").with_timeouts(10).build()
    keeper = LeaseKeeper(cap) if cap is not None else None
    pool = client.pool(connection_limiter=keeper, **options)
    try:
        yield pool
    finally:
        pool.close()
        if keeper is not None:
            keeper.close()


def test_senders_share_the_cap_and_the_ledger_and_each_message_goes_out_once(
    smtpd_factory: Callable[..., SmtpdServer], redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    server = smtpd_factory(refuse_rcpt=["nobody@example.test"])
    relay = CountingRelay(server.host, server.port)
    results: list[dict[str, object]] = []
    lock = threading.Lock()

    def sender(offset: int) -> None:
        client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
        cap = RedisConnectionLimiter(client, "acct", limit=1, lease_ttl=2)
        # Two connections per pool, one slot cluster-wide: the cap is what holds.
        with _pool(relay.port, cap, max_connections=2, idle_timeout=0.2) as pool:
            ledger = DeliveryLedger(client, "plain")
            items = [_item(n) for n in range(offset, offset + 5)] + [_item(0)]  # <0@t> thrice
            got = deliver_chunk(items, pool=pool, ledger=ledger)
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
        # <0@t> was offered three times: sent once, the others are duplicates or deferrals.
        zero = [r for r in results if r["key"] == "<0@t>"]
        assert sum(1 for r in zero if r["status"] == "accepted" and not r.get("duplicate")) == 1
        assert {r["status"] for r in zero} <= {"accepted", "deferred"}
        assert RedisConnectionLimiter(redis_client, "acct", limit=1).holders() == 0
    finally:
        relay.close()


def test_a_chunk_is_one_pipelined_run_on_one_connection(
    smtpd_factory: Callable[..., SmtpdServer], redis_client: redis.Redis
) -> None:
    server = smtpd_factory(pipelining=True)
    ledger = DeliveryLedger(redis_client, "plain")
    with _pool(server.port, max_connections=1) as pool:
        results = deliver_chunk([_item(n) for n in range(20)], pool=pool, ledger=ledger)
    assert [r["status"] for r in results] == ["accepted"] * 20
    assert [r["index"] for r in results] == list(range(20))
    assert server.recorder.verbs.count("EHLO") == 1  # one connection for the chunk
    assert all(r["ledger"] == "accepted" for r in results)
    assert all(ledger.get(f"<{n}@t>").state is LedgerState.ACCEPTED for n in range(20))


def test_messages_are_marked_sending_only_as_the_pool_takes_them(
    smtpd_factory: Callable[..., SmtpdServer], redis_client: redis.Redis
) -> None:
    # At 5/s with a burst of 1, the chunk takes about a second: watch the ledger meanwhile.
    # Only what a connection holds may be "sending"; the rest stays "claimed" (a crash would
    # let another worker send those, and park only the few "sending" ones as UNKNOWN).
    server = smtpd_factory()
    ledger = DeliveryLedger(redis_client, "plain")
    rate = RedisRateLimiter(redis_client, "lazy", messages=[Rate.per_second(5, burst=1)])
    keys = [f"<{n}@t>" for n in range(6)]
    seen: list[dict[str, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            states: dict[str, int] = {}
            for key in keys:
                entry = ledger.get(key)
                name = entry.state.value if entry is not None else "none"
                states[name] = states.get(name, 0) + 1
            seen.append(states)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    with _pool(server.port, max_connections=1) as pool:
        watcher.start()
        results = deliver_chunk([_item(n) for n in range(6)], pool=pool, rate=rate, ledger=ledger)
        stop.set()
        watcher.join(5)
    assert [r["status"] for r in results] == ["accepted"] * 6
    assert max(s.get("sending", 0) for s in seen) <= 2, seen
    assert any(s.get("claimed", 0) >= 2 and s.get("accepted", 0) >= 1 for s in seen), seen


def test_no_slot_within_the_wait_fails_the_item_retryably_and_nothing_is_sent(
    smtpd_factory: Callable[..., SmtpdServer], redis_client: redis.Redis
) -> None:
    server = smtpd_factory()
    cap = RedisConnectionLimiter(redis_client, "acct", limit=1)
    squatter = cap.try_acquire()
    assert squatter is not None
    ledger = DeliveryLedger(redis_client, "plain")
    with _pool(server.port, cap, checkout_timeout=0.3) as pool:
        [result] = deliver_chunk([_item(1)], pool=pool, ledger=ledger)
    assert result["status"] == "failed" and result["error"]["type"] == "PoolTimeout"
    assert is_retryable(result) and result["ledger"] == "failed"
    assert server.recorder.messages == []
    assert ledger.claim("<1@t>").may_send  # released: a retry need not wait for the claim


def test_refusals_partial_and_rate_waits_are_reported(
    smtpd_factory: Callable[..., SmtpdServer], redis_client: redis.Redis
) -> None:
    server = smtpd_factory(refuse_rcpt=["nobody@example.test"])
    rate = RedisRateLimiter(redis_client, "acct", messages=[Rate.per_second(20, burst=1)])
    partial = WireItem(
        b"From: a@client.test\r\nMessage-ID: <p@t>\r\n\r\nx\r\n",
        "a@client.test",
        ("bob@example.test", "nobody@example.test"),
        "<p@t>",
    )
    started = time.monotonic()
    with _pool(server.port, max_connections=1) as pool:
        results = deliver_chunk(
            [_item(1), _item(2, to="nobody@example.test"), partial], pool=pool, rate=rate
        )
    assert time.monotonic() - started >= 0.09  # 3 sends at 20/s with a burst of 1: 2 waits
    assert [r["status"] for r in results] == ["accepted", "refused", "partial"]
    assert results[1]["reply"]["code"] == 550 and results[1]["transient"] is False
    assert list(results[2]["refused"]) == ["nobody@example.test"]
    assert results[0]["reply"]["code"] == 250


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
        ledger = DeliveryLedger(redis_client, "plain")
        with _pool(port, max_connections=1) as pool:
            [first] = deliver_chunk([_item(7)], pool=pool, ledger=ledger)
            assert first["status"] == "unknown"
            assert first["ledger"] == "unknown"
            assert len(seen) == 1
            assert [e.key for e in ledger.unknown()] == ["<7@t>"]
            # Delivered again (a retry, a redelivered task): parked, not sent a second time.
            [again] = deliver_chunk([_item(7)], pool=pool, ledger=ledger)
        assert again["status"] == "unknown" and again["duplicate"] is True
        assert len(seen) == 1
    finally:
        stop()


def _wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)


def test_the_keeper_renews_an_open_connections_lease_and_the_pool_frees_it_when_idle(
    smtpd_factory: Callable[..., SmtpdServer], redis_client: redis.Redis
) -> None:
    server = smtpd_factory()
    cap = RedisConnectionLimiter(redis_client, "acct", limit=1, lease_ttl=0.3)
    with _pool(server.port, cap, max_connections=1, idle_timeout=1.5) as pool:
        with pool.connection() as session:
            session.noop()
        # Three lease lifetimes later the connection is still open, so its lease is still
        # alive (renewed by the keeper): nobody else gets the slot.
        time.sleep(0.9)
        assert cap.try_acquire() is None
        # Idle for longer than idle_timeout: closed, and the slot is free for others.
        _wait_until(lambda: cap.holders() == 0)
        assert server.recorder.verbs.count("QUIT") == 1
        # Used again: a new connection under a new lease, renewed by the same keeper.
        with pool.connection() as session:
            session.noop()
        time.sleep(0.9)
        assert cap.try_acquire() is None
    assert cap.holders() == 0


def test_a_throttling_reply_penalizes_every_sender_and_is_retryable(
    smtpd_factory: Callable[..., SmtpdServer], redis_client: redis.Redis
) -> None:
    server = smtpd_factory(data_reply="451 4.7.0 Too many messages, slow down")
    rate = RedisRateLimiter(redis_client, "acct", messages=[Rate.per_second(100)])
    ledger = DeliveryLedger(redis_client, "plain")
    with _pool(server.port, max_connections=1) as pool:
        [result] = deliver_chunk(
            [_item(1)], pool=pool, rate=rate, ledger=ledger, retry=RetryPolicy(throttle_delay=30)
        )
    assert result["status"] == "refused" and result["transient"] is True
    assert result["reply"]["enhanced"] == "4.7.0"
    assert is_retryable(result)
    assert result["ledger"] == "failed"  # nothing was accepted: a retry may claim it again
    peer = RedisRateLimiter(redis_client, "acct", messages=[Rate.per_second(100)])
    assert peer.reserve() > 29  # another sender of the same budget waits out the penalty
    assert ledger.claim("<1@t>").may_send


def test_the_same_key_twice_in_one_chunk_is_sent_once(
    smtpd_factory: Callable[..., SmtpdServer], redis_client: redis.Redis
) -> None:
    server = smtpd_factory()
    ledger = DeliveryLedger(redis_client, "plain")
    with _pool(server.port, max_connections=2) as pool:
        results = deliver_chunk([_item(1), _item(2), _item(1)], pool=pool, ledger=ledger)
    assert [r["status"] for r in results] == ["accepted", "accepted", "deferred"]
    assert len(server.recorder.messages) == 2
    with _pool(server.port) as pool:  # the deferred one, retried: a duplicate, not resent
        [again] = deliver_chunk([_item(1)], pool=pool, ledger=ledger)
    assert again["status"] == "accepted" and again["duplicate"] is True
    assert len(server.recorder.messages) == 2


def test_redis_down_before_the_chunk_defers_everything_and_sends_nothing(
    smtpd_factory: Callable[..., SmtpdServer],
) -> None:
    server = smtpd_factory()
    dead = from_url("redis://127.0.0.1:1/0", timeout=1)
    ledger = DeliveryLedger(dead, "plain")
    rate = RedisRateLimiter(dead, "acct", messages=[Rate.per_second(10)])
    with _pool(server.port) as pool:
        results = deliver_chunk(
            [_item(1), _item(2)], pool=pool, rate=rate, ledger=ledger, patience=0.3
        )
    assert [r["status"] for r in results] == ["deferred", "deferred"]
    assert all("Redis unavailable" in str(r["reason"]) for r in results)
    assert is_retryable(results[0])
    assert server.recorder.messages == []


def test_the_shared_rate_failing_mid_chunk_stops_the_batch_and_releases_what_was_not_sent(
    smtpd_factory: Callable[..., SmtpdServer], redis_client: redis.Redis
) -> None:
    # The ledger's Redis is up, the rate's is not: the first message is claimed and marked
    # "sending" as the pool takes it, then its rate reservation fails for good.
    server = smtpd_factory()
    ledger = DeliveryLedger(redis_client, "plain")
    rate = RedisRateLimiter(
        from_url("redis://127.0.0.1:1/0", timeout=1), "acct", messages=[Rate.per_second(10)]
    )
    with _pool(server.port, max_connections=1) as pool:
        results = deliver_chunk(
            [_item(1), _item(2)], pool=pool, rate=rate, ledger=ledger, patience=0.3
        )
    assert server.recorder.messages == []
    assert results[0]["status"] == "failed" and results[0]["retryable"] is True
    assert results[0]["ledger"] == "failed"  # never handed over: released, not parked
    assert results[1]["status"] == "deferred" and is_retryable(results[1])
    assert ledger.claim("<1@t>").may_send and ledger.claim("<2@t>").may_send


def test_a_lost_chunk_takes_the_ledgers_final_word_and_is_otherwise_unknown(
    redis_client: redis.Redis,
) -> None:
    pytest.importorskip("celery", reason="the celery extra is not installed")
    from mailsdk import DeliveryStatus
    from mailsdk.integrations._wire import outcome_from_json
    from mailsdk.integrations.celery.fanout import _lost

    ledger = DeliveryLedger(redis_client, "plain")
    done = ledger.claim("<1@t>")
    ledger.record("<1@t>", done.owner, DeliveryStatus.ACCEPTED, {"queue_id": "Q1"})
    ledger.claim("<2@t>")  # claimed, its task may still send it
    error = TimeoutError("no result within the timeout")
    results = [_lost({"index": n, "key": f"<{n}@t>"}, error, ledger) for n in (1, 2, 3)]
    outcomes = [outcome_from_json(r) for r in results]
    assert results[0]["status"] == "accepted" and results[0]["queue_id"] == "Q1"
    assert [o.status for o in outcomes[1:]] == [DeliveryStatus.UNKNOWN] * 2
    assert all("chunk task failed" in str(o.error) for o in outcomes[1:])


def test_redis_down_while_a_pool_opens_a_connection_does_not_leak_the_pool_slot(
    smtpd_factory: Callable[..., SmtpdServer], fresh_redis: RedisServer
) -> None:
    server = smtpd_factory()
    client = from_url(fresh_redis.url, timeout=2)
    cap = RedisConnectionLimiter(client, "acct", limit=2, lease_ttl=5)
    with _pool(server.port, cap, max_connections=1, checkout_timeout=5) as pool:
        fresh_redis.stop()
        with pytest.raises(CoordinationUnavailable):
            pool.checkout()  # the lease could not be taken: no connection
        fresh_redis.start()
        # Before: the failed opening kept the pool's only slot, so every later checkout
        # waited for it (a Celery worker process could never send again).
        assert pool.stats()["open"] == 0
        with pool.connection() as session:
            session.noop()
    assert cap.holders() == 0
    client.close()


async def test_redis_down_while_an_async_pool_opens_a_connection_does_not_leak_the_slot(
    smtpd_factory: Callable[..., SmtpdServer], fresh_redis: RedisServer
) -> None:
    import redis.asyncio

    server = smtpd_factory()
    client = redis.asyncio.Redis.from_url(
        fresh_redis.url, socket_timeout=2, socket_connect_timeout=2
    )
    cap = AsyncRedisConnectionLimiter(client, "acct", limit=2, lease_ttl=5)
    builder = ClientBuilder.smtp("127.0.0.1", server.port).with_tls("none").with_timeouts(10)
    pool = builder.build_async().pool(max_connections=1, connection_limiter=cap, checkout_timeout=5)
    try:
        fresh_redis.stop()
        with pytest.raises(CoordinationUnavailable):
            await pool.checkout()
        fresh_redis.start()
        assert pool.stats()["open"] == 0
        async with pool.connection() as session:
            await session.noop()
    finally:
        await pool.aclose()
        await client.aclose()


def test_a_duplicate_repeats_the_earlier_sends_reply_and_queue_id(
    smtpd_factory: Callable[..., SmtpdServer], redis_client: redis.Redis
) -> None:
    from mailsdk import DeliveryStatus
    from mailsdk.integrations._wire import outcome_from_json

    server = smtpd_factory()
    ledger = DeliveryLedger(redis_client, "plain")
    with _pool(server.port) as pool:
        [first] = deliver_chunk([_item(1)], pool=pool, ledger=ledger)
        [again] = deliver_chunk([_item(1)], pool=pool, ledger=ledger)  # a redelivered task
    assert len(server.recorder.messages) == 1
    assert again["duplicate"] is True and again["attempts"] == first["attempts"]
    # Before: the duplicate said "accepted" with no reply, queue id or recipients, so its
    # SendOutcome was ACCEPTED with result None.
    assert (again["reply"], again["queue_id"]) == (first["reply"], first["queue_id"])
    outcome = outcome_from_json(again, sender="a@client.test")
    assert outcome.status is DeliveryStatus.ACCEPTED and outcome.attempts == 0
    assert outcome.result is not None and outcome.result.accepted == ("bob@example.test",)
    assert outcome.result.reply.code == 250
