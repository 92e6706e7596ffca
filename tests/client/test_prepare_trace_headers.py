"""Trace headers from an instrumentation are added in front of the message: each value must be
one line, since a CRLF inside it adds a well-formed header line of its own."""

from __future__ import annotations

import email.message
import typing
from collections.abc import Mapping

import pytest

from mailsdk import InvalidInputError
from mailsdk.client._prepare import prepare
from mailsdk.telemetry import NoopInstrumentation
from mailsdk.telemetry.base import NoopSessionObserver, NoopTransactionObserver


class _Transaction(NoopTransactionObserver):
    __slots__ = ("failure", "headers")

    def __init__(self, headers: Mapping[str, str]) -> None:
        self.headers = headers
        self.failure: BaseException | None = None

    def trace_headers(self) -> Mapping[str, str]:
        return self.headers

    def failed(self, error: BaseException) -> None:
        self.failure = error


class _Session(NoopSessionObserver):
    def __init__(self, headers: Mapping[str, str]) -> None:
        self.tx = _Transaction(headers)

    def transaction(self, **_kwargs: typing.Any) -> _Transaction:  # type: ignore[override]
        return self.tx


def _message(*, stale_trace: bool) -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.com"
    if stale_trace:
        msg["traceparent"] = "00-old"
    msg.set_content("body\n")
    return msg


@pytest.mark.parametrize("stale_trace", [False, True])
@pytest.mark.parametrize(
    "headers",
    [
        {"tracestate": "k=v\r\nBcc: c@evil.example"},
        {"traceparent": "00-abc\r\nX-Injected: 1"},
        {"tracestate": "k=v\nX-Injected: 1"},
        {"tracestate": "k=v\x00"},
        {"trace state": "k=v"},
    ],
)
def test_a_trace_header_value_with_a_line_break_is_refused(
    headers: dict[str, str], stale_trace: bool
) -> None:
    # Before: "tracestate: k=v\r\nBcc: c@evil.example\r\n" passed the syntax check and was
    # sent; with a stale traceparent in the message, a bare ValueError escaped.
    session = _Session(headers)
    with pytest.raises(InvalidInputError):
        prepare(session, _message(stale_trace=stale_trace), None, None)
    assert isinstance(session.tx.failure, InvalidInputError)


@pytest.mark.parametrize("stale_trace", [False, True])
def test_well_formed_trace_headers_are_added_once(stale_trace: bool) -> None:
    headers = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "tracestate": "k=v"}
    prepared, _tx = prepare(_Session(headers), _message(stale_trace=stale_trace), None, None)
    wire = b"".join(prepared.pieces())
    assert wire.count(b"traceparent: 00-aaaa") == 1
    assert b"tracestate: k=v\r\n" in wire
    assert b"00-old" not in wire


def test_the_noop_instrumentation_adds_nothing() -> None:
    session = NoopInstrumentation().session(
        server_address="h", server_port=25, transport="tcp", protocol="smtp"
    )
    prepared, _tx = prepare(session, _message(stale_trace=False), None, None)
    assert prepared.headers == b""
