"""``send_many`` through the real Postfix: hundreds of messages on one connection, every one
read back from the Maildir byte for byte, none delivered twice (both modes)."""

from __future__ import annotations

import collections
import re
import time

import pytest
from tests._support.modes import Mode
from tests._support.mta import MtaEnvironment, as_sent, build_message
from tests.mta.mailsdk_support import SENDER, TRICKY_BODY, lmtp_builder, smtp_builder

from mailsdk import DeliveryStatus, Outgoing

pytestmark = pytest.mark.mta

MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.MULTILINE | re.IGNORECASE)


def _stored_by_id(env: MtaEnvironment, user: str) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = collections.defaultdict(list)
    for stored in env.messages(user):
        match = MESSAGE_ID.search(stored)
        if match is not None:
            found[match.group(1)].append(stored)
    return found


def _wait_for_all(
    env: MtaEnvironment, user: str, ids: set[bytes], timeout: float = 60.0
) -> dict[bytes, list[bytes]]:
    deadline = time.monotonic() + timeout
    while True:
        stored = _stored_by_id(env, user)
        if ids <= stored.keys() or time.monotonic() > deadline:
            return stored
        time.sleep(0.2)


@pytest.mark.parametrize(("count", "chunking"), [(500, False), (120, True)])
async def test_hundreds_of_messages_on_one_connection(
    mode: Mode, mta_env: MtaEnvironment, count: int, chunking: bool
) -> None:
    sent = [
        build_message("carol@example.test", subject=f"many {i}", body=TRICKY_BODY)
        for i in range(count)
    ]
    items = [
        Outgoing(message, sender=SENDER, recipients=["carol@example.test"], key=str(i))
        for i, (message, _id) in enumerate(sent)
    ]
    builder = smtp_builder(mta_env).with_chunking(chunking, chunk_size=64)
    async with mode.session(builder) as s:
        assert s.capabilities.pipelining
        outcomes = await s.send_many_list(items)
        assert (await s.noop()).code == 250
    assert [(o.index, o.key, o.status) for o in outcomes] == [
        (i, str(i), DeliveryStatus.ACCEPTED) for i in range(count)
    ]
    queue_ids = [o.result.queue_id for o in outcomes if o.result is not None]
    assert len(set(queue_ids)) == count  # one queue entry per message

    ids = {message_id for _message, message_id in sent}
    stored = _wait_for_all(mta_env, "carol", ids)
    missing = ids - stored.keys()
    assert not missing, f"{len(missing)} messages never arrived"
    twice = [i for i in ids if len(stored[i]) != 1]
    assert not twice, f"{len(twice)} messages delivered more than once"
    for message, message_id in sent:
        assert as_sent(stored[message_id][0]) == message


@pytest.mark.parametrize("chunking", [False, True])
async def test_lmtp_send_many_reports_each_recipient(
    mode: Mode, mta_env: MtaEnvironment, chunking: bool
) -> None:
    """Dovecot LMTP: per-recipient results per message, the next envelope pipelined."""
    sent = [
        build_message("alice@example.test", subject=f"lmtp {i}", body=TRICKY_BODY)
        for i in range(30)
    ]
    recipients = ["alice@example.test", "nobody@example.test", "bob@example.test"]
    items = [Outgoing(message, sender=SENDER, recipients=recipients) for message, _id in sent]
    builder = lmtp_builder(mta_env, "tcp").with_chunking(chunking, chunk_size=100)
    async with mode.session(builder) as s:
        outcomes = await s.send_many_list(items)
    assert [o.status for o in outcomes] == [DeliveryStatus.PARTIAL] * len(sent)
    for outcome in outcomes:
        assert outcome.result is not None and outcome.result.lmtp
        assert outcome.result.accepted == ("alice@example.test", "bob@example.test")
        assert list(outcome.result.refused) == ["nobody@example.test"]
    ids = {message_id for _message, message_id in sent}
    for user in ("alice", "bob"):
        stored = _wait_for_all(mta_env, user, ids)
        assert all(len(stored[i]) == 1 for i in ids), user
        for message, message_id in sent:
            assert as_sent(stored[message_id][0]) == message
