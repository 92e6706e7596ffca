"""Reply parser throughput: a large EHLO reply and many short pipelined replies (protocol only).

Run: ``.venv/bin/pytest benchmarks/bench_reply_parser.py --benchmark-only``
"""

from __future__ import annotations

from typing import Any

from mailsdk.protocol import ReplyParser

EHLO = b"".join(b"250-EXTENSION-%03d PARAM\r\n" % i for i in range(100)) + b"250 SMTPUTF8\r\n"
SHORT = b"250 2.1.5 ok\r\n" * 1000


def _drain(data: bytes) -> int:
    parser = ReplyParser()
    parser.feed(data)
    count = 0
    while parser.next_reply() is not None:
        count += 1
    return count


def test_bench_large_ehlo(benchmark: Any) -> None:
    assert benchmark(_drain, EHLO) == 1


def test_bench_many_short_replies(benchmark: Any) -> None:
    assert benchmark(_drain, SHORT) == 1000
