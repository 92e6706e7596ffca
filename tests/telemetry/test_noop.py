"""The no-op instrumentation: shared singletons, nothing allocated per call, nothing recorded."""

from __future__ import annotations

import types

import pytest

import mailsdk.telemetry
from mailsdk.errors import ConnectionLost
from mailsdk.telemetry import NoopInstrumentation
from mailsdk.telemetry.base import NoopCommandObserver, NoopSessionObserver, NoopTransactionObserver

from .support import R_MAIL, RECIPIENTS, SENDER, run_smtp_session


def test_noop_returns_singletons() -> None:
    first, second = NoopInstrumentation(), NoopInstrumentation()
    s1 = first.session(server_address="mx", server_port=25, transport="tcp", protocol="smtp")
    s2 = second.session(server_address=None, server_port=None, transport="unix", protocol="lmtp")
    assert s1 is s2
    assert isinstance(s1, NoopSessionObserver)
    commands = {id(s1.command(v, pipeline_size=3)) for v in ("EHLO", "MAIL", "DATA.END")}
    assert len(commands) == 1
    assert isinstance(s1.command("QUIT"), NoopCommandObserver)
    t1 = s1.transaction(sender=SENDER, recipients=RECIPIENTS, size=None)
    t2 = s2.transaction(sender="", recipients=(), size=1)
    assert t1 is t2
    assert isinstance(t1, NoopTransactionObserver)
    assert t1.trace_headers() is t2.trace_headers()


def test_noop_headers_are_empty_and_immutable() -> None:
    txn = (
        NoopInstrumentation()
        .session(server_address="mx", server_port=25, transport="tcp", protocol="smtp")
        .transaction(sender=SENDER, recipients=RECIPIENTS, size=None)
    )
    headers = txn.trace_headers()
    assert headers == {}
    assert isinstance(headers, types.MappingProxyType)
    with pytest.raises(TypeError):
        headers["traceparent"] = "x"  # type: ignore[index]


def test_noop_accepts_every_hook() -> None:
    session = run_smtp_session(NoopInstrumentation())
    command = session.command("DATA.END")
    command.recipient_replied(RECIPIENTS[0], R_MAIL)
    command.failed(ConnectionLost("x"))
    session.transaction(sender=SENDER, recipients=RECIPIENTS, size=None).failed(ConnectionLost("x"))
    session.end(ConnectionLost("x"))
    assert not hasattr(session, "__dict__")  # slots only: no per-instance state


def test_public_names() -> None:
    assert sorted(mailsdk.telemetry.__all__) == [
        "CommandObserver",
        "Instrumentation",
        "NoopInstrumentation",
        "OpenTelemetryInstrumentation",
        "SessionObserver",
        "TransactionObserver",
    ]
    for name in mailsdk.telemetry.__all__:
        assert getattr(mailsdk.telemetry, name) is not None
    assert repr(NoopInstrumentation()) == "NoopInstrumentation()"
