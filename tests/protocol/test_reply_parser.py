"""ReplyParser: multiline, line ends, validation, limits, non-UTF-8, enhanced codes."""

from __future__ import annotations

import pytest

from mailsdk.errors import RemoteProtocolError
from mailsdk.protocol import EnhancedStatus, Reply, ReplyLimits, ReplyParser


def parse_all(data: bytes, parser: ReplyParser | None = None) -> list[Reply]:
    parser = parser or ReplyParser()
    parser.feed(data)
    replies = []
    while (reply := parser.next_reply()) is not None:
        replies.append(reply)
    return replies


CASES: list[tuple[bytes, list[Reply]]] = [
    (b"250 OK\r\n", [Reply(250, (b"OK",))]),
    (b"250 OK\n", [Reply(250, (b"OK",))]),
    (b"250\r\n", [Reply(250, (b"",))]),
    (b"250 \r\n", [Reply(250, (b"",))]),
    (
        b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
        [Reply(250, (b"mx.example", b"PIPELINING", b"SIZE 1000"))],
    ),
    (b"250-a\n250-b\r\n250 c\n", [Reply(250, (b"a", b"b", b"c"))]),
    (b"250 a\r\n354 go\r\n", [Reply(250, (b"a",)), Reply(354, (b"go",))]),
    (b"220 caf\xe9 \xff\r\n", [Reply(220, (b"caf\xe9 \xff",))]),
    (b"250 text with\rbare CR\r\n", [Reply(250, (b"text with\rbare CR",))]),
    (b"", []),
    (b"250 partial", []),
]


@pytest.mark.parametrize(("data", "expected"), CASES)
def test_parse(data: bytes, expected: list[Reply]) -> None:
    assert parse_all(data) == expected


@pytest.mark.parametrize(("data", "expected"), CASES)
def test_byte_at_a_time(data: bytes, expected: list[Reply]) -> None:
    parser = ReplyParser()
    replies = []
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        while (reply := parser.next_reply()) is not None:
            replies.append(reply)
    assert replies == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"abc OK\r\n", "bad code"),
        (b"25O OK\r\n", "bad code"),
        (b"25\r\n", "bad code"),
        (b"\r\n", "bad code"),
        (b"650 what\r\n", "bad code"),
        (b"260 what\r\n", "bad code"),
        (b"250_OK\r\n", "bad separator"),
        (b"250-a\r\n251 b\r\n", "mixed reply codes"),
        (b"250-a\r\n550-b\r\n250 c\r\n", "mixed reply codes"),
        (b"250-a\r\nxyz\r\n", "bad code"),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        parse_all(data)


def test_non_utf8_text_decodes_without_raising() -> None:
    (reply,) = parse_all(b"550 \xff\xfe bad \xc3\r\n")
    assert reply.lines == (b"\xff\xfe bad \xc3",)
    assert "bad" in reply.text
    assert "\ufffd" in reply.text


def test_line_at_limit_is_accepted() -> None:
    limits = ReplyLimits(max_line_length=20)
    line = b"250 " + b"x" * 16
    assert parse_all(line + b"\r\n", ReplyParser(limits)) == [Reply(250, (b"x" * 16,))]


def test_line_over_limit_with_newline() -> None:
    limits = ReplyLimits(max_line_length=20)
    with pytest.raises(RemoteProtocolError, match="longer than 20"):
        parse_all(b"250 " + b"x" * 17 + b"\r\n", ReplyParser(limits))


def test_oversized_line_without_newline_fails_early_in_feed() -> None:
    parser = ReplyParser()
    parser.feed(b"250 " + b"x" * 8000)
    assert parser.next_reply() is None
    with pytest.raises(RemoteProtocolError, match="longer than 8192"):
        parser.feed(b"x" * 500)  # no newline ever came: fail now, not at the newline


def test_oversized_line_fed_byte_at_a_time_fails_at_the_limit() -> None:
    limits = ReplyLimits(max_line_length=10)
    parser = ReplyParser(limits)
    fed = 0
    failed = False
    for _ in range(1000):
        try:
            parser.feed(b"2")
        except RemoteProtocolError:
            failed = True
            break
        fed += 1
    assert failed
    assert fed <= 12


def test_long_line_after_complete_lines_still_limited() -> None:
    parser = ReplyParser(ReplyLimits(max_line_length=10))
    parser.feed(b"250 ok\r\n")
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"x" * 12)


def test_too_many_lines() -> None:
    parser = ReplyParser(ReplyLimits(max_lines=3))
    parser.feed(b"250-a\r\n250-b\r\n250-c\r\n250-d\r\n")
    with pytest.raises(RemoteProtocolError, match="more than 3 lines"):
        parser.next_reply()


def test_endless_multiline_is_bounded_by_total_bytes() -> None:
    parser = ReplyParser(ReplyLimits(max_lines=10_000, max_reply_bytes=1000))
    for _ in range(19):  # 19 * 56 = 1064 bytes
        parser.feed(b"250-" + b"y" * 50 + b"\r\n")
    with pytest.raises(RemoteProtocolError, match="longer than 1000 bytes"):
        parser.next_reply()


def test_max_lines_exactly_allowed() -> None:
    parser = ReplyParser(ReplyLimits(max_lines=3))
    assert parse_all(b"250-a\r\n250-b\r\n250 c\r\n", parser) == [Reply(250, (b"a", b"b", b"c"))]


@pytest.mark.parametrize(
    ("data", "flag", "expected"),
    [
        (b"250 2.1.0 Sender OK\r\n", False, EnhancedStatus(2, 1, 0)),
        (b"550 5.1.1 No such user\r\n", True, EnhancedStatus(5, 1, 1)),
        (b"550-5.1.1 first\r\n550 5.1.1 second\r\n", False, EnhancedStatus(5, 1, 1)),
        (b"250 OK\r\n", True, None),
        (b"250 2.1\r\n", True, None),
        # Class digit disagrees with the code: only trusted when ENHANCEDSTATUSCODES was seen.
        (b"220 4.2.1 banner\r\n", False, None),
        (b"220 4.2.1 banner\r\n", True, EnhancedStatus(4, 2, 1)),
        (b"250 2.0.0\r\n", False, EnhancedStatus(2, 0, 0)),
    ],
)
def test_enhanced_status(data: bytes, flag: bool, expected: EnhancedStatus | None) -> None:
    (reply,) = parse_all(data, ReplyParser(parse_enhanced=flag))
    assert reply.enhanced == expected


def test_buffered_and_clear() -> None:
    parser = ReplyParser()
    parser.feed(b"220 ready\r\n250-partial\r\n250 x")
    assert parser.next_reply() == Reply(220, (b"ready",))
    assert parser.next_reply() is None
    assert parser.buffered == b"250-partial\r\n250 x"
    parser.clear()
    assert parser.buffered == b""
    parser.feed(b"250 fresh\r\n")
    assert parser.next_reply() == Reply(250, (b"fresh",))


def test_many_pipelined_replies_in_one_feed() -> None:
    data = b"250 ok\r\n" * 500
    assert len(parse_all(data)) == 500


def test_limits_validated() -> None:
    with pytest.raises(ValueError, match="max_lines"):
        ReplyLimits(max_lines=0)


def test_default_limits_accept_a_2000_keyword_ehlo_reply() -> None:
    # smtplib accepts it (it bounds only the line); so must we.
    lines = [b"250-mx.example.com"] + [
        b"250-X-VENDOR-EXTENSION-%04d some params" % i for i in range(1999)
    ]
    data = b"\r\n".join(lines) + b"\r\n250 PIPELINING\r\n"
    parser = ReplyParser()
    parser.feed(data)
    reply = parser.next_reply()
    assert reply is not None and len(reply.lines) == 2001
    assert reply.lines[-1] == b"PIPELINING"


def test_default_limits_stay_bounded_in_bytes() -> None:
    # few, long lines: far below the line cap, over the 1 MiB per reply
    line = b"250-" + b"x" * 8000 + b"\r\n"
    assert ReplyLimits().max_lines > 200
    parser = ReplyParser()
    parser.feed(line * 200)
    with pytest.raises(RemoteProtocolError, match="bytes"):
        parser.next_reply()


def test_single_line_replies_match_the_general_parse() -> None:
    """The single-line fast path gives what the line-by-line path gives, limits included."""
    fast = ReplyParser(ReplyLimits(max_line_length=12))
    fast.feed(b"250 2.1.0 Ok\r\n250 \r\n220 4.2.1 x\r\n554 5.7.1 no\n354 go")
    assert fast.next_reply() == Reply(250, (b"2.1.0 Ok",), EnhancedStatus(2, 1, 0))
    assert fast.next_reply() == Reply(250, (b"",), None)
    assert fast.next_reply() == Reply(220, (b"4.2.1 x",), None)  # class differs from the code
    assert fast.next_reply() == Reply(554, (b"5.7.1 no",), EnhancedStatus(5, 7, 1))
    assert fast.next_reply() is None  # "354 go" has no line end yet
    fast.feed(b"\r\n")
    assert fast.next_reply() == Reply(354, (b"go",), None)
    assert fast.buffered == b""
    for bad in (b"199 low\r\n", b"2x0 odd\r\n", b"250 1234567890\r\n"):
        parser = ReplyParser(ReplyLimits(max_line_length=12))
        parser.feed(bad)
        with pytest.raises(RemoteProtocolError):
            parser.next_reply()


def test_a_repeated_line_gives_the_same_reply_and_the_next_bytes_stay_in_step() -> None:
    parser = ReplyParser()
    parser.feed(b"250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n250 2.1.5 Ok\r\n")
    first, second, data, third = (parser.next_reply() for _ in range(4))
    assert first is second is third  # remembered: one immutable Reply per distinct line
    assert data == Reply(354, (b"go",))
    assert parser.next_reply() is None
    assert not parser.holds_bytes


def test_a_remembered_line_is_parsed_again_once_enhanced_codes_are_announced() -> None:
    # "220 4.2.1 ..." has no enhanced status before EHLO (the class digit differs from the
    # code's); after ENHANCEDSTATUSCODES it has one: the remembered reply must not be reused.
    parser = ReplyParser()
    parser.feed(b"250 4.2.1 text\r\n")
    before = parser.next_reply()
    parser.parse_enhanced = True
    parser.feed(b"250 4.2.1 text\r\n")
    after = parser.next_reply()
    assert before is not None and before.enhanced is None
    assert after is not None and after.enhanced == EnhancedStatus(4, 2, 1)


def test_many_distinct_lines_are_each_parsed_correctly() -> None:
    # Final replies carry queue ids, so every one is new: the memory is bounded and cleared.
    parser = ReplyParser()
    for n in range(300):
        parser.feed(b"250 2.0.0 Ok: queued as Q%d\r\n" % n)
        reply = parser.next_reply()
        assert reply is not None and reply.lines == (b"2.0.0 Ok: queued as Q%d" % n,)
    assert len(parser._known[False]) <= 64  # pyright: ignore[reportPrivateUsage]


def test_holds_bytes_tells_whether_anything_is_buffered() -> None:
    parser = ReplyParser()
    assert not parser.holds_bytes
    parser.feed(b"250 ok\r\n25")
    assert parser.holds_bytes
    assert parser.next_reply() == Reply(250, (b"ok",))
    assert parser.holds_bytes and parser.buffered == b"25"
    parser.feed(b"0 ok\r\n")
    assert parser.next_reply() == Reply(250, (b"ok",))
    assert not parser.holds_bytes and parser.buffered == b""


def test_long_lines_are_not_remembered_once_returned() -> None:
    # The memory a parser keeps after its replies are returned stays small: a server that
    # answers with long distinct lines (up to the line limit, which a caller may raise) must
    # not have 64 of them kept, twice over (line and text), for the life of the connection.
    limit = 1 << 16
    parser = ReplyParser(ReplyLimits(max_line_length=limit, max_reply_bytes=2 * limit))
    for enhanced in (False, True):
        parser.parse_enhanced = enhanced
        for n in range(64):
            line = b"250 " + b"%02d" % n * (limit // 2 - 2)
            parser.feed(line + b"\r\n")
            assert parser.next_reply() == Reply(250, (line[4:],))
    known = parser._known  # pyright: ignore[reportPrivateUsage]
    kept = sum(len(line) for table in known for line in table)
    assert kept <= 64 * 1024
