"""Real Celery workers (prefork, Redis broker) sending to the real Postfix; Maildirs read back.

Markers: ``celery`` and ``mta`` (skipped with the reason when redis-server, Postfix or the
extras are missing); the long runs are also ``slow``.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid

import pytest
import redis
from tests._support.mta import MtaEnvironment

from mailsdk import Outgoing
from mailsdk.integrations.celery import ClusterReport, send_batch
from mailsdk.integrations.redis import DeliveryLedger

from .conftest import Cluster

pytestmark = [pytest.mark.celery, pytest.mark.mta, pytest.mark.timeout(170)]

_MSG_ID = re.compile(rb"^Message-ID: <([^>]+)>", re.MULTILINE | re.IGNORECASE)


def _items(run: str, count: int) -> list[Outgoing]:
    items = []
    for n in range(count):
        raw = (
            f"From: sender@client.test\r\nTo: alice@example.test\r\n"
            f"Subject: {run} {n}\r\nMessage-ID: <{run}.{n}@client.test>\r\n\r\nHello {n}.\r\n"
        ).encode()
        items.append(Outgoing(raw, sender="sender@client.test", recipients=["alice@example.test"]))
    return items


def _delivered(mta: MtaEnvironment, run: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in mta.messages("alice"):
        match = _MSG_ID.search(message)
        if match and match.group(1).decode().startswith(run + "."):
            key = f"<{match.group(1).decode()}>"
            counts[key] = counts.get(key, 0) + 1
    return counts


def _wait_delivered(
    mta: MtaEnvironment, run: str, expected: int, timeout: float = 60
) -> dict[str, int]:
    """Postfix delivers asynchronously: wait until ``expected`` messages (or no progress)."""
    deadline = time.monotonic() + timeout
    last, stable_since = -1, time.monotonic()
    while True:
        got = _delivered(mta, run)
        total = sum(got.values())
        if total >= expected and time.monotonic() - stable_since > 1.0:
            return got
        if total != last:
            last, stable_since = total, time.monotonic()
        elif time.monotonic() - stable_since > 10 or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_batch_fans_out_and_every_message_arrives_once(
    cluster: Cluster, integration_mta: MtaEnvironment
) -> None:
    cluster.start(2, concurrency=2)
    run = uuid.uuid4().hex[:12]
    report = send_batch(cluster.tasks, _items(run, 40), chunk_size=5, timeout=120)
    assert isinstance(report, ClusterReport)
    assert report.ok, (report.counts, cluster.logs())
    assert len(report.results) == 40
    assert [r["index"] for r in report.results] == list(range(40))
    first = report.results[0]
    assert first["reply"]["code"] == 250 and first["reply"]["enhanced"] == "2.0.0"
    assert first["queue_id"]
    assert first["accepted"] == ["alice@example.test"]
    got = _wait_delivered(integration_mta, run, 40)
    assert sorted(got.values()) == [1] * 40
    # A second publication of the same batch is refused by the ledger: nothing is sent twice.
    again = send_batch(cluster.tasks, _items(run, 40), chunk_size=20, timeout=120)
    assert {r["status"] for r in again.results} == {"accepted"}
    assert all(r.get("duplicate") for r in again.results)
    time.sleep(1.0)
    assert sorted(_delivered(integration_mta, run).values()) == [1] * 40
    # One connection per process, reused across tasks (never one per message).
    assert cluster.relay.total <= 4, cluster.relay.total
