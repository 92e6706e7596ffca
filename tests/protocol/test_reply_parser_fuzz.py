"""Hypothesis properties of ReplyParser and ClientConnection on arbitrary server bytes."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from mailsdk.errors import MailError
from mailsdk.protocol import (
    NEED_DATA,
    ClientConnection,
    Reply,
    ReplyLimits,
    ReplyParser,
)

PROFILE = settings(max_examples=200, deadline=None)

# Arbitrary bytes, plus byte soup biased towards almost-valid replies.
fragments = st.sampled_from(
    [b"250", b"-", b" ", b"\r\n", b"\n", b"\r", b"550", b"2.1.0 ", b"ok", b"\xff", b"25", b"x"]
)
soup = st.binary(max_size=200) | st.lists(fragments, max_size=80).map(b"".join)
splits = st.lists(st.integers(min_value=0, max_value=300), max_size=10)


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def run_parser(data: bytes, cuts: list[int], limits: ReplyLimits) -> list[Reply] | str:
    parser = ReplyParser(limits)
    out: list[Reply] = []
    try:
        for piece in pieces(data, cuts):
            parser.feed(piece)
            while (reply := parser.next_reply()) is not None:
                out.append(reply)
    except MailError as exc:
        return type(exc).__name__
    return out


@PROFILE
@given(soup, splits)
def test_parser_only_returns_replies_or_raises_mail_errors(data: bytes, cuts: list[int]) -> None:
    result = run_parser(data, cuts, ReplyLimits(max_line_length=64, max_lines=8))
    if isinstance(result, list):
        for reply in result:
            assert isinstance(reply, Reply)
            assert 200 <= reply.code <= 559
            assert isinstance(reply.text, str)  # decoding never raises


@PROFILE
@given(soup, splits, splits)
def test_parser_result_independent_of_split(
    data: bytes, cuts1: list[int], cuts2: list[int]
) -> None:
    # Large limits so the early (feed-time) line check cannot differ between splits.
    limits = ReplyLimits(max_line_length=1000, max_lines=1000, max_reply_bytes=10_000)
    assert run_parser(data, cuts1, limits) == run_parser(data, cuts2, limits)


@PROFILE
@given(soup, splits)
def test_connection_never_raises_foreign_exceptions(data: bytes, cuts: list[int]) -> None:
    conn = ClientConnection(limits=ReplyLimits(max_line_length=64, max_lines=8))
    try:
        for piece in [*(p for p in pieces(data, cuts) if p), b""]:
            conn.receive_data(piece)
            while (event := conn.next_event()) is not NEED_DATA:
                if piece == b"":
                    break
                del event
    except MailError:
        pass
