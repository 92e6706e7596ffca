"""Helpers for the SASL mechanism tests (not collected): a tiny driver and marker secrets."""

from __future__ import annotations

from mailsdk.auth import SaslContext, SaslCredentials, SaslExchange

#: Distinctive secrets: a test fails if these ever show up in a repr or an error message.
PASSWORD = "Pw-7f3c9e1d-never-shown"
TOKEN = "ya29.TOKEN-5b8d0a2e-never-shown"

TLS = SaslContext(host="smtp.example.com", port=587, tls_active=True)


def creds(
    username: str = "user", secret: str = PASSWORD, authzid: str | None = None
) -> SaslCredentials:
    return SaslCredentials(username, secret, authzid)


def drive(
    exchange: SaslExchange, challenges: list[bytes], *, use_initial: bool = True
) -> list[bytes]:
    """Play the client side like an SMTP flow would: initial response, then one per 334."""
    sent: list[bytes] = []
    if use_initial:
        first = exchange.initial_response()
        if first is not None:
            sent.append(first)
    for challenge in challenges:
        sent.append(exchange.respond(challenge))
    return sent
