"""Typed SMTP/ESMTP/LMTP commands and their wire serialisation, with the injection guard.

Layer: L1 (sans-IO protocol core). May import L0 (``mailsdk.errors``), ``mailsdk.protocol.address``
and attrs; must never import socket, ssl, asyncio, selectors, threading, time, logging,
opentelemetry or msal.

Every command is an immutable value validated *when it is constructed*: a CR, LF, NUL, any other
C0 or C1 control, DEL, U+2028/U+2029 or a lone surrogate in any argument (address, hostname,
parameter, AUTH payload, raw line) raises :class:`~mailsdk.errors.InvalidInputError` before a
single byte can be produced. That is the whole
CR/LF command-injection defence (RFC 5321 §2.3.8: lines end with CRLF and nothing else may
introduce a line break). Text is encoded as UTF-8; deciding whether SMTPUTF8 is needed is the
caller's job (:func:`mailsdk.protocol.address.needs_smtputf8`).

Each command has a ``verb`` (upper case, for telemetry and logs), ``to_bytes()`` (the full line
including CRLF) and ``redacted()`` (the loggable form: AUTH payloads replaced by ``***``).
"""

from __future__ import annotations

import re
import typing

import attrs

from mailsdk.errors import InvalidInputError
from mailsdk.protocol.address import check_text, needs_smtputf8, quote_path

__all__ = [
    "Auth",
    "AuthResponse",
    "Bdat",
    "Command",
    "Data",
    "Ehlo",
    "EndOfData",
    "Expn",
    "Helo",
    "Help",
    "Lhlo",
    "MailFrom",
    "Noop",
    "Quit",
    "Raw",
    "RcptTo",
    "Rset",
    "StartTls",
    "Vrfy",
]

_CRLF: typing.Final = b"\r\n"
_REDACTED: typing.Final = b"***"
# RFC 4422 §3.1: mechanism names are 1-20 characters of [A-Z0-9-_] (we also accept lower case).
_MECH_RE: typing.Final = re.compile(r"[A-Za-z0-9_-]{1,20}")
# An AUTH payload is base64 text, "=" (empty initial response, RFC 4954 §4) or "*" (cancel).
_B64_RE: typing.Final = re.compile(rb"[A-Za-z0-9+/]*={0,2}|\*")
# RFC 5321 §4.1.2 esmtp-param: keyword ["=" value], no spaces, no controls.
_PARAM_RE: typing.Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*(=[^\s=\x00-\x1f\x7f]+)?")


def _line(*parts: str) -> bytes:
    return " ".join(parts).encode("utf-8") + _CRLF


def _hostname(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    check_text(value, attribute.name)
    if not value or any(c.isspace() for c in value):
        raise InvalidInputError(f"{attribute.name} must be a non-empty name without spaces")


def _argument(_inst: object, attribute: attrs.Attribute[typing.Any], value: str | None) -> None:
    if value is not None:
        check_text(value, attribute.name)


def _params(_inst: object, attribute: attrs.Attribute[tuple[str, ...]], value: object) -> None:
    if not isinstance(value, tuple):
        raise InvalidInputError(f"{attribute.name} must be a tuple of str")
    for param in typing.cast("tuple[object, ...]", value):
        # check_text refuses a non-str at run time: the cast only names what passes it.
        text = check_text(typing.cast("str", param), "parameter")
        if _PARAM_RE.fullmatch(text) is None:
            raise InvalidInputError(f"malformed ESMTP parameter {param!r} (RFC 5321 §4.1.2)")


def _payload(_inst: object, attribute: attrs.Attribute[typing.Any], value: bytes | None) -> None:
    # The value itself is never put in the message: it may carry a credential.
    if value is None:
        return
    if not isinstance(value, bytes):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidInputError(f"{attribute.name} must be bytes")
    if _B64_RE.fullmatch(value) is None:
        raise InvalidInputError(
            f"{attribute.name} must be base64 text, '=' or '*' (no spaces or control characters)"
        )


@attrs.frozen
class Ehlo:
    """``EHLO hostname`` (RFC 5321 §4.1.1.1). ``hostname`` is a domain or address literal."""

    hostname: str = attrs.field(validator=_hostname)
    verb: typing.ClassVar[str] = "EHLO"

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included."""
        return _line(self.verb, self.hostname)

    def redacted(self) -> bytes:
        """The loggable line (identical: nothing secret)."""
        return self.to_bytes()


@attrs.frozen
class Helo:
    """``HELO hostname`` (RFC 5321 §4.1.1.1), the fallback when EHLO is refused."""

    hostname: str = attrs.field(validator=_hostname)
    verb: typing.ClassVar[str] = "HELO"

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included."""
        return _line(self.verb, self.hostname)

    def redacted(self) -> bytes:
        """The loggable line (identical: nothing secret)."""
        return self.to_bytes()


@attrs.frozen
class Lhlo:
    """``LHLO hostname`` (RFC 2033 §4.1), LMTP's EHLO."""

    hostname: str = attrs.field(validator=_hostname)
    verb: typing.ClassVar[str] = "LHLO"

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included."""
        return _line(self.verb, self.hostname)

    def redacted(self) -> bytes:
        """The loggable line (identical: nothing secret)."""
        return self.to_bytes()


@attrs.frozen
class MailFrom:
    """``MAIL FROM:<sender> [params]`` (RFC 5321 §4.1.1.2). ``""`` is the null sender ``<>``."""

    sender: str
    params: tuple[str, ...] = attrs.field(default=(), validator=_params)
    verb: typing.ClassVar[str] = "MAIL"
    # The wire line, built once while validating: a bulk run reuses the same command objects
    # (``flows.judge`` caches them per address), so sending one costs no re-validation.
    _wire: bytes = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        path = quote_path(self.sender, allow_null=True)
        object.__setattr__(self, "_wire", _line("MAIL FROM:" + path, *self.params))

    @property
    def needs_smtputf8(self) -> bool:
        """True when the sender is non-ASCII (the SMTPUTF8 parameter is then required)."""
        return needs_smtputf8(self.sender)

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included."""
        return self._wire

    def redacted(self) -> bytes:
        """The loggable line (identical: nothing secret)."""
        return self.to_bytes()


@attrs.frozen
class RcptTo:
    """``RCPT TO:<recipient> [params]`` (RFC 5321 §4.1.1.3). The null path is refused."""

    recipient: str
    params: tuple[str, ...] = attrs.field(default=(), validator=_params)
    verb: typing.ClassVar[str] = "RCPT"
    _wire: bytes = attrs.field(init=False, eq=False, repr=False)  # see MailFrom._wire

    def __attrs_post_init__(self) -> None:
        path = quote_path(self.recipient, allow_null=False)
        object.__setattr__(self, "_wire", _line("RCPT TO:" + path, *self.params))

    @property
    def needs_smtputf8(self) -> bool:
        """True when the recipient is non-ASCII (SMTPUTF8 required on the MAIL command)."""
        return needs_smtputf8(self.recipient)

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included."""
        return self._wire

    def redacted(self) -> bytes:
        """The loggable line (identical: nothing secret)."""
        return self.to_bytes()


@attrs.frozen
class Data:
    """``DATA`` (RFC 5321 §4.1.1.4); the server answers 354, then the body follows."""

    verb: typing.ClassVar[str] = "DATA"

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included."""
        return b"DATA\r\n"

    def redacted(self) -> bytes:
        """The loggable line (identical: nothing secret)."""
        return self.to_bytes()


@attrs.frozen
class Bdat:
    """``BDAT size [LAST]`` header line (RFC 3030 §2); exactly ``size`` payload bytes follow."""

    size: int
    last: bool = False
    verb: typing.ClassVar[str] = "BDAT"

    def __attrs_post_init__(self) -> None:
        size: object = self.size
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidInputError("BDAT size must be a non-negative int")

    def to_bytes(self) -> bytes:
        """The header line, CRLF included (the payload is not part of it)."""
        return b"BDAT %d LAST\r\n" % self.size if self.last else b"BDAT %d\r\n" % self.size

    def redacted(self) -> bytes:
        """The loggable line (identical: nothing secret)."""
        return self.to_bytes()


@attrs.frozen
class Rset:
    """``RSET`` (RFC 5321 §4.1.1.5): abort the current transaction."""

    verb: typing.ClassVar[str] = "RSET"

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included."""
        return b"RSET\r\n"

    def redacted(self) -> bytes:
        """The loggable line (identical: nothing secret)."""
        return self.to_bytes()


@attrs.frozen
class Noop:
    """``NOOP [argument]`` (RFC 5321 §4.1.1.9)."""

    argument: str | None = attrs.field(default=None, validator=_argument)
    verb: typing.ClassVar[str] = "NOOP"

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included."""
        return _line(self.verb) if self.argument is None else _line(self.verb, self.argument)

    def redacted(self) -> bytes:
        """The loggable line (identical: nothing secret)."""
        return self.to_bytes()


@attrs.frozen
class Vrfy:
    """``VRFY argument`` (RFC 5321 §4.1.1.6)."""

    argument: str = attrs.field(validator=_argument)
    verb: typing.ClassVar[str] = "VRFY"

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included."""
        return _line(self.verb, self.argument)

    def redacted(self) -> bytes:
        """The loggable line (identical: nothing secret)."""
        return self.to_bytes()


@attrs.frozen
class Expn:
    """``EXPN argument`` (RFC 5321 §4.1.1.7)."""

    argument: str = attrs.field(validator=_argument)
    verb: typing.ClassVar[str] = "EXPN"

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included."""
        return _line(self.verb, self.argument)

    def redacted(self) -> bytes:
        """The loggable line (identical: nothing secret)."""
        return self.to_bytes()


@attrs.frozen
class Help:
    """``HELP [argument]`` (RFC 5321 §4.1.1.8)."""

    argument: str | None = attrs.field(default=None, validator=_argument)
    verb: typing.ClassVar[str] = "HELP"

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included."""
        return _line(self.verb) if self.argument is None else _line(self.verb, self.argument)

    def redacted(self) -> bytes:
        """The loggable line (identical: nothing secret)."""
        return self.to_bytes()


@attrs.frozen
class Quit:
    """``QUIT`` (RFC 5321 §4.1.1.10); the server answers 221 and closes."""

    verb: typing.ClassVar[str] = "QUIT"

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included."""
        return b"QUIT\r\n"

    def redacted(self) -> bytes:
        """The loggable line (identical: nothing secret)."""
        return self.to_bytes()


@attrs.frozen
class StartTls:
    """``STARTTLS`` (RFC 3207 §4); on 220 the TLS handshake starts."""

    verb: typing.ClassVar[str] = "STARTTLS"

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included."""
        return b"STARTTLS\r\n"

    def redacted(self) -> bytes:
        """The loggable line (identical: nothing secret)."""
        return self.to_bytes()


@attrs.frozen
class Auth:
    """``AUTH mechanism [initial-response]`` (RFC 4954 §4).

    ``initial_response`` is the *base64 text* to send (``b"="`` for an empty one), or ``None``
    to wait for the server's first 334 challenge. Its ``repr`` never shows the payload.
    """

    mechanism: str
    initial_response: bytes | None = attrs.field(default=None, validator=_payload, repr=False)
    verb: typing.ClassVar[str] = "AUTH"

    def __attrs_post_init__(self) -> None:
        check_text(self.mechanism, "mechanism")
        if _MECH_RE.fullmatch(self.mechanism) is None:
            raise InvalidInputError(f"invalid SASL mechanism name {self.mechanism!r}")

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included (contains the credential: never log it)."""
        head = b"AUTH " + self.mechanism.upper().encode("ascii")
        if self.initial_response is None:
            return head + _CRLF
        return head + b" " + self.initial_response + _CRLF

    def redacted(self) -> bytes:
        """The loggable line: the initial response replaced by ``***``."""
        head = b"AUTH " + self.mechanism.upper().encode("ascii")
        return head + _CRLF if self.initial_response is None else head + b" ***" + _CRLF


@attrs.frozen
class AuthResponse:
    """A SASL continuation line answering a 334 challenge (RFC 4954 §4): base64 or ``b"*"``.

    Its ``verb`` is ``"AUTH"`` (it is part of the AUTH exchange); its ``repr`` hides the payload.
    """

    payload: bytes = attrs.field(validator=_payload, repr=False)
    verb: typing.ClassVar[str] = "AUTH"

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included (contains the credential: never log it)."""
        return self.payload + _CRLF

    def redacted(self) -> bytes:
        """The loggable line: always ``***``."""
        return _REDACTED + _CRLF


@attrs.frozen
class Raw:
    """Any command line, sent as is (``execute``/``docmd``). CRLF is appended.

    The connection treats it as a state-neutral command like NOOP: use the typed commands for
    anything that changes the session state (MAIL, RCPT, DATA, BDAT, STARTTLS, AUTH, QUIT).
    """

    line: str = attrs.field(repr=False)

    def __attrs_post_init__(self) -> None:
        check_text(self.line, "command line")
        if not self.line.strip():
            raise InvalidInputError("command line must not be empty")

    @property
    def verb(self) -> str:
        """The first word of the line, upper-cased."""
        return self.line.split(None, 1)[0].upper()

    def to_bytes(self) -> bytes:
        """The wire line, CRLF included."""
        return self.line.encode("utf-8") + _CRLF

    def redacted(self) -> bytes:
        """The loggable line; anything after ``AUTH <mechanism>`` is replaced by ``***``."""
        words = self.line.split()
        if words[0].upper() == "AUTH":
            return _line(*words[:2], "***") if len(words) > 2 else self.to_bytes()
        if not _looks_like_command(words[0]):
            return _REDACTED + _CRLF
        return self.to_bytes()

    def __repr__(self) -> str:
        return f"Raw({self.redacted().decode('utf-8', 'replace').rstrip()!r})"


def _looks_like_command(word: str) -> bool:
    """A raw line not starting with a verb may be a SASL payload: treat it as secret."""
    return word.isalpha() and len(word) <= 12


@attrs.frozen
class EndOfData:
    """Pseudo-command that receives the reply after the message body (DATA or BDAT LAST).

    It is never sent by :meth:`ClientConnection.send`; ``end_body()`` queues it. In LMTP it
    receives one reply per accepted recipient (RFC 2033 §4.2).
    """

    verb: typing.ClassVar[str] = "DATA-END"

    def to_bytes(self) -> bytes:
        """The end-of-data marker ``.\\r\\n`` (what follows a body already ending in CRLF)."""
        return b".\r\n"

    def redacted(self) -> bytes:
        """The loggable form."""
        return self.to_bytes()


#: Any command the connection can send or pair a reply with.
Command: typing.TypeAlias = (
    Ehlo
    | Helo
    | Lhlo
    | MailFrom
    | RcptTo
    | Data
    | Bdat
    | Rset
    | Noop
    | Vrfy
    | Expn
    | Help
    | Quit
    | StartTls
    | Auth
    | AuthResponse
    | Raw
    | EndOfData
)
