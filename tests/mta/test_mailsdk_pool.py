"""A batch through a pool into real Postfix: 2,000 messages over 4 connections, each found in
the Maildir exactly once.

Layer: tests (markers ``mta`` and ``slow``; about 20-60 s per mode on a CI box, mostly Postfix's
own delivery). Each message carries a unique ``X-Batch-Id`` so the check reads back exactly the
messages of this run, whatever earlier tests left in the mailbox.
"""

from __future__ import annotations

import collections
import re
import time
import uuid

import pytest
from tests._support.modes import Mode
from tests._support.mta import MtaEnvironment
from tests.mta.mailsdk_support import SENDER, smtp_builder
from tests.pool.conftest import run_batch

from mailsdk import DeliveryStatus, Outgoing
from mailsdk.batch import RetryPolicy

pytestmark = [pytest.mark.mta, pytest.mark.slow, pytest.mark.timeout(300)]

COUNT = 2000
RECIPIENT = "alice@example.test"


def items(run_id: str) -> list[Outgoing]:
    out = []
    for i in range(COUNT):
        body = (
            f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: pool {i}\r\n"
            f"Message-ID: <{run_id}.{i}@client.test>\r\nX-Batch-Id: {run_id}/{i}\r\n\r\n"
            f"message {i} of {COUNT}\r\n" + "x" * 2000 + "\r\n"
        ).encode()
        out.append(Outgoing(body, sender=SENDER, recipients=(RECIPIENT,), key=f"{run_id}/{i}"))
    return out


async def test_two_thousand_messages_through_a_pool_of_four(
    mode: Mode, mta_env: MtaEnvironment
) -> None:
    run_id = uuid.uuid4().hex
    outcomes, report = await run_batch(
        mode,
        smtp_builder(mta_env).with_timeouts(30.0),
        items(run_id),
        pool={"max_connections": 4},
        retry=RetryPolicy(attempts=3, backoff=0.2),
    )
    assert len({o.index for o in outcomes}) == COUNT
    assert report.counts[DeliveryStatus.ACCEPTED] == COUNT, report.summary()
    assert all(o.result is not None and o.result.queue_id for o in outcomes)
    _read_back(mta_env, run_id)


def test_two_thousand_messages_through_two_worker_processes(mta_env: MtaEnvironment) -> None:
    """The same batch with ``processes=2`` (two forked workers, two connections each)."""
    run_id = uuid.uuid4().hex
    client = smtp_builder(mta_env).with_timeouts(30.0).build()
    with client.pool(max_connections=4) as pool:
        run = pool.send_batch(
            items(run_id), processes=2, retry=RetryPolicy(attempts=3, backoff=0.2)
        )
        outcomes = list(run)
    assert len({o.index for o in outcomes}) == COUNT
    assert run.report.counts[DeliveryStatus.ACCEPTED] == COUNT, run.report.summary()
    assert all(o.result is not None and o.result.queue_id for o in outcomes)
    _read_back(mta_env, run_id)


def _read_back(mta_env: MtaEnvironment, run_id: str) -> None:
    pattern = re.compile(rb"X-Batch-Id: " + run_id.encode() + rb"/(\d+)")
    deadline = time.monotonic() + 180
    while True:
        found = collections.Counter(
            int(m.group(1))
            for raw in mta_env.messages(RECIPIENT)
            if (m := pattern.search(raw)) is not None
        )
        if sum(found.values()) >= COUNT or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(found) == list(range(COUNT)), mta_env.logs()
    assert set(found.values()) == {1}  # every message exactly once
