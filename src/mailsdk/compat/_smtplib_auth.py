"""SASL responses for ``mailsdk.compat.smtplib``'s ``auth_plain``/``auth_login``/``auth_cram_md5``.

Layer: L7 (compat, private). May import ``mailsdk.auth`` (the pure mechanisms) and L0; must never
import ``mailsdk.api``, the token providers or any I/O module.

smtplib's "authobject" protocol is stateless: a callable taking the decoded challenge (or
``None`` for the initial response) and returning the response text. Each call here starts a
fresh mailsdk exchange and plays it to the requested step, so the encoding decisions (RFC 4616
PLAIN with SASLprep, LOGIN order, RFC 2195 CRAM-MD5) are mailsdk's. Local SASL failures
(:class:`~mailsdk.errors.AuthError`) become the standard library's ``SMTPException``; their
messages never contain the credentials.
"""

from __future__ import annotations

import base64
import contextlib
import smtplib as _std
import typing
from collections.abc import Generator

from mailsdk.auth import (
    CramMD5Mechanism,
    LoginMechanism,
    SaslContext,
    SaslCredentials,
)
from mailsdk.auth.plain import encode_plain
from mailsdk.errors import AuthError

__all__ = [
    "CredentialsNotEncodable",
    "b64_response",
    "cram_md5_response",
    "login_response",
    "plain_response",
]

_CONTEXT: typing.Final = SaslContext(host="", port=0, tls_active=False)


class CredentialsNotEncodable(_std.SMTPException):
    """A built-in authobject cannot encode the credentials for its mechanism (local failure).

    Still an ``smtplib.SMTPException``; ``login()`` uses the subclass to tell this apart from a
    server-side failure and moves on to the next mechanism, as smtplib does after a refusal.
    """


@contextlib.contextmanager
def _as_smtp_exception() -> Generator[None, None, None]:
    try:
        yield
    except AuthError as exc:
        raise CredentialsNotEncodable(str(exc)) from None


def plain_response(user: str, password: str) -> str:
    """The PLAIN message ``NUL user NUL password`` (RFC 4616 §2), SASLprep applied.

    Raises:
        smtplib.SMTPException: the credentials cannot be encoded (empty, prohibited characters).
    """
    with _as_smtp_exception():
        return encode_plain(SaslCredentials(user, password)).decode("utf-8")


def login_response(user: str, password: str, challenge_count: int) -> str:
    """The LOGIN answer for a round: the username first, then the password.

    Args:
        user: the username.
        password: the password.
        challenge_count: smtplib's ``_auth_challenge_count`` (1 for the first answer whether it
            is the initial response or the reply to the first 334, 2 and more afterwards).

    Raises:
        smtplib.SMTPException: the username is empty.
    """
    with _as_smtp_exception():
        exchange = LoginMechanism(initial_response=False).start(
            SaslCredentials(user, password), _CONTEXT
        )
        answer = exchange.respond(b"")
        if challenge_count >= 2:
            answer = exchange.respond(b"")
        return answer.decode("utf-8")


def cram_md5_response(user: str, password: str, challenge: bytes) -> str:
    """The CRAM-MD5 answer ``user SP hex(HMAC-MD5(password, challenge))`` (RFC 2195 §2).

    Raises:
        smtplib.SMTPException: empty username or challenge, or a username with a space.
    """
    with _as_smtp_exception():
        exchange = CramMD5Mechanism().start(SaslCredentials(user, password), _CONTEXT)
        return exchange.respond(challenge).decode("utf-8")


def b64_response(response: str | bytes, *, initial: bool) -> str:
    """Base64-encode a response for the wire (RFC 4954 §4), UTF-8 for text.

    An empty *initial* response is sent as ``=`` (RFC 4954 §4); an empty continuation response
    is an empty line.
    """
    raw = response.encode("utf-8") if isinstance(response, str) else response
    if not raw:
        return "=" if initial else ""
    return base64.b64encode(raw).decode("ascii")
