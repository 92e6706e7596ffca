"""The SASL seams: credentials, context, the Mechanism and SaslExchange protocols.

Layer: L2 (auth, pure). SASL is protocol-agnostic (RFC 4422), so this package serves SMTP AUTH
(RFC 4954) today and IMAP AUTHENTICATE later.
May import: ``mailsdk.errors``, ``mailsdk._secret``, attrs and non-I/O stdlib.
Must never import: ``mailsdk.protocol``/``esmtp``/``flows``/``transport``; socket, ssl, asyncio,
time, logging, msal.

Exchanges are sans-IO: raw bytes in, raw bytes out. Base64 framing (RFC 4954 §4) and the ``*``
cancel belong to the protocol flow that drives the exchange, never to a mechanism.
"""

from __future__ import annotations

import binascii
import enum
import re
import typing

import attrs

from mailsdk._secret import Secret, as_secret
from mailsdk.errors import AuthError

if typing.TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "MAX_ROUNDS",
    "BaseExchange",
    "ChannelBinding",
    "CredentialKind",
    "Mechanism",
    "SaslContext",
    "SaslCredentials",
    "SaslExchange",
    "check_encodable",
]

#: Default cap on server challenges per exchange; a server looping on 334 hits it (hostile case).
MAX_ROUNDS: typing.Final = 10

# RFC 5056 §7 / RFC 5929: channel binding type names are short ASCII tokens.
_CB_NAME = re.compile(r"[A-Za-z0-9.\-]{1,64}")


class CredentialKind(enum.Enum):
    """What a mechanism authenticates with."""

    #: a reusable password (PLAIN, LOGIN, CRAM-MD5, SCRAM-*)
    PASSWORD = "password"  # noqa: S105 - an enum label, not a credential
    #: an OAuth 2.0 access token (XOAUTH2, OAUTHBEARER)
    TOKEN = "token"  # noqa: S105 - an enum label, not a credential


def _upper_names(names: typing.Iterable[str]) -> tuple[str, ...]:
    return tuple(str(name).upper() for name in names)


def _bytes_summary(data: bytes) -> str:
    return f"<{len(data)} bytes>"


def check_encodable(mechanism: str, what: str, value: str) -> None:
    """Refuse text that UTF-8 cannot encode (a lone surrogate, as ``os.environ`` produces).

    Checked before encoding so that no ``UnicodeEncodeError`` is ever raised from a credential:
    its ``args`` would carry the whole string, password or token included.

    Raises:
        AuthError: ``value`` holds a surrogate code point; the message names ``what`` only.
    """
    if any("\ud800" <= c <= "\udfff" for c in value):
        raise AuthError(f"{mechanism}: the {what} contains a character UTF-8 cannot encode")


def _check_text(value: str) -> str:
    if not isinstance(value, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError("expected a str")
    return value


@attrs.frozen
class SaslCredentials:
    """Who authenticates, and with what secret.

    Args:
        username: the authentication identity (authcid).
        secret: the password or the access token; a plain ``str`` is wrapped in a
            :class:`~mailsdk.Secret` and never shown in ``repr``.
        authzid: the authorization identity to act as, if different from ``username``.
    """

    username: str = attrs.field(converter=_check_text)
    secret: Secret = attrs.field(converter=as_secret)
    authzid: str | None = None


@attrs.frozen
class ChannelBinding:
    """TLS channel binding data for the ``-PLUS`` mechanisms (RFC 5056, RFC 5929, RFC 9266).

    Args:
        kind: the binding type, ``"tls-exporter"`` (RFC 9266, TLS 1.3) or
            ``"tls-server-end-point"`` (RFC 5929 §4).
        data: the binding data obtained from the TLS layer (not a secret).

    Raises:
        AuthError: the kind is not a valid binding type name or the data is empty.
    """

    kind: str = attrs.field(validator=attrs.validators.instance_of(str))
    data: bytes = attrs.field(validator=attrs.validators.instance_of(bytes), repr=_bytes_summary)

    def __attrs_post_init__(self) -> None:
        if not _CB_NAME.fullmatch(self.kind):
            raise AuthError("channel binding type must be a short ASCII token (RFC 5056 §7)")
        if not self.data:
            raise AuthError(f"channel binding {self.kind!r} needs non-empty bytes")


@attrs.frozen
class SaslContext:
    """Facts about the connection a mechanism may need.

    Args:
        host: the server host name (OAUTHBEARER sends it, RFC 7628 §3.1).
        port: the server port (OAUTHBEARER).
        tls_active: whether the connection is encrypted.
        channel_binding: the TLS channel binding, when the transport can provide it.
        offered_mechanisms: what the server advertised (upper case), when known. SCRAM uses it to
            choose the ``y`` GS2 flag (RFC 5802 §6) only when the server did not offer ``-PLUS``.
    """

    host: str
    port: int
    tls_active: bool
    channel_binding: ChannelBinding | None = None
    offered_mechanisms: tuple[str, ...] = attrs.field(default=(), converter=_upper_names)


@typing.runtime_checkable
class SaslExchange(typing.Protocol):
    """One authentication attempt in progress: a sans-IO state machine.

    Driving it (RFC 4422 §3, framed for SMTP by RFC 4954 §4):

    1. if the mechanism ``supports_initial_response`` and the flow wants one, call
       :meth:`initial_response` once and send its (base64-encoded) result with ``AUTH``;
    2. for each ``334`` challenge, decode the base64 and pass the raw bytes to :meth:`respond`;
       send the (base64-encoded) result back; an :class:`~mailsdk.errors.AuthError` means: send
       ``*`` to cancel and give up;
    3. on ``235`` call :meth:`finish` (SCRAM verifies the server here);
    4. on ``5xx``/``4xx`` read :attr:`server_error` for the OAuth error JSON, if any.
    """

    def initial_response(self) -> bytes | None:
        """Return the raw initial response, or ``None`` to wait for the server's first challenge.

        Call at most once, before any :meth:`respond`; a non-``None`` result must be sent.
        """
        ...

    def respond(self, challenge: bytes) -> bytes:
        """Answer one raw (already base64-decoded) server challenge.

        Raises:
            AuthError: the challenge is malformed, unexpected, or the round cap was hit.
        """
        ...

    def finish(self, additional: bytes | None) -> None:
        """Accept the server's success, with its additional data if the protocol carried any.

        Raises:
            AuthError: the server failed to prove itself (SCRAM server signature).
        """
        ...

    @property
    def server_error(self) -> Mapping[str, object] | None:
        """The OAuth error JSON from an error challenge (RFC 7628 §3.2.2), if one came."""
        ...


@typing.runtime_checkable
class Mechanism(typing.Protocol):
    """A SASL mechanism: stateless description plus a factory of exchanges.

    Third-party mechanisms implement this and are registered through
    :class:`~mailsdk.auth.MechanismRegistry` (or the ``mailsdk.sasl`` entry-point group).
    Names ending in ``-PLUS`` need channel binding (RFC 5056 naming convention).
    """

    @property
    def name(self) -> str:
        """The registered SASL name, upper case (e.g. ``"SCRAM-SHA-256"``)."""
        ...

    @property
    def credential_kind(self) -> CredentialKind:
        """Whether the mechanism takes a password or an access token."""
        ...

    @property
    def sends_reusable_secret(self) -> bool:
        """True if an eavesdropper could replay what is sent (refused over plaintext)."""
        ...

    @property
    def supports_initial_response(self) -> bool:
        """True if the first client message may go with the AUTH command (RFC 4954 §4)."""
        ...

    def start(self, credentials: SaslCredentials, context: SaslContext) -> SaslExchange:
        """Begin one exchange.

        Raises:
            AuthError: the credentials cannot be used with this mechanism (e.g. SASLprep fails).
        """
        ...


class BaseExchange:
    """Helper base for exchanges: round cap, error capture, secret-free ``repr``, no pickling.

    Subclasses implement :meth:`_step` (and optionally :meth:`initial_response` and
    :meth:`_finish`). Any ``ValueError``/``LookupError`` raised by ``_step`` while parsing a
    challenge becomes an :class:`~mailsdk.errors.AuthError` naming the mechanism; the original
    exception is not chained, so no challenge or secret travels with it.

    Args:
        mechanism: the mechanism name, used in error messages.
        max_rounds: how many challenges to answer before giving up.
    """

    def __init__(self, mechanism: str, *, max_rounds: int = MAX_ROUNDS) -> None:
        self.mechanism = mechanism
        self.max_rounds = max_rounds
        self.rounds = 0
        self.finished = False
        self._server_error: dict[str, object] | None = None

    @property
    def server_error(self) -> Mapping[str, object] | None:
        """The OAuth error JSON captured from an error challenge, if any."""
        return self._server_error

    def initial_response(self) -> bytes | None:
        """No initial response unless the subclass provides one."""
        return None

    def respond(self, challenge: bytes) -> bytes:
        """Count the round, then let the subclass answer ``challenge``.

        Raises:
            AuthError: exchange finished, too many rounds, or a malformed challenge.
        """
        if self.finished:
            raise AuthError(f"{self.mechanism}: challenge received after the exchange finished")
        if not isinstance(challenge, bytes | bytearray | memoryview):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError("challenge must be bytes")
        self.rounds += 1
        if self.rounds > self.max_rounds:
            raise AuthError(
                f"{self.mechanism}: server sent more than {self.max_rounds} challenges; giving up"
            )
        try:
            return self._step(bytes(challenge))
        except AuthError:
            raise
        except (ValueError, LookupError, binascii.Error) as exc:
            # UnicodeError and binascii.Error are ValueErrors; IndexError/KeyError LookupErrors.
            raise AuthError(
                f"{self.mechanism}: malformed server challenge ({type(exc).__name__})"
            ) from None

    def finish(self, additional: bytes | None) -> None:
        """Mark the exchange successful; subclasses verify ``additional`` in :meth:`_finish`.

        Raises:
            AuthError: the subclass rejected the server's final data.
        """
        try:
            self._finish(additional)
        except AuthError:
            raise
        except (ValueError, LookupError, binascii.Error) as exc:
            raise AuthError(
                f"{self.mechanism}: malformed server success data ({type(exc).__name__})"
            ) from None
        finally:
            self.finished = True

    def _step(self, challenge: bytes) -> bytes:
        raise AuthError(f"{self.mechanism}: unexpected server challenge")

    def _finish(self, additional: bytes | None) -> None:
        return None

    def _unexpected(self) -> AuthError:
        return AuthError(f"{self.mechanism}: unexpected server challenge after the last response")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} mechanism={self.mechanism} rounds={self.rounds}>"

    def __reduce__(self) -> typing.NoReturn:
        raise TypeError("SASL exchanges hold credentials and refuse to be pickled")
