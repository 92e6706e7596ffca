"""Streamed message sources end to end, in both modes: a path, a binary file, an iterable of
chunks. Content arrives canonicalised and byte-exact, ``SIZE=`` is announced when the size is
known, bad sources are typed errors that never leave a session half-way through a message, and
a 20 MB source is sent in bounded memory (tracemalloc)."""

from __future__ import annotations

import io
import pathlib
import tracemalloc
import typing
from collections.abc import Callable, Iterator

import pytest
from tests._support.modes import Mode, plain_builder
from tests._support.sink import Sink
from tests._support.smtpd import SmtpdServer

import mailsdk
from mailsdk import DeliveryStatus, Outgoing

#: Bare LFs, a bare CR, lines starting with dots, a final line without its line end.
RAW = b"Subject: streamed\n\n.leading dot\r\nbare cr\rmiddle\n..two\nlast line"
CANONICAL = b"Subject: streamed\r\n\r\n.leading dot\r\nbare cr\r\nmiddle\r\n..two\r\nlast line"


class OneWay(io.RawIOBase):
    """A readable, non-seekable binary stream (a pipe's behaviour)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: typing.Any) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def split_everywhere(data: bytes, step: int = 3) -> Iterator[bytes]:
    for i in range(0, len(data), step):
        yield data[i : i + step]


def sources(tmp_path: pathlib.Path) -> dict[str, Callable[[], object]]:
    path = tmp_path / "message.eml"
    path.write_bytes(RAW)
    return {
        "path": lambda: path,
        "bytesio": lambda: io.BytesIO(RAW),
        "one-way": lambda: io.BufferedReader(OneWay(RAW)),
        "chunks": lambda: split_everywhere(RAW),
    }


@pytest.mark.parametrize("kind", ["path", "bytesio", "one-way", "chunks"])
@pytest.mark.parametrize("chunking", [False, True])
async def test_streamed_sources_arrive_canonical_and_byte_exact(
    mode: Mode,
    smtpd_factory: Callable[..., SmtpdServer],
    tmp_path: pathlib.Path,
    kind: str,
    chunking: bool,
) -> None:
    smtpd = smtpd_factory(pipelining=True, chunking=chunking)
    builder = plain_builder(smtpd.host, smtpd.port).with_chunking(chunking, chunk_size=7)
    make = sources(tmp_path)[kind]
    async with mode.session(builder) as s:
        result = await s.send_message(make(), sender="a@example.org", recipients=["b@example.com"])
        outcomes = await s.send_many_list(
            [Outgoing(make(), sender="a@example.org", recipients=["c@example.com"])]
        )
    assert result.ok and outcomes[0].status is DeliveryStatus.ACCEPTED
    expected = CANONICAL + b"\r\n" if not chunking else CANONICAL
    assert [m.content for m in smtpd.recorder.messages] == [expected, expected]
    sizes = [
        next((o for o in m.mail_options if o.startswith("SIZE=")), None)
        for m in smtpd.recorder.messages
    ]
    if kind in ("path", "bytesio"):  # scanned beforehand: the canonical size is announced
        assert sizes == [f"SIZE={len(CANONICAL)}"] * 2
    else:
        assert sizes == [None, None]


async def test_a_missing_path_is_refused_before_anything_is_sent(
    mode: Mode, smtpd: SmtpdServer, tmp_path: pathlib.Path
) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        with pytest.raises(mailsdk.InvalidInputError, match="cannot read"):
            await s.send_message(
                tmp_path / "nope.eml", sender="a@example.org", recipients="b@example.com"
            )
        with pytest.raises(mailsdk.InvalidInputError, match="explicit sender"):
            await s.send_message(io.BytesIO(RAW))
        assert (await s.noop()).code == 250
    assert "MAIL" not in smtpd.recorder.verbs


async def test_a_source_failing_mid_content_closes_the_session_and_sends_nothing(
    mode: Mode, smtpd: SmtpdServer
) -> None:
    def broken() -> Iterator[object]:
        yield b"Subject: half\r\n\r\nfirst part\r\n"
        yield "not bytes"

    session = await mode.connect(plain_builder(smtpd.host, smtpd.port))
    with pytest.raises(mailsdk.InvalidInputError, match="must be bytes"):
        await session.send_message(broken(), sender="a@example.org", recipients="b@example.com")
    assert session.closed  # the DATA transfer could not be ended without sending a message
    assert smtpd.recorder.messages == []


async def test_text_files_are_refused(mode: Mode, smtpd: SmtpdServer) -> None:
    async with mode.session(plain_builder(smtpd.host, smtpd.port)) as s:
        with pytest.raises(mailsdk.InvalidInputError, match="binary"):
            await s.send_message(
                io.StringIO("x"), sender="a@example.org", recipients="b@example.com"
            )
        assert (await s.noop()).code == 250


def test_a_20_mb_source_is_sent_in_bounded_memory(tmp_path: pathlib.Path) -> None:
    line = b"0123456789" * 9 + b"\n"  # 91 bytes, bare LF: canonicalised on the way
    path = tmp_path / "big.eml"
    with path.open("wb") as f:
        f.write(b"Subject: big\n\n")
        for _ in range(20 * 1024 * 1024 // len(line)):
            f.write(line)
    size = path.stat().st_size
    with Sink() as sink:
        builder = plain_builder("127.0.0.1", sink.port).with_timeouts(30.0)
        with builder.build().connect() as session:
            tracemalloc.start()
            try:
                result = session.send_message(
                    path, sender="a@example.org", recipients="b@example.com"
                )
                _current, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert result.ok
    assert sink.messages == 1
    lines = size - len(b"Subject: big\n\n")
    assert result.size == size + lines // len(line) + 2  # every LF became CRLF
    assert peak < 3 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB message"
