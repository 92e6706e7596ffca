"""The built-in ESMTP extensions: how each standard EHLO keyword's parameters are parsed.

Layer: L2 (esmtp). May import L0 and ``mailsdk.protocol``; never ``mailsdk.auth``, L3 and above,
or I/O modules. Parsing here never raises: servers advertise odd things, and an unparseable
parameter must not make the whole EHLO reply unusable.

Keywords and their values (``Capabilities.get(keyword)``):

========================  ==========================================================  =========
keyword                   value                                                       RFC
========================  ==========================================================  =========
``SIZE``                  ``int`` limit in octets, or ``None`` (no limit declared)     1870 §4
``AUTH``                  ``tuple[str, ...]`` of SASL mechanism names, upper-case      4954 §3
``PIPELINING``            ``True``                                                    2920 §3
``CHUNKING``              ``True``                                                    3030 §2
``BINARYMIME``            ``True``                                                    3030 §3
``8BITMIME``              ``True``                                                    6152 §2
``SMTPUTF8``              ``True``                                                    6531 §3.1
``STARTTLS``              ``True``                                                    3207 §4
``ENHANCEDSTATUSCODES``   ``True``                                                    2034 §3
``DSN``                   ``True``                                                    3461 §4
``REQUIRETLS``            ``True``                                                    8689 §4.1
========================  ==========================================================  =========
"""

from __future__ import annotations

import re
import typing

import attrs

from mailsdk.errors import ConfigurationError
from mailsdk.esmtp.registry import is_ehlo_keyword

__all__ = [
    "AUTH",
    "BINARYMIME",
    "CHUNKING",
    "DSN",
    "EIGHTBITMIME",
    "ENHANCEDSTATUSCODES",
    "PIPELINING",
    "REQUIRETLS",
    "SIZE",
    "SMTPUTF8",
    "STARTTLS",
    "AuthExtension",
    "FlagExtension",
    "SizeExtension",
    "builtin_extensions",
    "parse_auth_mechanisms",
    "parse_size",
]

# RFC 4422 §3.1: sasl-mech = 1*20mech-char; mech-char = UPPER-ALPHA / DIGIT / HYPHEN / UNDERSCORE
_SASL_MECH_RE: typing.Final = re.compile(r"[A-Z0-9_-]{1,20}")
# More digits than any real limit; also keeps int() far from Python's int-from-str digit cap.
_MAX_SIZE_DIGITS: typing.Final = 20


def parse_size(params: str) -> int | None:
    """Parse the SIZE parameter (RFC 1870 §4).

    ``SIZE 35882577`` → ``35882577``. ``SIZE 0`` means "no fixed limit" (RFC 1870 §4), and so do
    a bare ``SIZE`` and a non-numeric or absurdly long value (tolerated: the server advertised
    the extension, we just do not know a limit).

    Args:
        params: the advertised parameters.

    Returns:
        The maximum message size in octets, or ``None`` for no known limit.
    """
    tokens = params.split()
    if not tokens:
        return None
    token = tokens[0]
    if not (token.isascii() and token.isdigit()) or len(token) > _MAX_SIZE_DIGITS:
        return None
    value = int(token)
    return value or None


def parse_auth_mechanisms(params: str) -> tuple[str, ...]:
    """Parse AUTH parameters into mechanism names (RFC 4954 §3).

    Names are upper-cased, de-duplicated with the first occurrence's position kept, and tokens
    that are not RFC 4422 §3.1 mechanism names are dropped.

    Args:
        params: the advertised parameters (legacy ``AUTH=`` lines already merged in).

    Returns:
        The mechanism names in the order the server listed them.
    """
    seen: dict[str, None] = {}
    for token in params.split():
        name = token.upper()
        if name.isascii() and _SASL_MECH_RE.fullmatch(name):
            seen.setdefault(name, None)
    return tuple(seen)


def _check_keyword(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not is_ehlo_keyword(value) or value != value.upper():
        raise ConfigurationError(f"invalid EHLO keyword {value!r} (RFC 5321 §4.1.1.1)")


@attrs.frozen
class FlagExtension:
    """An extension whose presence is all that matters (``PIPELINING``, ``8BITMIME``...).

    Args:
        keyword: the upper-case EHLO keyword.
    """

    keyword: str = attrs.field(validator=_check_keyword)

    def parse(self, params: str) -> object:
        """Return ``True``: the keyword was advertised (parameters, if any, are in ``raw``)."""
        return True


@attrs.frozen
class SizeExtension:
    """``SIZE`` (RFC 1870): the value is the maximum message size or ``None``."""

    keyword: str = attrs.field(default="SIZE", init=False)

    def parse(self, params: str) -> object:
        """Return :func:`parse_size` of ``params``."""
        return parse_size(params)


@attrs.frozen
class AuthExtension:
    """``AUTH`` (RFC 4954): the value is the tuple of offered SASL mechanisms.

    The legacy ``AUTH=LOGIN PLAIN`` line some servers still send is merged into ``AUTH`` by the
    EHLO parser before this runs.
    """

    keyword: str = attrs.field(default="AUTH", init=False)

    def parse(self, params: str) -> object:
        """Return :func:`parse_auth_mechanisms` of ``params``."""
        return parse_auth_mechanisms(params)


SIZE: typing.Final = SizeExtension()
AUTH: typing.Final = AuthExtension()
PIPELINING: typing.Final = FlagExtension("PIPELINING")
CHUNKING: typing.Final = FlagExtension("CHUNKING")
BINARYMIME: typing.Final = FlagExtension("BINARYMIME")
EIGHTBITMIME: typing.Final = FlagExtension("8BITMIME")
SMTPUTF8: typing.Final = FlagExtension("SMTPUTF8")
STARTTLS: typing.Final = FlagExtension("STARTTLS")
ENHANCEDSTATUSCODES: typing.Final = FlagExtension("ENHANCEDSTATUSCODES")
DSN: typing.Final = FlagExtension("DSN")
REQUIRETLS: typing.Final = FlagExtension("REQUIRETLS")


def builtin_extensions() -> tuple[SizeExtension | AuthExtension | FlagExtension, ...]:
    """Return the built-in extensions in their registration order.

    The objects are immutable, so sharing them between registries is safe.
    """
    return (
        SIZE,
        PIPELINING,
        CHUNKING,
        BINARYMIME,
        EIGHTBITMIME,
        SMTPUTF8,
        STARTTLS,
        AUTH,
        ENHANCEDSTATUSCODES,
        DSN,
        REQUIRETLS,
    )
