from __future__ import annotations

import pickle

import pytest

from mailsdk.auth import (
    MAX_ROUNDS,
    BaseExchange,
    ChannelBinding,
    SaslContext,
    SaslCredentials,
    SaslExchange,
)
from mailsdk.errors import AuthError

from .sasl_support import PASSWORD


class Echo(BaseExchange):
    """Answers every challenge; parses it as an int to exercise error conversion."""

    def __init__(self, max_rounds: int = MAX_ROUNDS) -> None:
        super().__init__("X-ECHO", max_rounds=max_rounds)

    def _step(self, challenge: bytes) -> bytes:
        table: dict[bytes, bytes] = {}
        if challenge == b"index":
            return challenge.split(b"x")[3]
        if challenge == b"key":
            return table[challenge]
        int(challenge.decode("ascii"))
        return challenge


def test_round_cap() -> None:
    exchange = Echo()
    assert isinstance(exchange, SaslExchange)
    for i in range(MAX_ROUNDS):
        assert exchange.respond(str(i).encode()) == str(i).encode()
    with pytest.raises(AuthError, match=f"more than {MAX_ROUNDS} challenges"):
        exchange.respond(b"1")


def test_round_cap_configurable() -> None:
    exchange = Echo(max_rounds=1)
    exchange.respond(b"1")
    with pytest.raises(AuthError):
        exchange.respond(b"1")


@pytest.mark.parametrize("challenge", [b"\xff", b"abc", b"index", b"key"])
def test_parse_errors_become_auth_errors(challenge: bytes) -> None:
    with pytest.raises(AuthError, match="X-ECHO: malformed server challenge") as info:
        Echo().respond(challenge)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_respond_after_finish() -> None:
    exchange = Echo()
    exchange.finish(None)
    with pytest.raises(AuthError, match="after the exchange finished"):
        exchange.respond(b"1")


def test_defaults() -> None:
    exchange = Echo()
    assert exchange.initial_response() is None
    assert exchange.server_error is None
    assert repr(exchange) == "<Echo mechanism=X-ECHO rounds=0>"


def test_credentials_wrap_secret_and_refuse_pickle() -> None:
    credentials = SaslCredentials("user", PASSWORD)
    assert credentials.secret.reveal() == PASSWORD
    assert PASSWORD not in repr(credentials)
    assert PASSWORD not in str(credentials)
    with pytest.raises(TypeError):
        pickle.dumps(credentials)


def test_exchange_refuses_pickle() -> None:
    with pytest.raises(TypeError, match="refuse to be pickled"):
        pickle.dumps(Echo())


def test_context_normalises_offered_mechanisms() -> None:
    ctx = SaslContext("h", 25, False, offered_mechanisms=["plain", "Scram-Sha-256"])
    assert ctx.offered_mechanisms == ("PLAIN", "SCRAM-SHA-256")
    assert ctx.channel_binding is None
    cb = ChannelBinding("tls-server-end-point", b"\x01")
    assert SaslContext("h", 25, True, channel_binding=cb).channel_binding is cb
