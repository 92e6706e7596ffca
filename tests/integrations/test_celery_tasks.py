"""The Celery tasks in real prefork workers (Redis broker) in front of aiosmtpd: retries, the
ledger's verdicts and what the results say. The real-Postfix runs are in test_celery_cluster.

Markers: ``celery`` and ``redis`` (skipped with the reason when redis-server or the extras are
missing).
"""

from __future__ import annotations

import json
import time
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("redis", reason="the redis extra is not installed")
pytest.importorskip("celery", reason="the celery extra is not installed")

import redis
from tests._support.redis_server import RedisServer
from tests._support.smtpd import SmtpdServer
from tests._support.tcp_relay import CountingRelay

from mailsdk import DeliveryStatus, Outgoing
from mailsdk.integrations.celery import send_batch
from mailsdk.integrations.redis import DeliveryLedger, LedgerState, RedisConnectionLimiter

from .conftest import Cluster

pytestmark = [pytest.mark.celery, pytest.mark.redis, pytest.mark.timeout(120)]


@pytest.fixture
def local_cluster(
    smtpd_factory: Callable[..., SmtpdServer], fresh_redis: RedisServer, tmp_path: Path
) -> Iterator[tuple[Cluster, SmtpdServer]]:
    """Celery workers (started by the test) sending to aiosmtpd through a counting relay."""
    server = smtpd_factory()
    relay = CountingRelay(server.host, server.port)
    cluster = Cluster(fresh_redis, relay, tmp_path)
    try:
        yield cluster, server
    finally:
        cluster.stop()
        relay.close()


def _outgoing(key: str) -> Outgoing:
    raw = f"From: a@client.test\r\nTo: bob@example.test\r\nMessage-ID: {key}\r\n\r\nhi\r\n"
    return Outgoing(raw.encode(), sender="a@client.test", recipients=["bob@example.test"])


def test_a_dead_workers_claims_are_waited_out_not_reported_as_never_sent(
    local_cluster: tuple[Cluster, SmtpdServer],
) -> None:
    cluster, server = local_cluster
    # Retries that run out long before a claim lapses (the defaults: 30 s of backoff against a
    # 300 s claim_ttl), scaled down: 2 tries 0.2 s apart against a 4 s claim.
    cluster.start(1, concurrency=1, retry_attempts="2", retry_backoff="0.2")
    client = redis.Redis.from_url(cluster.redis.url, socket_timeout=5)
    dead = DeliveryLedger(client, "itest", claim_ttl=4)
    # A worker that died (SIGKILL) mid-chunk: one message marked "sending" (its end-of-data
    # may have gone out), one merely "claimed" (never handed to the server).
    gone = dead.claim("<sending@t>", owner="dead")
    assert gone.may_send and dead.sending("<sending@t>", "dead")
    assert dead.claim("<claimed@t>", owner="dead").may_send
    try:
        report = send_batch(
            cluster.tasks,
            [_outgoing("<sending@t>"), _outgoing("<claimed@t>")],
            timeout=60,
        )
        by_key = {o.key: o for o in report.outcomes}
        # Before: both retried while the dead claims were live, ran out of tries and came back
        # FAILED "not sent", the "sending" one possibly delivered, the "claimed" one never sent.
        assert by_key["<claimed@t>"].status is DeliveryStatus.ACCEPTED, cluster.logs()
        assert by_key["<sending@t>"].status is DeliveryStatus.UNKNOWN, cluster.logs()
        assert [m.rcpt_tos for m in server.recorder.messages] == [["bob@example.test"]]
        parked = dead.unknown()
        assert [e.key for e in parked] == ["<sending@t>"]
        entry = dead.get("<claimed@t>")
        assert entry is not None and entry.state is LedgerState.ACCEPTED
    finally:
        client.close()


def test_a_message_another_live_worker_is_sending_is_never_reported_unsent(
    local_cluster: tuple[Cluster, SmtpdServer],
) -> None:
    cluster, server = local_cluster
    cluster.start(1, concurrency=1, retry_attempts="1")
    client = redis.Redis.from_url(cluster.redis.url, socket_timeout=5)
    other = DeliveryLedger(client, "itest", claim_ttl=60)
    assert other.claim("<busy@t>", owner="alive").may_send
    assert other.sending("<busy@t>", "alive")  # a live worker is in the transaction
    try:
        report = send_batch(cluster.tasks, [_outgoing("<busy@t>")], timeout=60)
        [outcome] = report.outcomes
        # It may be at the server right now: UNKNOWN, not FAILED "never sent".
        assert outcome.status is DeliveryStatus.UNKNOWN, outcome
        assert server.recorder.messages == []  # and this task did not send it again
    finally:
        client.close()


def _spans(path: Path, name: str, count: int) -> list[dict[str, typing.Any]]:
    deadline = time.monotonic() + 15
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        spans = [json.loads(line) for line in lines]
        named = [s for s in spans if s["name"] == name]
        if len(named) >= count or time.monotonic() > deadline:
            return named
        time.sleep(0.1)


def test_the_trace_context_survives_a_celery_retry(
    local_cluster: tuple[Cluster, SmtpdServer],
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    cluster, _server = local_cluster
    span_file = cluster.log_dir / "spans.jsonl"
    cluster.start(1, concurrency=1, retry_attempts="3", span_file=str(span_file))
    client = redis.Redis.from_url(cluster.redis.url, socket_timeout=5)
    try:
        # Held by a "dead" worker for 1 s: the first run defers it, the retry sends it.
        assert DeliveryLedger(client, "itest", claim_ttl=1).claim("<r@t>", owner="x").may_send
        tracer = TracerProvider().get_tracer("test-producer")
        with tracer.start_as_current_span("producer") as producer:
            report = send_batch(cluster.tasks, [_outgoing("<r@t>")], timeout=60)
        assert report.outcomes[0].status is DeliveryStatus.ACCEPTED, cluster.logs()
    finally:
        client.close()
    runs = _spans(span_file, "mailsdk.celery.send_chunk", 2)
    assert len(runs) == 2, runs  # the first run and its retry
    trace_id = f"{producer.get_span_context().trace_id:032x}"
    parent = f"{producer.get_span_context().span_id:016x}"
    # Before: the retry's span started a trace of its own (the header was not carried over).
    assert [(s["trace_id"], s["parent_id"]) for s in runs] == [(trace_id, parent)] * 2


_HANDOFF = types.SimpleNamespace(tasks=None)


def test_django_hand_off_of_one_message_id_to_different_people_sends_each(
    local_cluster: tuple[Cluster, SmtpdServer],
) -> None:
    pytest.importorskip("django", reason="the django extra is not installed")
    from django.core import mail
    from django.test import override_settings
    from tests._support.django_setup import ensure_django

    ensure_django()
    cluster, server = local_cluster
    cluster.start(1, concurrency=1)
    _HANDOFF.tasks = cluster.tasks
    people = ["bob@example.test", "carol@example.test", "dave@example.test"]
    with override_settings(MAILSDK_CELERY_TASKS=f"{__name__}:_HANDOFF.tasks"):
        # One announcement, one fixed Message-ID, sent to each person on their own.
        messages = [
            mail.EmailMessage(
                "news", "body", "a@client.test", [person], headers={"Message-ID": "<news@t>"}
            )
            for person in people
        ]
        assert mail.get_connection().send_messages(messages[:2]) == 2
        third = messages[2]
        assert mail.get_connection().send_messages([third]) == 1  # a later call
        deadline = time.monotonic() + 30
        while len(server.recorder.messages) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        # Before: the ledger keyed all three by the Message-ID alone and sent only the first.
        assert sorted(r for m in server.recorder.messages for r in m.rcpt_tos) == people
        # The very same delivery handed over twice (a duplicate publish) still goes out once.
        assert mail.get_connection().send_messages([third]) == 1
        time.sleep(2)
        assert len(server.recorder.messages) == 3, cluster.logs()


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_a_worker_without_prefork_closes_its_pool_at_shutdown(
    local_cluster: tuple[Cluster, SmtpdServer], pool: str
) -> None:
    cluster, server = local_cluster
    # A long lease: released at shutdown, not merely lapsed.
    cluster.start(1, concurrency=2, pool=pool, max_conn="2", lease_ttl="60", idle="60")
    report = send_batch(cluster.tasks, [_outgoing("<s@t>")], timeout=60)
    assert report.outcomes[0].status is DeliveryStatus.ACCEPTED, cluster.logs()
    client = redis.Redis.from_url(cluster.redis.url, socket_timeout=5)
    try:
        cap = RedisConnectionLimiter(client, "default", limit=2, lease_ttl=60)
        assert cap.holders() == 1  # the worker keeps its connection (and lease) between tasks
        cluster.workers[0].stop()
        # Before: only prefork children closed their pool (worker_process_shutdown); a solo or
        # threads worker left without QUIT and its lease blocked a slot for lease_ttl.
        assert cap.holders() == 0, cluster.logs()
    finally:
        client.close()
    assert server.recorder.verbs[-1] == "QUIT", server.recorder.verbs


def test_a_worker_whose_client_cannot_be_built_reports_failed_not_unknown(
    local_cluster: tuple[Cluster, SmtpdServer],
) -> None:
    cluster, server = local_cluster
    cluster.start(1, concurrency=1, broken_client="1")
    client = redis.Redis.from_url(cluster.redis.url, socket_timeout=5)
    try:
        ledger = DeliveryLedger(client, "itest")
        items = [_outgoing("<b1@t>"), _outgoing("<b2@t>")]
        report = send_batch(cluster.tasks, items, timeout=60, ledger=ledger)
        # Before: the chunk task raised, and its items came back UNKNOWN ("may have gone
        # out"), to be reviewed by hand, though nothing was even claimed.
        assert [o.status for o in report.outcomes] == [DeliveryStatus.FAILED] * 2, cluster.logs()
        assert all("KeyError" in str(o.error) for o in report.outcomes), report.outcomes
        assert ledger.get("<b1@t>") is None and ledger.unknown() == []
        assert server.recorder.messages == []
    finally:
        client.close()


def test_django_hand_off_carries_the_trace_context_into_the_task(
    local_cluster: tuple[Cluster, SmtpdServer],
) -> None:
    pytest.importorskip("django", reason="the django extra is not installed")
    from django.core import mail
    from django.test import override_settings
    from opentelemetry.sdk.trace import TracerProvider
    from tests._support.django_setup import ensure_django

    ensure_django()
    cluster, server = local_cluster
    span_file = cluster.log_dir / "spans.jsonl"
    cluster.start(1, concurrency=1, span_file=str(span_file))
    _HANDOFF.tasks = cluster.tasks
    tracer = TracerProvider().get_tracer("test-django-view")
    with override_settings(MAILSDK_CELERY_TASKS=f"{__name__}:_HANDOFF.tasks"):
        with tracer.start_as_current_span("view") as view:
            assert mail.send_mail("s", "b", "a@client.test", ["bob@example.test"]) == 1
    [run] = _spans(span_file, "mailsdk.celery.send_chunk", 1)
    # Before: the hand-off published no trace header; the task span began a trace of its own.
    assert run["trace_id"] == f"{view.get_span_context().trace_id:032x}"
    assert run["parent_id"] == f"{view.get_span_context().span_id:016x}"
    assert len(server.recorder.messages) == 1
