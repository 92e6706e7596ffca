"""SMTP AUTH (RFC 4954): pick a mechanism, base64 framing, the 334 loop, cancellation, OAuth retry.

Layer: L3 flows (sans-IO). May import ``mailsdk.protocol``, ``mailsdk.esmtp``, ``mailsdk.auth``
(the pure SASL modules and the token value type) and L0. Must never import transport,
telemetry or client. The mechanisms themselves are protocol-agnostic (``mailsdk.auth``); this
module is the SMTP framing around them.

Wire (PLAIN with an initial response, then XOAUTH2 with an error challenge)::

    C: AUTH PLAIN AGFsaWNlAHBhc3N3b3Jk
    S: 235 2.7.0 Authentication successful

    C: AUTH XOAUTH2 dXNlcj1h...
    S: 334 eyJzdGF0dXMiOiI0MDEi...        (base64 JSON error, RFC 7628 §3.2.2 style)
    C:                                     (empty line: acknowledge the error)
    S: 535 5.7.3 Authentication unsuccessful

Secrets: payloads are built here and handed to the connection; they are never put in an
exception or returned. The driver's wire log redacts AUTH arguments and continuation lines.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Generator, Sequence

import attrs

from mailsdk._secret import Secret
from mailsdk.auth import (
    ChannelBinding,
    CredentialKind,
    Mechanism,
    MechanismRegistry,
    SaslContext,
    SaslCredentials,
)
from mailsdk.errors import AuthenticationFailed, AuthError, ProtocolError, TransportError
from mailsdk.esmtp import Capabilities
from mailsdk.flows.actions import Action, Close, obtain_token, submit_one
from mailsdk.protocol.address import check_text
from mailsdk.protocol.commands import Auth, AuthResponse
from mailsdk.protocol.reply import Reply

__all__ = ["AuthRequest", "MAX_ROUNDS", "authenticate", "failure_hint"]

#: A hostile server could keep sending 334 forever; we give up after this many challenges.
MAX_ROUNDS = 10

_HINTS = {
    "5.7.139": "SMTP AUTH is disabled for this tenant or mailbox (Exchange Online: enable "
    "Authenticated SMTP, or use OAuth with the SMTP.Send permission)",
    "5.7.3": "authentication unsuccessful: wrong credentials, or SMTP AUTH disabled for the "
    "mailbox",
    "5.7.57": "the client was not authenticated to send mail: authenticate before MAIL FROM "
    "(Office365: port 587 with STARTTLS)",
    "5.7.8": "username and password not accepted (Gmail: use an app password or OAuth)",
    "5.7.9": "an application-specific password is required (Gmail)",
    "5.7.0": "authentication failed; for OAuth check the token's audience and scopes",
    "5.7.11": "the mechanism requires encryption: use STARTTLS or implicit TLS",
    "4.7.0": "temporary authentication failure; retry later",
}


#: Token mechanisms: the usual cause is the token, not a password.
_TOKEN_HINTS = {
    "5.7.8": "the access token was rejected: check that it has not expired, its audience "
    "and scopes (Gmail: https://mail.google.com/; Office365: SMTP.Send), and the username",
    "5.7.3": "the access token was rejected: check its audience and scopes, that the app has "
    "the SMTP permission, and that SMTP AUTH is enabled for the mailbox",
}


def failure_hint(reply: Reply, kind: CredentialKind = CredentialKind.PASSWORD) -> str | None:
    """A short explanation of the usual cause of an AUTH failure, from its enhanced status.

    Args:
        reply: the failure reply.
        kind: whether a password or an access token was used (the causes differ).
    """
    status = (
        str(reply.enhanced)
        if reply.enhanced is not None
        else ("5.7.3" if reply.code == 535 else None)
    )
    if status is None:
        return None
    if kind is CredentialKind.TOKEN and status in _TOKEN_HINTS:
        return _TOKEN_HINTS[status]
    return _HINTS.get(status)


@attrs.frozen(kw_only=True)
class AuthRequest:
    """What the caller wants to authenticate with.

    Exactly one of ``password`` and ``use_token`` applies: with ``use_token`` the flow asks the
    driver for an access token (``ObtainToken``), and retries exactly once with a forced fresh
    token when the server rejects a token that may have come from a cache.
    """

    username: str
    password: Secret | None = None
    use_token: bool = False
    authzid: str | None = None
    mechanisms: tuple[str, ...] | None = None
    allow_plaintext: bool = False

    @property
    def kind(self) -> CredentialKind:
        """Password or token credentials."""
        return CredentialKind.TOKEN if self.use_token else CredentialKind.PASSWORD


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def _run_exchange(
    mechanism: Mechanism, credentials: SaslCredentials, context: SaslContext
) -> Generator[Action, object, Reply]:
    exchange = mechanism.start(credentials, context)
    initial = exchange.initial_response() if mechanism.supports_initial_response else None
    sent: list[bytes] = []  # what went out, raw and base64, to scrub from a failure reply
    if initial is None:
        reply = yield from submit_one(Auth(mechanism.name, None))
    else:
        sent += [initial, _b64(initial)]
        # RFC 4954 §4: a zero-length initial response is sent as a single "=".
        reply = yield from submit_one(Auth(mechanism.name, _b64(initial) if initial else b"="))
    rounds = 0
    while reply.code == 334:
        rounds += 1
        if rounds > MAX_ROUNDS:
            yield from _cancel()
            raise AuthError(f"AUTH {mechanism.name}: server sent more than {MAX_ROUNDS} challenges")
        try:
            challenge = base64.b64decode(b"".join(reply.lines).strip(), validate=True)
        except (binascii.Error, ValueError):
            yield from _cancel()
            raise AuthError(
                f"AUTH {mechanism.name}: server challenge is not valid base64"
            ) from None
        try:
            response = exchange.respond(challenge)
        except AuthError:
            yield from _cancel()
            raise
        sent += [response, _b64(response)]
        reply = yield from submit_one(AuthResponse(_b64(response)))
    if reply.code == 235:
        try:
            exchange.finish(None)
        except AuthError:
            # The server said yes but could not prove it knows the credentials (SCRAM's server
            # signature, RFC 5802 §9): it may be an impostor. Say nothing more to it.
            yield Close()
            raise
        return reply
    raise AuthenticationFailed(
        _redacted(reply, credentials, sent),
        mechanism=mechanism.name,
        server_error=exchange.server_error,
        hint=failure_hint(reply, mechanism.credential_kind),
    )


def _redacted(reply: Reply, credentials: SaslCredentials, sent: list[bytes]) -> Reply:
    """The reply with any echo of the secret or of the payloads we sent replaced by ``***``.

    A server may quote what it refused ("535 invalid token ya29...") and the reply ends up in
    the exception's message, ``smtp_error`` and pickles; secrets must never be there.
    """
    needles = [p for p in sent if len(p) >= 4]
    secret = credentials.secret.reveal().encode("utf-8", "surrogatepass")
    if len(secret) >= 3:
        needles.append(secret)
    if not any(n in line for n in needles for line in reply.lines):
        return reply
    lines = list(reply.lines)
    for needle in sorted(needles, key=len, reverse=True):
        lines = [line.replace(needle, b"***") for line in lines]
    return Reply(reply.code, tuple(lines), reply.enhanced)


def _cancel() -> Generator[Action, object, None]:
    # RFC 4954 §4: "*" cancels the exchange; the server answers 501. Best effort: a connection
    # lost meanwhile must not hide the local failure that made us cancel.
    with contextlib.suppress(TransportError, ProtocolError):
        yield from submit_one(AuthResponse(b"*"))


def authenticate(
    request: AuthRequest,
    capabilities: Capabilities,
    registry: MechanismRegistry,
    *,
    host: str,
    port: int,
    tls_active: bool,
    channel_binding: ChannelBinding | None = None,
    offered: Sequence[str] | None = None,
) -> Generator[Action, object, str]:
    """Authenticate; returns the mechanism name used.

    Raises:
        InvalidInputError: a control character (CR, LF, NUL...) in the username or authzid.
        ConfigurationError: ``request.mechanisms`` names an unregistered mechanism, or one for
            another kind of credential.
        AuthError: no usable mechanism in common (the message names both lists), a malformed
            challenge, or too many rounds.
        AuthenticationFailed: the server rejected the credentials (with hint and OAuth error).
    """
    # CR/LF/controls in an identity are refused like any other argument (the mechanisms would
    # only report a SASLprep failure), before anything is sent.
    check_text(request.username, "the AUTH username")
    if request.authzid is not None:
        check_text(request.authzid, "the AUTH authorization identity")
    if request.mechanisms is not None:
        registry.check_preference(request.mechanisms, request.kind)
    server_offer = tuple(offered) if offered is not None else capabilities.auth_mechanisms
    if not server_offer:
        raise AuthError("the server does not offer AUTH")
    mechanism = registry.select(
        server_offer,
        kind=request.kind,
        preference=request.mechanisms,
        tls_active=tls_active,
        allow_plaintext=request.allow_plaintext,
        channel_binding_available=channel_binding is not None,
    )
    context = SaslContext(
        host=host,
        port=port,
        tls_active=tls_active,
        channel_binding=channel_binding,
        offered_mechanisms=server_offer,
    )
    if not request.use_token:
        if request.password is None:
            raise AuthError("no password given for password authentication")
        creds = SaslCredentials(request.username, request.password, request.authzid)
        yield from _run_exchange(mechanism, creds, context)
        return mechanism.name
    token = yield from obtain_token()
    creds = SaslCredentials(request.username, token.token, request.authzid)
    try:
        yield from _run_exchange(mechanism, creds, context)
    except AuthenticationFailed as exc:
        if exc.reply.code == 421 or (exc.is_transient and exc.reply.code != 454):
            raise
        # The token may have come from a cache and been revoked: exactly one retry, fresh token.
        fresh = yield from obtain_token(force_refresh=True)
        creds = SaslCredentials(request.username, fresh.token, request.authzid)
        yield from _run_exchange(mechanism, creds, context)
    return mechanism.name
