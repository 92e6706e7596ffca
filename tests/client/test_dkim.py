"""DKIM end to end, both modes: every message the server receives carries signatures dkimpy
accepts, applied last (after the trace headers); streamed sources are read twice correctly."""

from __future__ import annotations

import io
import pathlib
import typing
from collections.abc import Callable
from email.message import EmailMessage

import pytest
from opentelemetry.sdk.trace import TracerProvider
from tests._support.modes import Mode
from tests.dkim.dkim_support import DOMAIN, ed25519_key, rsa_key, verify_all

from mailsdk import ClientBuilder, InvalidInputError
from mailsdk.client._dkim import sign_prepared, sign_stream
from mailsdk.client._sources import FileContent, IterableContent, PathContent
from mailsdk.dkim import DEFAULT_HEADERS, DkimSigner
from mailsdk.flows import Envelope, PreparedMessage
from mailsdk.testing import MailServer

MESSAGE = (
    b"From: alice@example.com\nTo: bob@example.org\nSubject: streamed\n\n"
    + b"line  with  spaces \n" * 200
    + b".leading dot\n\n\n"
)


def signed_builder(server: MailServer, **options: object) -> ClientBuilder:
    # mailsdk's own test kit (mailsdk.testing) as the receiving server.
    return (
        server.client_builder()
        .with_dkim(DOMAIN, "rsa", rsa_key(), **options)
        .with_dkim(DOMAIN, "ed", ed25519_key(), **options)
    )


async def test_email_message_and_raw_bytes_are_signed(mode: Mode, mail_server: MailServer) -> None:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.com>"
    msg["To"] = "bob@example.org"
    msg["Bcc"] = "hidden@example.org"
    msg["Subject"] = "signed, Grüße"
    msg.set_content("Hello Bob,\n.\nbye\n")
    async with mode.session(signed_builder(mail_server)) as s:
        await s.send_message(msg)
        await s.sendmail("alice@example.com", ["bob@example.org"], MESSAGE)
    first, second = mail_server.messages
    for received in (first.data, second.data):
        assert received.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
        assert verify_all(received) == [True, True]
    assert b"hidden@example.org" not in first.data
    assert verify_all(second.data.replace(b"leading dot", b"leading dog")) == [False, False]


async def test_signature_is_the_last_step_after_trace_headers(
    mode: Mode, mail_server: MailServer
) -> None:
    # The trace header is signed (it is in h=), which only works when DKIM runs after it.
    builder = signed_builder(
        mail_server, headers=(*DEFAULT_HEADERS, "traceparent")
    ).with_opentelemetry(tracer_provider=TracerProvider(), propagate=True)
    async with mode.session(builder) as s:
        await s.sendmail("alice@example.com", ["bob@example.org"], MESSAGE)
    (received,) = mail_server.messages
    head = received.data.split(b"\r\n\r\n", 1)[0]
    assert head.index(b"DKIM-Signature") < head.index(b"traceparent:")
    assert b"traceparent" in head.split(b"traceparent:")[0]  # named in h=
    assert verify_all(received.data) == [True, True]


async def test_a_message_without_from_is_refused_before_mail(
    mode: Mode, mail_server: MailServer
) -> None:
    async with mode.session(signed_builder(mail_server)) as s:
        with pytest.raises(InvalidInputError, match="no From field"):
            await s.sendmail("a@example.com", ["b@example.org"], b"To: b@example.org\r\n\r\nx\r\n")
        assert "MAIL" not in mail_server.verbs
        await s.sendmail("alice@example.com", ["bob@example.org"], MESSAGE)
    assert len(mail_server.messages) == 1


def _signers() -> list[DkimSigner]:
    return [
        DkimSigner(domain=DOMAIN, selector="rsa", key=rsa_key()),
        DkimSigner(domain=DOMAIN, selector="ed", key=ed25519_key()),
    ]


def test_stream_from_a_path_is_read_twice(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "message.eml"
    path.write_bytes(MESSAGE)
    stream = sign_stream(_signers(), path)
    try:
        data = b"".join(stream)
    finally:
        stream.close()
    assert stream.size == len(data)
    assert verify_all(_wire(data)) == [True, True]


def test_stream_from_a_seekable_file_starts_where_the_caller_left_it() -> None:
    file = io.BytesIO(b"junk before the message" + MESSAGE)
    file.seek(len(b"junk before the message"))
    stream = sign_stream(_signers(), file)
    data = b"".join(stream)
    assert data.endswith(MESSAGE)
    assert verify_all(_wire(data)) == [True, True]


def test_one_shot_chunks_are_spooled_to_disk_beyond_the_memory_bound() -> None:
    def chunks() -> object:
        for i in range(0, len(MESSAGE), 7):
            yield MESSAGE[i : i + 7]

    stream = sign_stream(_signers(), chunks(), spool_in_memory=512)  # type: ignore[arg-type]
    spool = stream._cleanup._exit_callbacks[0][1].__self__  # the SpooledTemporaryFile
    assert spool._rolled  # moved to a temporary file: memory stayed bounded
    data = b"".join(stream)
    stream.close()
    assert spool.closed
    assert verify_all(_wire(data)) == [True, True]


def test_a_non_bytes_chunk_is_a_typed_error_and_the_spool_is_removed() -> None:
    with pytest.raises(InvalidInputError, match="must be bytes, not str"):
        sign_stream(_signers(), [b"From: a@example.com\r\n\r\n", "text"])  # type: ignore[list-item]


def _wire(data: bytes) -> bytes:
    """What a receiver stores of ``data`` (CRLF line ends)."""
    from mailsdk.protocol.body import decode_data, encode_data

    return decode_data(encode_data(data))


async def test_injected_line_breaks_are_signed_as_sent(mode: Mode, mail_server: MailServer) -> None:
    # A bare CR and a bare LF inside a raw message's header: the wire turns both into CRLF,
    # so the receiver sees extra fields; the signature must cover exactly those.
    raw = b"From: alice@example.com\nSubject: hi\rBcc: evil@example.net\nTo: bob@example.org\n\nbody\n"
    async with mode.session(signed_builder(mail_server)) as s:
        await s.sendmail("alice@example.com", ["bob@example.org"], raw)
    (received,) = mail_server.messages
    assert b"Subject: hi\r\nBcc: evil@example.net\r\n" in received.data
    assert verify_all(received.data) == [True, True]


async def test_a_large_message_is_signed_end_to_end(mode: Mode, mail_server: MailServer) -> None:
    body = b"".join(b"line %07d with  trailing space \r\n" % i for i in range(200_000))  # 7 MB
    raw = b"From: alice@example.com\r\nTo: bob@example.org\r\nSubject: big\r\n\r\n" + body
    async with mode.session(signed_builder(mail_server)) as s:
        await s.sendmail("alice@example.com", ["bob@example.org"], raw)
    (received,) = mail_server.messages
    assert received.data.endswith(body)
    assert verify_all(received.data) == [True, True]


@pytest.mark.parametrize("chunking", [False, True], ids=["pipelined-data", "pipelined-bdat"])
async def test_send_many_signs_every_message(
    mode: Mode, mail_server_factory: Callable[..., MailServer], chunking: bool
) -> None:
    from mailsdk import DeliveryStatus, Outgoing

    server = mail_server_factory(chunking=chunking)
    items = [
        Outgoing(
            MESSAGE.replace(b"streamed", b"many %d" % i),
            sender="a@example.com",
            recipients=["b@example.org"],
        )
        for i in range(5)
    ]
    async with mode.session(signed_builder(server).with_chunking(chunking)) as s:
        outcomes = await s.send_many_list(items)
    assert [o.status for o in outcomes] == [DeliveryStatus.ACCEPTED] * 5
    assert len(server.messages) == 5
    for i, received in enumerate(server.messages):
        assert b"Subject: many %d" % i in received.data
        assert verify_all(received.data) == [True, True]


TRACE = b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"


def _prepared(**fields: typing.Any) -> PreparedMessage:
    values: dict[str, typing.Any] = {"data": b"", "smtputf8": False, "eight_bit": None}
    values.update(fields)
    return PreparedMessage(Envelope("a@example.com", ("b@example.org",)), **values)


def test_added_header_lines_are_signed_with_the_message() -> None:
    signers = [
        DkimSigner(
            domain=DOMAIN, selector="rsa", key=rsa_key(), headers=(*DEFAULT_HEADERS, "traceparent")
        ),
        DkimSigner(domain=DOMAIN, selector="ed", key=ed25519_key()),
    ]
    data = _wire(MESSAGE)
    prepared = _prepared(data=data, eight_bit=False, headers=TRACE)
    signed = sign_prepared(prepared, signers, clock=lambda: 1_796_160_000)
    assert signed.data == data
    assert signed.headers.startswith(b"DKIM-Signature:") and signed.headers.endswith(TRACE)
    assert signed.size == len(signed.headers) + len(data)
    assert verify_all(b"".join(signed.pieces())) == [True, True]


def test_a_path_is_read_twice_and_not_spooled(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(MESSAGE)
    stream = PathContent(path)
    signed = sign_prepared(_prepared(stream=stream, headers=TRACE), _signers())
    assert signed.stream is stream  # sent from the file itself, opened again
    assert signed.headers.count(b"DKIM-Signature:") == 2
    assert verify_all(_wire(b"".join(signed.pieces()))) == [True, True]


@pytest.mark.parametrize("kind", ["file", "iterable"])
def test_read_once_content_is_spooled_canonical_and_signed(kind: str) -> None:
    pieces = [MESSAGE[i : i + 1000] for i in range(0, len(MESSAGE), 1000)]
    stream = FileContent(io.BytesIO(MESSAGE)) if kind == "file" else IterableContent(pieces)
    signed = sign_prepared(_prepared(stream=stream, headers=TRACE), _signers())
    assert signed.stream is not stream
    assert signed.headers.count(b"DKIM-Signature:") == 2 and signed.headers.endswith(TRACE)
    assert signed.declared_size == len(signed.headers) + len(_wire(MESSAGE))  # SIZE= known
    assert signed.eight_bit is False
    content = b"".join(signed.pieces())
    assert content == signed.headers + _wire(MESSAGE)
    assert verify_all(content) == [True, True]


@pytest.mark.parametrize("source", ["path", "file", "chunks"])
async def test_streamed_sources_are_signed_end_to_end(
    mode: Mode, mail_server: MailServer, tmp_path: pathlib.Path, source: str
) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(MESSAGE)
    message: typing.Any = {
        "path": path,
        "file": io.BytesIO(MESSAGE),
        "chunks": iter([MESSAGE[:50], MESSAGE[50:3000], MESSAGE[3000:]]),
    }[source]
    async with mode.session(signed_builder(mail_server)) as s:
        await s.send_message(message, sender="alice@example.com", recipients=["bob@example.org"])
    (received,) = mail_server.messages
    assert received.data.endswith(_wire(MESSAGE).split(b"\r\n\r\n", 1)[1])
    assert verify_all(received.data) == [True, True]
    assert any(o.startswith("SIZE=") for o in received.mail_options)  # known, even spooled


def test_a_20_mb_one_shot_source_is_signed_in_bounded_memory() -> None:
    import gc
    import tracemalloc

    line = b"x" * 998 + b"\r\n"
    head = b"From: a@example.com\r\nTo: b@example.org\r\n\r\n"

    def chunks() -> typing.Iterator[bytes]:
        yield head
        for _ in range(320):  # 20 MB: 320 chunks of 64 lines of 1 KB
            yield line * 64

    gc.collect()
    tracemalloc.start()
    try:
        signed = sign_prepared(_prepared(stream=IterableContent(chunks())), _signers())
        total = sum(len(piece) for piece in signed.pieces())
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 20_000_000
    assert peak < 12 * 1024 * 1024, peak  # the 8 MiB in-memory spool limit, plus pieces
