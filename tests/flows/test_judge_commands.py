"""``plan_envelope`` with a run's cache: each address is validated and encoded once, a refusal
is never cached, and the wire bytes are those of freshly built commands."""

from __future__ import annotations

import pytest

from mailsdk.errors import InvalidInputError
from mailsdk.esmtp import Capabilities, MailOptions, parse_ehlo
from mailsdk.flows import prepare_raw
from mailsdk.flows.judge import _CACHE_LIMIT, ParameterCache, plan_envelope
from mailsdk.protocol.commands import RcptTo
from mailsdk.protocol.reply import Reply

RAW = b"Subject: plan\r\n\r\nbody\r\n"


def caps(*lines: str) -> Capabilities:
    return parse_ehlo(Reply.build(250, "mx.example.com", *lines))


def test_the_same_addresses_share_commands_with_the_same_bytes() -> None:
    cache: ParameterCache = {}
    server = caps("SIZE 100000", "8BITMIME")
    message = prepare_raw("a@example.org", ["b@example.com", "c@example.com"], RAW)
    first = plan_envelope(message, server, cache=cache)
    second = plan_envelope(message, server, cache=cache)
    assert second.mail is first.mail
    assert [r is s for r, s in zip(second.rcpts, first.rcpts, strict=True)] == [True, True]
    fresh = plan_envelope(message, server)  # no cache: built anew, the same bytes
    assert [c.to_bytes() for c in second.commands] == [c.to_bytes() for c in fresh.commands]
    assert second.mail.to_bytes() == f"MAIL FROM:<a@example.org> SIZE={len(RAW)}\r\n".encode()
    assert second.rcpts[1].to_bytes() == b"RCPT TO:<c@example.com>\r\n"


def test_different_parameters_give_different_mail_commands() -> None:
    cache: ParameterCache = {}
    server = caps("SIZE 100000")
    small = plan_envelope(prepare_raw("a@example.org", ["b@example.com"], RAW), server, cache=cache)
    big = plan_envelope(
        prepare_raw("a@example.org", ["b@example.com"], RAW + b"more\r\n"), server, cache=cache
    )
    assert small.mail.params != big.mail.params
    assert big.mail.to_bytes() == f"MAIL FROM:<a@example.org> SIZE={len(RAW) + 6}\r\n".encode()
    assert big.rcpts[0] is small.rcpts[0]  # RCPT parameters did not change


def test_a_refused_address_is_refused_every_time_and_never_cached() -> None:
    cache: ParameterCache = {}
    bad = prepare_raw("a@example.org", ["not an address"], RAW)
    for _ in range(2):
        with pytest.raises(InvalidInputError):
            plan_envelope(bad, caps(), cache=cache)
    assert not any(key[0] is RcptTo for key in cache)


def test_options_objects_decide_the_parameters_not_the_commands_identity() -> None:
    cache: ParameterCache = {}
    server = caps("SIZE 100000", "DSN")
    message = prepare_raw("a@example.org", ["b@example.com"], RAW)
    plain = plan_envelope(message, server, cache=cache)
    dsn = plan_envelope(message, server, mail_options=MailOptions(envid="X1"), cache=cache)
    assert b"ENVID=X1" in dsn.mail.to_bytes()
    assert b"ENVID" not in plain.mail.to_bytes()


def test_the_cache_stays_bounded() -> None:
    cache: ParameterCache = {}
    for i in range(_CACHE_LIMIT + 50):
        plan_envelope(prepare_raw("a@example.org", [f"r{i}@example.com"], RAW), caps(), cache=cache)
    assert len(cache) <= _CACHE_LIMIT
