"""The express lane (``flows/express.py``) against the general ``deliver_many`` flow.

Each case plays one seeded policy server (refusals at every position, 421s, replies missing,
out of step or multiline, drops before and after a reply) against ``send_many`` twice: once on the
express lane, once with it turned off (the general flow, per-command machinery). Both must write
the same bytes and report the same outcome for every message.
"""

from __future__ import annotations

import random
import typing

import pytest
from tests._support.modes import Mode, plain_builder
from tests._support.policy_smtpd import (
    DROP_AFTER,
    DROP_BEFORE,
    MISSING,
    Command,
    PolicyServer,
    Reply,
)

import mailsdk
from mailsdk.client import _express, async_client, sync_client

_REPLIES: dict[str, list[tuple[float, bytes]]] = {
    "MAIL": [
        (0.86, b"250 2.1.0 ok\r\n"),
        (0.06, b"550 5.1.0 no\r\n"),
        (0.06, b"451 4.3.0 later\r\n"),
        (0.005, b"421 4.3.2 bye\r\n"),
    ],
    "RCPT": [
        (0.8, b"250 2.1.5 ok\r\n"),
        (0.09, b"550 5.1.1 unknown\r\n"),
        (0.09, b"452 4.5.3 too many\r\n"),
        (0.005, b"421 4.3.2 bye\r\n"),
    ],
    "DATA": [
        (0.88, b"354 go\r\n"),
        (0.05, b"554 5.3.0 no data\r\n"),
        (0.05, b"451 4.3.0 later\r\n"),
        (0.005, b"250 2.0.0 wrong\r\n"),
    ],
    "DATA.END": [
        (0.85, b"250 2.0.0 queued\r\n"),
        (0.07, b"554 5.6.0 rejected\r\n"),
        (0.06, b"452 4.3.1 full\r\n"),
        (0.005, b"421 4.3.2 bye\r\n"),
    ],
    "BDAT": [(0.95, b"250 2.0.0 chunk\r\n"), (0.05, b"554 5.6.0 chunk refused\r\n")],
    "BDAT LAST": [
        (0.85, b"250 2.0.0 queued\r\n"),
        (0.1, b"554 5.6.0 rejected\r\n"),
        (0.01, b"421 4.3.2 bye\r\n"),
    ],
    "RSET": [(0.97, b"250 2.0.0 reset\r\n"), (0.005, b"421 4.3.2 bye\r\n")],
}


def _pick(rng: random.Random, choices: list[tuple[float, bytes]]) -> bytes:
    roll = rng.random()
    for weight, data in choices:
        if roll < weight:
            return data
        roll -= weight
    return choices[0][1]  # the weights leave the rest to the usual reply


class SeededPolicy:
    """Replies decided by (seed, command number, verb) only: both clients meet the same server
    as long as they send the same commands."""

    def __init__(self, seed: int, faults: bool) -> None:
        self.seed = seed
        self.faults = faults

    def __call__(self, command: Command) -> Reply:
        rng = random.Random(f"{self.seed}/{command.number}/{command.verb}")
        data = _pick(rng, _REPLIES.get(command.verb, [(1.0, b"250 ok\r\n")]))
        if not self.faults:
            return Reply(data)
        roll = rng.random()
        if roll < 0.003:
            return Reply(data, fault=MISSING)
        if roll < 0.03:  # the same code as a multiline reply (RFC 5321 §4.2.1)
            return Reply(data[:3] + b"-first line\r\n" + data)
        if roll < 0.009:
            return Reply(data, fault=DROP_BEFORE)
        if roll < 0.012:
            return Reply(data, fault=DROP_AFTER)
        if roll < 0.015 and command.verb != "DATA":
            return Reply(b"354 out of step\r\n")
        return Reply(data)


_RECIPIENTS = ("a@example.test", "b@example.test", "c@example.test", "d@example.test")


def _items(seed: int) -> list[mailsdk.Outgoing]:
    rng = random.Random(seed)
    items = []
    for i in range(12):
        rcpts = rng.sample(_RECIPIENTS, rng.randint(1, 3))
        if rng.random() < 0.08:
            rcpts.append("bad\r\nRCPT TO:<x@example.test>")  # refused locally: nothing written
        body = f"Subject: {i}\r\n\r\n.line {i}\r\nend\r\n".encode()
        if rng.random() < 0.2:
            body = body * rng.randint(200, 2000)  # more than one write block
        items.append(mailsdk.Outgoing(body, sender="s@example.test", recipients=rcpts, key=str(i)))
    return items


def _summary(outcome: mailsdk.SendOutcome) -> tuple[object, ...]:
    result = outcome.result
    return (
        outcome.index,
        outcome.key,
        outcome.status,
        outcome.never_started,
        type(outcome.error).__name__ if outcome.error is not None else None,
        None
        if result is None
        else (
            result.accepted,
            tuple(sorted((r, x.code) for r, x in result.refused.items())),
            result.reply.code,
        ),
    )


def _watch_lanes(monkeypatch: pytest.MonkeyPatch, *, express: bool) -> list[bool]:
    """Turn the express lane on or off; the list records whether each call took it."""
    monkeypatch.setattr(_express, "ENABLED", express)
    opened: list[bool] = []
    real_open = _express.open_lane

    def spy(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        lane = real_open(*args, **kwargs)
        opened.append(lane is not None)
        return lane

    for facade in (sync_client, async_client):
        monkeypatch.setattr(facade, "open_lane", spy)
    return opened


async def _play(
    mode: Mode,
    seed: int,
    *,
    express: bool,
    ehlo: tuple[str, ...],
    faults: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[tuple[object, ...]], bytes, list[str], bool]:
    opened = _watch_lanes(monkeypatch, express=express)
    server = PolicyServer(SeededPolicy(seed, faults), ehlo=ehlo, io_timeout=5.0)
    try:
        session = await mode.connect(plain_builder("127.0.0.1", server.port).with_timeouts(0.5))
        try:
            outcomes = await session.send_many_list(_items(seed))
        finally:
            await session.close()
    finally:
        server.stop()
    return (
        [_summary(o) for o in outcomes],
        bytes(server.received),
        [c.verb for c in server.commands],
        any(opened),
    )


_EHLOS = {
    "pipelining": ("PIPELINING", "8BITMIME"),
    "chunking": ("PIPELINING", "CHUNKING", "8BITMIME"),
}


#: Every seed in blocking mode; a third of them through the asyncio runner (the same loop,
#: generated), each against a server with and without CHUNKING.
_CASES = [
    (mode, seed, ehlo)
    for ehlo in sorted(_EHLOS)
    for seed in range(150)
    for mode in ("sync", "async")
    if mode == "sync" or seed % 3 == 0
]


@pytest.mark.parametrize(("mode_name", "seed", "ehlo"), _CASES)
async def test_the_express_lane_writes_and_reports_what_the_general_flow_does(
    mode_name: str, seed: int, ehlo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mode = Mode(mode_name)
    caps = _EHLOS[ehlo]
    fast = await _play(
        mode, seed, express=True, ehlo=caps, faults=seed % 3 != 0, monkeypatch=monkeypatch
    )
    general = await _play(
        mode, seed, express=False, ehlo=caps, faults=seed % 3 != 0, monkeypatch=monkeypatch
    )
    assert fast[3] is True and general[3] is False  # each run took the path it was meant to
    assert fast[0] == general[0]
    assert len(fast[0]) == 12
    answered = {
        mailsdk.DeliveryStatus.ACCEPTED,
        mailsdk.DeliveryStatus.PARTIAL,
        mailsdk.DeliveryStatus.REFUSED,
    }
    if all(summary[2] in answered for summary in fast[0]):
        assert fast[1] == general[1]
        assert fast[2] == general[2]
    else:
        # The client broke the connection: how much of the last write the server read before
        # it saw the close is a race, so one record is a prefix of the other.
        shorter, longer = sorted((fast[1], general[1]), key=len)
        assert longer.startswith(shorter)


async def _play_one_by_one(
    mode: Mode, seed: int, *, express: bool, ehlo: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> tuple[list[object], bytes, list[str]]:
    opened = _watch_lanes(monkeypatch, express=express)
    server = PolicyServer(SeededPolicy(seed, seed % 3 != 0), ehlo=ehlo, io_timeout=5.0)
    seen: list[object] = []
    try:
        session = await mode.connect(plain_builder("127.0.0.1", server.port).with_timeouts(0.5))
        try:
            for item in _items(seed)[:6]:
                if session.closed:
                    seen.append("closed")
                    break
                try:
                    result = await session.sendmail(item.sender, item.recipients, item.message)
                except mailsdk.MailError as exc:
                    seen.append(type(exc).__name__)
                else:
                    refused = tuple(sorted((r, x.code) for r, x in result.refused.items()))
                    seen.append((result.accepted, refused, result.reply.code))
        finally:
            await session.close()
    finally:
        server.stop()
    assert opened and all(took == express for took in opened)  # the path it was meant to
    return seen, bytes(server.received), [c.verb for c in server.commands]


@pytest.mark.parametrize(("mode_name", "seed", "ehlo"), _CASES[::2])
async def test_send_message_on_the_express_lane_does_what_the_transaction_flow_does(
    mode_name: str, seed: int, ehlo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mode = Mode(mode_name)
    caps = _EHLOS[ehlo]
    fast = await _play_one_by_one(mode, seed, express=True, ehlo=caps, monkeypatch=monkeypatch)
    general = await _play_one_by_one(mode, seed, express=False, ehlo=caps, monkeypatch=monkeypatch)
    assert fast[0] == general[0]
    if "closed" not in fast[0] and all(
        isinstance(x, tuple) or x.endswith("Refused") for x in fast[0]
    ):  # type: ignore[union-attr]
        assert fast[2] == general[2]
        assert fast[1] == general[1]
    else:
        shorter, longer = sorted((fast[1], general[1]), key=len)
        assert longer.startswith(shorter)
