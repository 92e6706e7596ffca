"""DATA/BDAT body encoding: canonical CRLF, dot-stuffing, smuggling vectors, streaming."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsdk.errors import InvalidInputError
from mailsdk.protocol import (
    BdatEncoder,
    DataEncoder,
    bdat_frames,
    canonicalize_line_endings,
    decode_data,
    encode_data,
)

PROFILE = settings(max_examples=150, deadline=None)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (b"", b""),
        (b"a", b"a"),
        (b"a\r\nb", b"a\r\nb"),
        (b"a\nb", b"a\r\nb"),
        (b"a\rb", b"a\r\nb"),
        (b"a\r\r\nb", b"a\r\n\r\nb"),
        (b"a\n\rb", b"a\r\n\r\nb"),
        (b"\r\n\r\n", b"\r\n\r\n"),
        (b"\n\n", b"\r\n\r\n"),
        (b"\r\r", b"\r\n\r\n"),
    ],
)
def test_canonicalize(raw: bytes, canonical: bytes) -> None:
    assert canonicalize_line_endings(raw) == canonical


ENCODE_CASES: list[tuple[bytes, bytes]] = [
    (b"", b".\r\n"),
    (b"hello", b"hello\r\n.\r\n"),
    (b"hello\r\n", b"hello\r\n.\r\n"),
    (b"hello\n", b"hello\r\n.\r\n"),
    (b".", b"..\r\n.\r\n"),
    (b".hidden\r\nline\r\n", b"..hidden\r\nline\r\n.\r\n"),
    (b"a\r\n.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"a\r\n..b\r\n", b"a\r\n...b\r\n.\r\n"),
    # SMTP smuggling vectors (2023): every one of them must come out harmless.
    (b"a\n.\nMAIL FROM:<x@evil>\n", b"a\r\n..\r\nMAIL FROM:<x@evil>\r\n.\r\n"),
    (b"a\r.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"a\r\n.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"a\r.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"a\n.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),
    (b".\r\n", b"..\r\n.\r\n"),
    (b".\r\nMAIL FROM:<x@evil>\r\n", b"..\r\nMAIL FROM:<x@evil>\r\n.\r\n"),
    (b"\x00\xff binary\r\n", b"\x00\xff binary\r\n.\r\n"),
]


@pytest.mark.parametrize(("raw", "wire"), ENCODE_CASES)
def test_encode_data(raw: bytes, wire: bytes) -> None:
    assert encode_data(raw) == wire


@pytest.mark.parametrize(("raw", "wire"), ENCODE_CASES)
def test_encode_byte_at_a_time(raw: bytes, wire: bytes) -> None:
    enc = DataEncoder()
    out = b"".join(enc.encode(raw[i : i + 1]) for i in range(len(raw)))
    assert out + enc.finish() == wire


@pytest.mark.parametrize(
    ("chunks", "wire"),
    [
        # CR and LF split across chunks: one CRLF, not two.
        ([b"a\r", b"\nb"], b"a\r\nb\r\n.\r\n"),
        # A dot at line start in the next chunk is still stuffed.
        ([b"a\r\n", b".b"], b"a\r\n..b\r\n.\r\n"),
        ([b"a\r", b"\n.", b"\r\n"], b"a\r\n..\r\n.\r\n"),
        ([b"a\r", b".\r", b"b"], b"a\r\n..\r\nb\r\n.\r\n"),
        ([b"a\n", b".", b"\n"], b"a\r\n..\r\n.\r\n"),
        # A trailing bare CR is flushed as CRLF by finish().
        ([b"a\r"], b"a\r\n.\r\n"),
        ([b"a", b"\r", b"", b"\r"], b"a\r\n\r\n.\r\n"),
        ([b"", b""], b".\r\n"),
    ],
)
def test_chunk_boundaries(chunks: list[bytes], wire: bytes) -> None:
    enc = DataEncoder()
    assert b"".join(enc.encode(c) for c in chunks) + enc.finish() == wire


def test_encoder_refuses_use_after_finish() -> None:
    enc = DataEncoder()
    enc.finish()
    with pytest.raises(InvalidInputError):
        enc.encode(b"x")
    with pytest.raises(InvalidInputError):
        enc.finish()


@pytest.mark.parametrize("wire", [b"", b"abc", b"abc\r\n", b"abc\n.\n"])
def test_decode_refuses_missing_terminator(wire: bytes) -> None:
    with pytest.raises(InvalidInputError):
        decode_data(wire)


def test_bdat_frames() -> None:
    frames = list(bdat_frames(b"line1\nline2\n", chunk_size=8))
    assert frames == [
        (b"BDAT 8\r\n", b"line1\r\nl"),
        (b"BDAT 6 LAST\r\n", b"ine2\r\n"),
    ]


def test_bdat_frames_no_dot_stuffing_and_empty() -> None:
    assert list(bdat_frames(b".\r\n")) == [(b"BDAT 3 LAST\r\n", b".\r\n")]
    assert list(bdat_frames(b"")) == [(b"BDAT 0 LAST\r\n", b"")]
    assert list(bdat_frames(b"a\rb", canonicalize=False)) == [(b"BDAT 3 LAST\r\n", b"a\rb")]
    with pytest.raises(InvalidInputError):
        list(bdat_frames(b"x", chunk_size=0))


def test_bdat_encoder_carries_cr() -> None:
    enc = BdatEncoder()
    first = enc.frame(b"a\r", last=False)
    second = enc.frame(b"\nb\r", last=True)
    assert (first[0].to_bytes(), first[1]) == (b"BDAT 1\r\n", b"a")
    assert (second[0].to_bytes(), second[1]) == (b"BDAT 5 LAST\r\n", b"\r\nb\r\n")
    with pytest.raises(InvalidInputError):
        enc.frame(b"more", last=True)


# -- properties -------------------------------------------------------------------------------

bodies = st.binary(max_size=300) | st.lists(
    st.sampled_from([b"\r", b"\n", b".", b"a", b"\r\n", b".\r\n", b"\r\n.", b"\x00"]), max_size=60
).map(b"".join)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def encode_chunks(chunks: list[bytes]) -> bytes:
    enc = DataEncoder()
    return b"".join(enc.encode(c) for c in chunks) + enc.finish()


def canonical_message(body: bytes) -> bytes:
    canon = canonicalize_line_endings(body)
    return canon if not canon or canon.endswith(b"\r\n") else canon + b"\r\n"


@PROFILE
@given(bodies, st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_roundtrip_any_chunking(body: bytes, cuts: list[int]) -> None:
    assert decode_data(encode_chunks(chunked(body, cuts))) == canonical_message(body)


@PROFILE
@given(
    bodies,
    st.lists(st.integers(min_value=0), max_size=12),
    st.lists(st.integers(min_value=0), max_size=12),
)
def test_chunking_does_not_change_output(body: bytes, cuts1: list[int], cuts2: list[int]) -> None:
    assert encode_chunks(chunked(body, cuts1)) == encode_chunks(chunked(body, cuts2))
    assert encode_chunks(chunked(body, cuts1)) == encode_data(body)


@PROFILE
@given(bodies, st.lists(st.integers(min_value=0), max_size=12))
def test_no_early_terminator(body: bytes, cuts: list[int]) -> None:
    wire = encode_chunks(chunked(body, cuts))
    assert wire.endswith(b".\r\n")
    # The only <CRLF>.<CRLF> is the terminator; no bare CR or LF anywhere (smuggling).
    assert (b"\r\n" + wire).find(b"\r\n.\r\n") == len(wire) - 3
    assert wire.replace(b"\r\n", b"").count(b"\r") == 0
    assert wire.replace(b"\r\n", b"").count(b"\n") == 0


@PROFILE
@given(bodies, st.lists(st.integers(min_value=0), max_size=8), st.integers(1, 50))
def test_bdat_streaming_matches_one_shot(body: bytes, cuts: list[int], size: int) -> None:
    enc = BdatEncoder()
    chunks = chunked(body, cuts)
    payload = b"".join(enc.frame(c, last=i == len(chunks) - 1)[1] for i, c in enumerate(chunks))
    assert payload == canonicalize_line_endings(body)
    assert b"".join(p for _h, p in bdat_frames(body, size)) == payload


def test_known_canonical_chunks_encode_as_scanned_ones() -> None:
    from mailsdk.protocol.body import DataEncoder

    body = b"Subject: x\r\n\r\n.dot\r\nline\r\n"
    known, scanned = DataEncoder(), DataEncoder()
    assert known.encode(body, canonical=True) + known.finish() == (
        scanned.encode(body) + scanned.finish()
    )
    # A CR held back from the previous chunk is still joined with what follows.
    held = DataEncoder()
    wire = held.encode(b"a\r") + held.encode(b"\nb\r\n", canonical=True) + held.finish()
    assert wire == b"a\r\nb\r\n.\r\n"
