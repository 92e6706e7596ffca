"""AUTH refusals never carry an echoed secret; an unverified SCRAM server gets the connection closed; msal is time-limited."""

from __future__ import annotations

import typing

import pytest

from mailsdk._secret import Secret
from mailsdk.auth import MechanismRegistry, SaslCredentials
from mailsdk.auth.tokens import AccessToken
from mailsdk.errors import AuthenticationFailed, AuthError
from mailsdk.esmtp import parse_ehlo
from mailsdk.flows import AuthRequest, Exchange, authenticate
from mailsdk.flows import Close as CloseAction
from mailsdk.protocol.events import CommandReplied
from mailsdk.protocol.reply import Reply


def _auth_flow(request: AuthRequest, *ehlo: str) -> typing.Generator[typing.Any, object, str]:
    caps = parse_ehlo(Reply.build(250, "mx.example.com", *ehlo))
    return authenticate(
        request, caps, MechanismRegistry.default(), host="mx.example.com", port=587, tls_active=True
    )


def test_token_echoed_in_the_refusal_is_scrubbed() -> None:
    flow = _auth_flow(AuthRequest(username="alice@example.com", use_token=True), "AUTH XOAUTH2")
    next(flow)  # ObtainToken
    action = flow.send(AccessToken(Secret("ya29.SECRET-TOKEN"), None))
    assert isinstance(action, Exchange)
    sent = action.frames[0].initial_response
    assert sent is not None
    refusal = Reply.build(535, "5.7.8 token ya29.SECRET-TOKEN rejected; you sent " + sent.decode())
    action = flow.send((CommandReplied(action.frames[0], refusal),))
    assert action.force_refresh  # the one retry
    action = flow.send(AccessToken(Secret("ya29.SECRET-TOKEN"), None))
    with pytest.raises(AuthenticationFailed) as info:
        flow.send((CommandReplied(action.frames[0], refusal),))
    exc = info.value
    for text in (str(exc), repr(exc), exc.smtp_error.decode(), repr(exc.args)):
        assert "SECRET-TOKEN" not in text
        assert sent.decode() not in text
    assert exc.smtp_code == 535
    assert "***" in exc.reply.text


def test_password_echoed_in_the_refusal_is_scrubbed() -> None:
    flow = _auth_flow(AuthRequest(username="bob", password=Secret("hunter2-pw")), "AUTH PLAIN")
    action = next(flow)
    with pytest.raises(AuthenticationFailed) as info:
        flow.send(
            (CommandReplied(action.frames[0], Reply.build(535, "5.7.8 bad password hunter2-pw")),)
        )
    assert "hunter2-pw" not in str(info.value)
    assert "hunter2-pw" not in info.value.reply.text


def test_unverified_scram_server_gets_the_connection_closed() -> None:
    """235 without a valid server signature: the client closes instead of talking on."""

    class NoProofExchange:
        server_error = None

        def initial_response(self) -> bytes:
            return b"n,,n=u,r=abc"

        def respond(self, challenge: bytes) -> bytes:
            return b""

        def finish(self, additional: bytes | None) -> None:
            raise AuthError("server signature missing")

    class Mech:
        name = "X-TEST"
        credential_kind = SaslCredentials  # replaced below
        sends_reusable_secret = False
        supports_initial_response = True

        def start(self, credentials: object, context: object) -> NoProofExchange:
            return NoProofExchange()

    from mailsdk.auth import CredentialKind

    Mech.credential_kind = CredentialKind.PASSWORD  # type: ignore[assignment]
    registry = MechanismRegistry.default()
    registry.register(Mech())  # type: ignore[arg-type]
    caps = parse_ehlo(Reply.build(250, "mx", "AUTH X-TEST"))
    flow = authenticate(
        AuthRequest(username="u", password=Secret("pw"), mechanisms=("X-TEST",)),
        caps,
        registry,
        host="mx",
        port=587,
        tls_active=True,
    )
    action = next(flow)
    action = flow.send((CommandReplied(action.frames[0], Reply.build(235, "2.7.0 ok")),))
    assert isinstance(action, CloseAction)
    with pytest.raises(AuthError):
        flow.send(None)


def test_msal_requests_are_time_limited() -> None:
    from mailsdk.auth.msal import HTTP_TIMEOUT, MsalAppOnlyProvider

    provider = MsalAppOnlyProvider("contoso.example", "client-id", "secret")
    assert provider._app_kwargs()["timeout"] == HTTP_TIMEOUT
    assert 0 < HTTP_TIMEOUT <= 60
