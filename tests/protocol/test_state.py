"""The state tables: completeness and the rules they encode."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import mailsdk.protocol
from mailsdk.errors import LocalProtocolError
from mailsdk.protocol import ClientState, Outcome, Trigger
from mailsdk.protocol.state import (
    REPLY_TRANSITIONS,
    SEND_TRANSITIONS,
    outcome_of,
    state_after_reply,
    state_after_send,
)


def test_every_state_has_a_row() -> None:
    assert set(SEND_TRANSITIONS) == set(ClientState)


@pytest.mark.parametrize(
    "state", [ClientState.ERROR, ClientState.CLOSED, ClientState.CLOSING, ClientState.TLS_READY]
)
def test_dead_states_allow_nothing(state: ClientState) -> None:
    assert SEND_TRANSITIONS[state] == {}


def test_auth_only_outside_a_transaction() -> None:
    """RFC 4954 §4: AUTH is not permitted during a mail transaction."""
    allowed = {s for s, row in SEND_TRANSITIONS.items() if Trigger.AUTH in row}
    assert allowed == {ClientState.READY}


def test_auth_response_only_after_challenge() -> None:
    allowed = {s for s, row in SEND_TRANSITIONS.items() if Trigger.AUTH_RESPONSE in row}
    assert allowed == {ClientState.AUTH_CHALLENGE}


def test_mail_needs_hello() -> None:
    allowed = {s for s, row in SEND_TRANSITIONS.items() if Trigger.MAIL in row}
    assert allowed == {ClientState.READY}


def test_only_quit_before_greeting() -> None:
    assert set(SEND_TRANSITIONS[ClientState.CONNECTED]) == {Trigger.QUIT}


def test_data_needs_a_recipient() -> None:
    allowed = {s for s, row in SEND_TRANSITIONS.items() if Trigger.DATA in row}
    assert allowed == {ClientState.RCPT}


def test_reply_targets_are_states_that_exist_in_table() -> None:
    for (trigger, outcome), (sources, target) in REPLY_TRANSITIONS.items():
        assert isinstance(trigger, Trigger)
        assert isinstance(outcome, Outcome)
        assert sources
        assert target in SEND_TRANSITIONS


@pytest.mark.parametrize(
    ("trigger", "code", "outcome"),
    [
        (Trigger.DATA, 354, Outcome.GO_AHEAD),
        (Trigger.DATA, 334, Outcome.NEGATIVE),
        (Trigger.DATA, 250, Outcome.POSITIVE),
        (Trigger.AUTH, 334, Outcome.GO_AHEAD),
        (Trigger.AUTH_RESPONSE, 235, Outcome.POSITIVE),
        (Trigger.STARTTLS, 220, Outcome.POSITIVE),
        (Trigger.STARTTLS, 250, Outcome.NEGATIVE),
        (Trigger.MAIL, 451, Outcome.NEGATIVE),
        (Trigger.RCPT, 354, Outcome.NEGATIVE),
    ],
)
def test_outcome_of(trigger: Trigger, code: int, outcome: Outcome) -> None:
    assert outcome_of(trigger, code) is outcome


def test_state_after_send_refuses_with_message() -> None:
    with pytest.raises(LocalProtocolError, match="cannot send DATA in state READY"):
        state_after_send(ClientState.READY, Trigger.DATA, "DATA")


def test_corrections_only_from_listed_states() -> None:
    assert state_after_reply(ClientState.RCPT, Trigger.MAIL, Outcome.NEGATIVE) is ClientState.READY
    # DATA already pipelined: the DATA reply will do the correction.
    assert (
        state_after_reply(ClientState.DATA_SENT, Trigger.MAIL, Outcome.NEGATIVE)
        is ClientState.DATA_SENT
    )
    assert state_after_reply(ClientState.READY, Trigger.RSET, Outcome.POSITIVE) is ClientState.READY


# -- architecture of the package ----------------------------------------------------------------

FORBIDDEN = {
    "socket",
    "ssl",
    "asyncio",
    "selectors",
    "threading",
    "time",
    "logging",
    "opentelemetry",
    "msal",
}
PACKAGE_DIR = Path(mailsdk.protocol.__file__).parent


@pytest.mark.parametrize("path", sorted(PACKAGE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_protocol_modules_import_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
            if name.startswith("mailsdk."):
                assert name.startswith(("mailsdk.protocol", "mailsdk.errors", "mailsdk._")), name


# The raw tables and their helpers stay in mailsdk.protocol.state (documented there).
STATE_INTERNALS = {
    "REPLY_TRANSITIONS",
    "SEND_TRANSITIONS",
    "TRANSACTION_TRIGGERS",
    "outcome_of",
    "state_after_reply",
    "state_after_send",
    "trigger_of",
}


@pytest.mark.parametrize(
    "module", [m.name for m in pkgutil.iter_modules(mailsdk.protocol.__path__)]
)
def test_modules_have_all_and_docstring(module: str) -> None:
    mod = importlib.import_module(f"mailsdk.protocol.{module}")
    assert mod.__doc__
    assert "Layer: L1" in mod.__doc__
    for name in mod.__all__:
        assert hasattr(mod, name)
        if name not in STATE_INTERNALS:
            assert name in mailsdk.protocol.__all__, f"{module}.{name} not re-exported"


def test_package_all_is_unique_and_resolvable() -> None:
    names = mailsdk.protocol.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(mailsdk.protocol, name) is not None
