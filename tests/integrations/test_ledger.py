"""The delivery ledger against a real redis-server: claims, duplicates, expiry, UNKNOWN review."""

from __future__ import annotations

import email.message
import threading
import time

import pytest

pytest.importorskip("redis", reason="the redis extra is not installed")

import redis
from tests._support.redis_server import RedisServer

from mailsdk import DeliveryStatus, Outgoing
from mailsdk.errors import ConfigurationError, InvalidInputError
from mailsdk.integrations._wire import message_key
from mailsdk.integrations.redis import CoordinationUnavailable, DeliveryLedger, LedgerState

pytestmark = pytest.mark.redis


def test_claim_send_record_then_a_second_claim_never_sends(redis_client: redis.Redis) -> None:
    ledger = DeliveryLedger(redis_client, "t")
    claim = ledger.claim("k1")
    assert claim.may_send and claim.attempts == 1
    assert ledger.sending("k1", claim.owner)
    assert ledger.record("k1", claim.owner, DeliveryStatus.ACCEPTED, {"queue_id": "ABC"})
    again = ledger.claim("k1")
    assert again.verdict == "accepted" and not again.may_send
    entry = ledger.get("k1")
    assert entry is not None and entry.state is LedgerState.ACCEPTED
    assert entry.detail == {"queue_id": "ABC"}


def test_a_live_claim_makes_a_duplicate_busy(redis_client: redis.Redis) -> None:
    ledger = DeliveryLedger(redis_client, "t")
    first = ledger.claim("k")
    dup = ledger.claim("k")
    assert dup.verdict == "busy" and not dup.may_send
    # The duplicate cannot sneak into "sending" with its own owner token either.
    assert ledger.sending("k", dup.owner) is False
    assert ledger.record("k", dup.owner, DeliveryStatus.ACCEPTED) is False
    assert ledger.sending("k", first.owner) is True


def test_only_one_of_many_racing_claimers_wins(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    verdicts: list[str] = []
    lock = threading.Lock()

    def race() -> None:
        client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
        got = DeliveryLedger(client, "t").claim("contended").verdict
        with lock:
            verdicts.append(got)
        client.close()

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(verdicts) == ["busy"] * 7 + ["claimed"]


def _wait_for_expiry(ledger: DeliveryLedger, key: str, verdicts: set[str]) -> str:
    deadline = time.monotonic() + 10
    while True:
        verdict = ledger.claim(key).verdict
        if verdict in verdicts:
            return verdict
        assert verdict == "busy"
        assert time.monotonic() < deadline, "claim never expired"
        time.sleep(0.05)


def test_an_expired_claim_before_sending_is_taken_over(redis_client: redis.Redis) -> None:
    ledger = DeliveryLedger(redis_client, "t", claim_ttl=0.2)
    dead = ledger.claim("k")
    assert dead.may_send  # ... and the worker dies before marking it "sending"
    assert _wait_for_expiry(ledger, "k", {"claimed"}) == "claimed"
    assert ledger.sending("k", dead.owner) is False  # the dead owner can no longer send it
    assert ledger.get("k").attempts == 2  # type: ignore[union-attr]


def test_an_expired_claim_while_sending_is_parked_unknown(redis_client: redis.Redis) -> None:
    ledger = DeliveryLedger(redis_client, "t", claim_ttl=0.2)
    dead = ledger.claim("k")
    assert ledger.sending("k", dead.owner)  # end-of-data may have been written, then it died
    assert _wait_for_expiry(ledger, "k", {"unknown"}) == "unknown"
    assert ledger.claim("k").verdict == "unknown"  # stays parked: never resent
    parked = ledger.unknown()
    assert [e.key for e in parked] == ["k"]
    assert parked[0].reason and "stopped" in parked[0].reason
    # The late owner's real outcome still wins over the guess (it knows the server said 250).
    assert ledger.record("k", dead.owner, DeliveryStatus.ACCEPTED) is True
    assert ledger.unknown() == []


def test_unknown_outcomes_are_parked_and_reviewed(redis_client: redis.Redis) -> None:
    ledger = DeliveryLedger(redis_client, "t")
    for key in ("a", "b"):
        claim = ledger.claim(key)
        ledger.sending(key, claim.owner)
        ledger.record(key, claim.owner, DeliveryStatus.UNKNOWN, {"error": "ReadTimeout"})
    assert [e.key for e in ledger.unknown()] == ["a", "b"]
    assert ledger.claim("a").verdict == "unknown"
    ledger.resolve("a", delivered=True)
    ledger.resolve("b", delivered=False)
    assert ledger.unknown() == []
    assert ledger.claim("a").verdict == "accepted"
    assert ledger.claim("b").may_send  # reviewed as not delivered: it may go out again


def test_transient_failures_may_be_claimed_again(redis_client: redis.Redis) -> None:
    ledger = DeliveryLedger(redis_client, "t")
    claim = ledger.claim("k")
    ledger.record("k", claim.owner, DeliveryStatus.FAILED)
    again = ledger.claim("k")
    assert again.may_send and again.attempts == 2
    refused = ledger.claim("r")
    ledger.record("r", refused.owner, DeliveryStatus.REFUSED)
    assert ledger.claim("r").verdict == "refused"


def test_keys_come_from_outgoing_key_else_message_id() -> None:
    assert message_key(Outgoing(b"Subject: x\r\n\r\nbody", key="mine")) == "mine"
    raw = b"Message-ID: <abc@x>\r\nSubject: x\r\n\r\nMessage-ID: <not-this>\r\n"
    assert message_key(Outgoing(raw)) == "<abc@x>"
    msg = email.message.EmailMessage()
    msg["Message-ID"] = "<em@x>"
    assert message_key(Outgoing(msg)) == "<em@x>"
    with pytest.raises(InvalidInputError):
        message_key(Outgoing(b"Subject: no id\r\n\r\n"))


def test_ledger_settings_are_validated(redis_client: redis.Redis) -> None:
    with pytest.raises(ConfigurationError):
        DeliveryLedger(redis_client, "t", claim_ttl=0)
    with pytest.raises(ConfigurationError):
        DeliveryLedger(redis_client, "t", claim_ttl=100, retention=10)
    with pytest.raises(ConfigurationError):
        DeliveryLedger(redis_client, "two words")


def test_redis_restart_keeps_the_ledger(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    ledger = DeliveryLedger(client, "restart")
    claim = ledger.claim("kept")
    ledger.record("kept", claim.owner, DeliveryStatus.ACCEPTED)
    redis_server.stop()
    with pytest.raises(CoordinationUnavailable):
        ledger.claim("other")  # down: a clear error, nothing claimed, nothing sent
    redis_server.start()
    assert ledger.claim("kept").verdict == "accepted"  # the AOF kept it
    client.close()


def test_repeating_a_call_whose_reply_was_lost_is_harmless(redis_client: redis.Redis) -> None:
    ledger = DeliveryLedger(redis_client, "t")
    claim = ledger.claim("k", owner="token-1")
    assert ledger.claim("k", owner="token-1").may_send  # the same owner again: still ours
    assert ledger.sending("k", claim.owner)
    assert ledger.sending("k", claim.owner)  # repeated: still allowed, still one sender
    assert ledger.claim("k").verdict == "busy"


def test_a_slow_redis_is_a_bounded_clear_error_and_the_claim_can_be_repeated(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    impatient = redis.Redis.from_url(redis_server.url, socket_timeout=0.3)
    ledger = DeliveryLedger(impatient, "slow")
    blocker = threading.Thread(target=redis_client.execute_command, args=("DEBUG", "SLEEP", "1.5"))
    blocker.start()
    time.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(CoordinationUnavailable):
        ledger.claim("k", owner="tok")  # Redis runs it after the sleep; the reply is too late
    assert time.monotonic() - started < 1.2  # bounded by the socket timeout, never a hang
    blocker.join()
    # Whether or not the timed-out claim ran, repeating it with the same owner is ours.
    assert ledger.claim("k", owner="tok").may_send
    impatient.close()


def test_the_review_command_lists_and_resolves_parked_messages(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    import json
    import os
    import subprocess
    import sys

    ledger = DeliveryLedger(redis_client, "ops")
    claim = ledger.claim("<lost@x>")
    ledger.sending("<lost@x>", claim.owner)
    ledger.record("<lost@x>", claim.owner, DeliveryStatus.UNKNOWN, {"error": "DeliveryUnknown"})
    env = {**os.environ, "MAILSDK_REDIS_URL": redis_server.url}
    base = [sys.executable, "-m", "mailsdk.integrations.redis"]
    listed = subprocess.run(
        [*base, "unknown", "--ledger", "ops"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    [line] = [json.loads(x) for x in listed.stdout.splitlines()]
    assert line["key"] == "<lost@x>" and line["detail"] == {"error": "DeliveryUnknown"}
    done = subprocess.run(
        [*base, "resolve", "--ledger", "ops", "--delivered", "<lost@x>"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert ledger.unknown() == [] and ledger.claim("<lost@x>").verdict == "accepted"
    down = subprocess.run(
        [*base, "unknown"],
        env={**env, "MAILSDK_REDIS_URL": "redis://:pw-x1@127.0.0.1:1/0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 1 and "pw-x1" not in down.stderr + down.stdout


def _park(ledger: DeliveryLedger, key: str) -> None:
    claim = ledger.claim(key)
    assert ledger.sending(key, claim.owner)
    assert ledger.record(key, claim.owner, DeliveryStatus.UNKNOWN, {"error": "ReadTimeout"})


def test_resolve_changes_only_a_parked_message(redis_client: redis.Redis) -> None:
    ledger = DeliveryLedger(redis_client, "t")
    done = ledger.claim("sent")
    ledger.sending("sent", done.owner)
    ledger.record("sent", done.owner, DeliveryStatus.ACCEPTED, {"queue_id": "Q1"})
    # "not delivered" on an accepted message used to drop its entry: the next send went out.
    assert ledger.resolve("sent", delivered=False) is False
    assert ledger.claim("sent").verdict == "accepted"
    # ... and on a message a live worker is sending right now, its claim.
    live = ledger.claim("live")
    ledger.sending("live", live.owner)
    assert ledger.resolve("live", delivered=False) is False
    assert ledger.claim("live").verdict == "busy"
    assert ledger.record("live", live.owner, DeliveryStatus.ACCEPTED) is True
    # "delivered" on a mistyped key used to create an accepted entry that never expired.
    assert ledger.resolve("typo", delivered=True) is False
    assert ledger.get("typo") is None
    _park(ledger, "parked")
    assert ledger.resolve("parked", delivered=True) is True
    entry = ledger.get("parked")
    assert entry is not None and entry.state is LedgerState.ACCEPTED
    assert 0 < redis_client.ttl(ledger._entry("parked")) <= 7 * 24 * 3600  # kept for retention
    assert ledger.resolve("parked", delivered=True) is False  # resolved already


def test_expired_parked_entries_never_hide_live_ones(redis_client: redis.Redis) -> None:
    ledger = DeliveryLedger(redis_client, "t", claim_ttl=1, retention=1)
    for n in range(3):
        _park(ledger, f"old-{n}")
    time.sleep(2.2)  # their entries expire after retention; the parked set still names them
    _park(ledger, "new")
    assert [e.key for e in ledger.unknown(limit=1)] == ["new"]
    assert [e.key for e in ledger.unknown()] == ["new"]
    assert redis_client.zcard(ledger._parked) == 1  # the expired ones were dropped


def test_the_review_command_refuses_to_resolve_a_key_that_is_not_parked(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    import os
    import subprocess
    import sys

    ledger = DeliveryLedger(redis_client, "ops")
    done = ledger.claim("<sent@x>")
    ledger.record("<sent@x>", done.owner, DeliveryStatus.ACCEPTED)
    _park(ledger, "<lost@x>")
    command = [sys.executable, "-m", "mailsdk.integrations.redis", "resolve", "--ledger", "ops"]
    proc = subprocess.run(
        [*command, "--not-delivered", "<sent@x>", "<lost@x>"],
        env={**os.environ, "MAILSDK_REDIS_URL": redis_server.url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "<sent@x>" in proc.stderr and "accepted" in proc.stderr
    assert ledger.claim("<sent@x>").verdict == "accepted"  # never sent twice
    assert ledger.get("<lost@x>") is None  # the parked one was resolved


def test_a_message_left_sending_is_listed_unknown_without_a_second_claim(
    redis_client: redis.Redis,
) -> None:
    ledger = DeliveryLedger(redis_client, "t", claim_ttl=1)
    dead = ledger.claim("<gone@x>")
    assert ledger.sending("<gone@x>", dead.owner)  # ... then its worker died (or was revoked)
    live = ledger.claim("<live@x>")
    assert ledger.sending("<live@x>", live.owner)
    done = ledger.claim("<done@x>")
    assert ledger.sending("<done@x>", done.owner)
    assert ledger.record("<done@x>", done.owner, DeliveryStatus.ACCEPTED)
    until = time.monotonic() + 1.6  # <gone@x>'s claim lapses; <live@x>'s is kept alive
    while time.monotonic() < until:
        assert ledger.renew(["<live@x>"], live.owner) == 1
        time.sleep(0.1)
    # Before: nobody claimed <gone@x> again (its task was not redelivered), so it stayed
    # "sending" for good and the review list never showed it.
    assert [e.key for e in ledger.unknown()] == ["<gone@x>"]
    assert ledger.claim("<gone@x>").verdict == "unknown"  # and it is never resent
    assert ledger.claim("<live@x>").verdict == "busy"  # a live sender's message is left alone
    assert ledger.record("<live@x>", live.owner, DeliveryStatus.ACCEPTED)
    assert redis_client.zcard(ledger._in_flight) == 0


@pytest.mark.parametrize(
    "key",
    [
        "file-\udcff.eml",  # os.fsdecode of a file name that is not UTF-8
        "<ünï\u2028cödé@x> \t\r\n: *?[]{}",
        "<" + "x" * 20_000 + "@x>",
    ],
)
def test_odd_and_very_long_keys_round_trip(redis_client: redis.Redis, key: str) -> None:
    ledger = DeliveryLedger(redis_client, "t")
    claim = ledger.claim(key)  # a surrogate escape raised a bare UnicodeEncodeError here
    assert claim.may_send and ledger.sending(key, claim.owner)
    assert ledger.record(key, claim.owner, DeliveryStatus.UNKNOWN)
    [parked] = ledger.unknown()
    assert parked.key == key
    assert ledger.claim(key).verdict == "unknown"
    assert ledger.resolve(parked.key, delivered=True)
    assert ledger.claim(key).verdict == "accepted"
    assert ledger.unknown() == []


@pytest.mark.parametrize(
    ("url", "argv"),
    [
        ("http://:pw-91@h/0", ["unknown"]),
        ("redis://:pw-91@h:notaport/0", ["unknown"]),
        ("redis://:pw-91@127.0.0.1:1/0", ["unknown", "--ledger", "two words"]),
    ],
)
def test_the_review_command_reports_bad_input_without_a_traceback(
    url: str, argv: list[str]
) -> None:
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "mailsdk.integrations.redis", *argv],
        env={**os.environ, "MAILSDK_REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Before: a Python traceback (ValueError, ConfigurationError) and exit status 1.
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "pw-91" not in proc.stderr + proc.stdout


def test_from_url_refuses_what_is_not_a_redis_url_without_repeating_it() -> None:
    from mailsdk.integrations.redis import from_url

    with pytest.raises(ConfigurationError) as caught:
        from_url("http://:pw-92@h/0")
    assert "pw-92" not in str(caught.value)
