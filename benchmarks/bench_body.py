"""Body encoding throughput: canonicalisation plus dot-stuffing (DATA) and BDAT framing.

Run: ``.venv/bin/pytest benchmarks/bench_body.py --benchmark-only``
"""

from __future__ import annotations

from typing import Any

from mailsdk.protocol import DataEncoder, bdat_frames

LINE = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghij\n"
BODY = (LINE * 15 + b".dotted line\r\n") * 1000  # ~1 MB, mixed line ends, dots to stuff
CHUNK = 64 * 1024


def _encode_streaming(body: bytes) -> int:
    enc = DataEncoder()
    size = sum(len(enc.encode(body[i : i + CHUNK])) for i in range(0, len(body), CHUNK))
    return size + len(enc.finish())


def _bdat(body: bytes) -> int:
    return sum(len(payload) for _header, payload in bdat_frames(body, CHUNK))


def test_bench_data_encoder(benchmark: Any) -> None:
    assert benchmark(_encode_streaming, BODY) > len(BODY)


def test_bench_bdat_frames(benchmark: Any) -> None:
    assert benchmark(_bdat, BODY) > len(BODY)
