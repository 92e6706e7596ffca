"""RFC 3461 "xtext" encoding and decoding (used by the DSN ENVID and ORCPT parameters).

Layer: L2 (esmtp). May import L0 (``mailsdk.errors``) only; never sockets, clocks, logging,
``mailsdk.auth`` or anything at L3 and above.

RFC 3461 §4::

    xtext   = *( xchar / hexchar )
    xchar   = any ASCII CHAR between "!" (33) and "~" (126) inclusive,
              except for "+" and "=".
    hexchar = ASCII "+" immediately followed by two upper case
              hexadecimal digits

Also here: the RFC 6533 §3 ``utf-8-addr-xtext`` form used for a non-ASCII original recipient
(``\\x{HEX}`` escapes for every character outside ``QCHAR``), which is itself valid xtext.
"""

from __future__ import annotations

import re
import typing

from mailsdk.errors import InvalidInputError

__all__ = ["decode_xtext", "encode_utf8_addr_xtext", "encode_xtext", "is_xtext"]

_PLUS: typing.Final = 0x2B
_EQUALS: typing.Final = 0x3D
_HEX_UPPER: typing.Final = b"0123456789ABCDEF"
# RFC 3461 §4: a valid xtext string, as a whole.
_XTEXT_RE: typing.Final = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")


def _is_xchar(octet: int) -> bool:
    """True for an octet that xtext may carry as itself (RFC 3461 §4 ``xchar``)."""
    return 0x21 <= octet <= 0x7E and octet not in (_PLUS, _EQUALS)


def encode_xtext(value: str | bytes) -> str:
    """Encode ``value`` as RFC 3461 §4 xtext.

    Every octet outside ``"!"``..``"~"``, and ``"+"`` and ``"="`` themselves, become ``+HH``
    (upper-case hex). A ``str`` is encoded as UTF-8 first.

    Args:
        value: the text or octets to encode.

    Returns:
        The xtext form; pure printable ASCII without spaces.

    Example:
        ``encode_xtext("a+b=c d")`` returns ``"a+2Bb+3Dc+20d"``.
    """
    octets = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    out: list[str] = []
    for octet in octets:
        if _is_xchar(octet):
            out.append(chr(octet))
        else:
            out.append(f"+{octet:02X}")
    return "".join(out)


def is_xtext(value: str) -> bool:
    """Return True when ``value`` is well-formed xtext (RFC 3461 §4), upper-case hex only."""
    return _XTEXT_RE.fullmatch(value) is not None


def decode_xtext(value: str | bytes) -> bytes:
    """Decode RFC 3461 §4 xtext into the octets it stands for.

    Args:
        value: the xtext, as ``str`` or ``bytes``.

    Returns:
        The decoded octets (decode them with the charset you expect, usually ASCII/UTF-8).

    Raises:
        InvalidInputError: a character outside ``"!"``..``"~"``, a bare ``"="``, or a ``"+"``
            not followed by two upper-case hexadecimal digits.
    """
    if isinstance(value, str):
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidInputError("xtext must be ASCII (RFC 3461 §4)") from None
    else:
        raw = bytes(value)
    out = bytearray()
    i = 0
    length = len(raw)
    while i < length:
        octet = raw[i]
        if octet == _PLUS:
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or pair[0] not in _HEX_UPPER or pair[1] not in _HEX_UPPER:
                raise InvalidInputError(
                    f"malformed xtext: '+' at offset {i} is not followed by two upper-case "
                    "hex digits (RFC 3461 §4)"
                )
            out.append(int(pair, 16))
            i += 3
            continue
        if not _is_xchar(octet):
            raise InvalidInputError(
                f"malformed xtext: octet 0x{octet:02X} at offset {i} must be hex-encoded "
                "(RFC 3461 §4)"
            )
        out.append(octet)
        i += 1
    return bytes(out)


def _is_qchar(char: str) -> bool:
    """RFC 6533 §3 ``QCHAR``: printable ASCII except ``"\\"``, ``"+"`` and ``"="``."""
    code = ord(char)
    return 0x21 <= code <= 0x7E and char not in "\\+="


def encode_utf8_addr_xtext(address: str) -> str:
    """Encode an address as RFC 6533 §3 ``utf-8-addr-xtext`` (for ``ORCPT=utf-8;...``).

    Characters outside ``QCHAR`` (non-ASCII, space, ``\\``, ``+``, ``=``) become
    ``\\x{HEX}`` with the Unicode scalar value in upper-case hex, at least two digits and no
    other leading zeros. The result contains only 7-bit ``QCHAR`` characters, so it is also
    valid xtext and may be sent to any server, SMTPUTF8 or not.

    Args:
        address: the (possibly internationalised) mailbox.

    Returns:
        The 7-bit escaped form.
    """
    out: list[str] = []
    for char in address:
        if _is_qchar(char):
            out.append(char)
        else:
            out.append(f"\\x{{{ord(char):02X}}}")
    return "".join(out)
