"""The streaming body hash equals dkimpy's whole-body canonicalisation, however it is chunked."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsdk.dkim import BodyHasher, Canonicalization, HeaderSplitter, split_message
from mailsdk.errors import InvalidInputError
from mailsdk.protocol.body import canonicalize_line_endings, decode_data, encode_data

canonicalization = pytest.importorskip("dkim.canonicalization")


def reference(body: bytes, kind: Canonicalization) -> bytes:
    """dkimpy's body hash of what the receiver stores (the wire form of ``body``)."""
    wire = decode_data(encode_data(body))
    policy = canonicalization.CanonicalizationPolicy.from_c_value(b"relaxed/" + kind.value.encode())
    return hashlib.sha256(policy.canonicalize_body(wire)).digest()


def streamed(
    body: bytes, kind: Canonicalization, cuts: list[int], flush_at: int = 1 << 16
) -> bytes:
    hasher = BodyHasher(kind, flush_at=flush_at)
    start = 0
    for cut in sorted(c % (len(body) + 1) for c in cuts):
        hasher.update(body[start:cut])
        start = max(start, cut)
    hasher.update(body[start:])
    return hasher.digest()


BODY_BYTES = st.lists(
    st.sampled_from([b"a", b"b", b" ", b"\t", b"\r", b"\n", b"\r\n", b".", b"\xc3\xa9"]),
    max_size=60,
).map(b"".join)


@given(body=BODY_BYTES, cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=6))
@pytest.mark.parametrize("kind", list(Canonicalization))
def test_streaming_hash_matches_dkimpy(
    kind: Canonicalization, body: bytes, cuts: list[int]
) -> None:
    assert streamed(body, kind, cuts) == reference(body, kind)


@given(
    body=BODY_BYTES,
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=8),
    flush_at=st.integers(min_value=0, max_value=6),
)
@pytest.mark.parametrize("kind", list(Canonicalization))
def test_long_lines_hashed_in_pieces_match_dkimpy(
    kind: Canonicalization, body: bytes, cuts: list[int], flush_at: int
) -> None:
    # A tiny flush threshold exercises the bounded-memory path for very long lines.
    assert streamed(body, kind, cuts, flush_at) == reference(body, kind)


def test_one_huge_line_and_a_million_empty_lines_stay_bounded() -> None:
    hasher = BodyHasher(Canonicalization.RELAXED)
    for _ in range(200):  # 12.8 MB without a line end: never held whole
        hasher.update(b"x \t " * 16_000)
        assert len(hasher._partial) <= 1 << 16
    hasher.update(b"\r\n" * 1_000_000 + b"end\r\n")
    for _ in range(100):  # 6.4 MB of spaces on one line
        hasher.update(b" " * 64_000)
        assert len(hasher._partial) <= 1 << 16
    assert hasher._pending_blank == 0
    expected = hashlib.sha256(b"x " * 3_199_999 + b"x\r\n" + b"\r\n" * 999_999 + b"end\r\n")
    # The line of spaces is empty when relaxed: held back, then dropped at the end.
    assert hasher.digest() == expected.digest()


@pytest.mark.parametrize(
    ("body", "kind", "canonical"),
    [
        (b"", Canonicalization.RELAXED, b""),
        (b"", Canonicalization.SIMPLE, b"\r\n"),
        (b"\r\n\r\n", Canonicalization.SIMPLE, b"\r\n"),
        (b"x  \t y \r\n\r\n  \r\n", Canonicalization.RELAXED, b"x y\r\n"),
        (b"x  \r\n\r\n  \r\n", Canonicalization.SIMPLE, b"x  \r\n\r\n  \r\n"),
        (b"no newline  ", Canonicalization.RELAXED, b"no newline\r\n"),
        (b"bare\nlf\rcr", Canonicalization.SIMPLE, b"bare\r\nlf\r\ncr\r\n"),
    ],
)
def test_rfc6376_examples(body: bytes, kind: Canonicalization, canonical: bytes) -> None:
    hasher = BodyHasher(kind)
    hasher.update(body)
    assert hasher.digest() == hashlib.sha256(canonical).digest()


def test_a_long_run_of_empty_lines_is_held_not_stored() -> None:
    hasher = BodyHasher(Canonicalization.RELAXED)
    hasher.update(b"text\r\n")
    for _ in range(10_000):
        hasher.update(b"\r\n")
    hasher.update(b"more\r\n")
    assert hasher.digest() == hashlib.sha256(b"text\r\n" + b"\r\n" * 10_000 + b"more\r\n").digest()


@given(message=BODY_BYTES, cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=5))
def test_header_splitter_agrees_with_split_message(message: bytes, cuts: list[int]) -> None:
    message = b"From: a@b\n" + message
    whole_head, whole_body = split_message(message)
    splitter = HeaderSplitter()
    found = None
    start = 0
    rest = b""
    for cut in [*sorted(c % (len(message) + 1) for c in cuts), len(message)]:
        piece = message[start:cut]
        start = max(start, cut)
        if found is None:
            found = splitter.feed(piece)
        else:
            rest += piece
    if found is None:
        assert (splitter.finish(), b"") == (whole_head, whole_body)
    else:
        assert found[0] == whole_head
        assert canonicalize_line_endings(found[1] + rest) == whole_body
    assert (canonicalize_line_endings(message) + b"\r\n").startswith(whole_head)


def test_split_message_separates_at_the_first_empty_line() -> None:
    assert split_message(b"A: 1\nB: 2\n\nbody\n\nmore") == (
        b"A: 1\r\nB: 2\r\n",
        b"body\r\n\r\nmore",
    )
    assert split_message(b"A: 1\r\nB: 2") == (b"A: 1\r\nB: 2\r\n", b"")
    assert split_message(b"\r\nbody") == (b"", b"body")


def test_header_splitter_refuses_an_endless_header() -> None:
    splitter = HeaderSplitter(limit=1000)
    for _ in range(16):
        assert splitter.feed(b"X-Filler: " + b"y" * 50 + b"\r\n") is None
    with pytest.raises(InvalidInputError, match="longer than 1000 bytes"):
        splitter.feed(b"X-Filler: " + b"y" * 50 + b"\r\n")
