"""Mailbox and path handling: validation, ``<...>`` quoting, the ASCII vs SMTPUTF8 decision.

Layer: L1 (sans-IO protocol core). May import L0 (``mailsdk.errors``) and the stdlib text
modules; must never import socket, ssl, asyncio, selectors, threading, time, logging,
opentelemetry or msal.

The check is deliberately *reasonable*, not a full RFC 5322 parser: it refuses what can never be
a valid RFC 5321 path or would corrupt the command line (CR/LF/NUL and other controls, unquoted
spaces, a missing ``@``), and accepts every valid RFC 5321 local part, quoted strings included
(``"john smith"@example.com``). Non-ASCII mailboxes are allowed; :func:`needs_smtputf8` tells the
caller that ``SMTPUTF8`` (RFC 6531) is then required.
"""

from __future__ import annotations

import functools
import re
import typing

from mailsdk.errors import InvalidInputError

__all__ = ["check_text", "needs_smtputf8", "quote_path", "split_mailbox", "validate_address"]

# Never allowed in anything that goes on a command line (CR/LF injection): C0 controls and DEL;
# C1 controls (NEL U+0085 included), LINE and PARAGRAPH SEPARATOR, which end a line for any
# server that splits decoded text with ``str.splitlines()`` (RFC 5198 §2 forbids them in
# Net-Unicode); and lone surrogates (``surrogateescape`` debris), which cannot be UTF-8 encoded.
_CONTROL_RE: typing.Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Characters that may not appear unquoted in a local part (RFC 5321 §4.1.2 Dot-string / atext).
_LOCAL_SPECIALS_RE: typing.Final = re.compile(r'[\s<>()\[\]\\,;:@"]')
# Characters never valid in a domain or address literal.
_DOMAIN_BAD_RE: typing.Final = re.compile(r'[\s<>()\\,;"@]')
_QUOTED_RE: typing.Final = re.compile(r'"(?:[^"\\]|\\.)*"')


def check_text(value: str, what: str) -> str:
    """Refuse CR, LF, NUL and every other control character in text destined for the wire.

    Refused: C0 controls, DEL, C1 controls (U+0080-U+009F), U+2028/U+2029 and lone surrogates.

    Args:
        value: the text.
        what: a description for the error message (never the value itself if it may be secret).

    Returns:
        ``value`` unchanged.

    Raises:
        InvalidInputError: ``value`` is not a ``str`` or contains a control character.
    """
    if not isinstance(value, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidInputError(f"{what} must be a str, not {type(value).__name__}")
    m = _CONTROL_RE.search(value)
    if m is not None:
        raise InvalidInputError(
            f"{what} contains control character {m.group()!r} (CR/LF/NUL injection refused)"
        )
    return value


def _extract(address: str) -> str:
    """Strip a display name and angle brackets: ``"Name <a@b>"`` -> ``"a@b"``."""
    s = address.strip()
    if s.endswith(">"):
        lt = s.rfind("<")
        if lt == -1:
            raise InvalidInputError(f"unbalanced angle brackets in address {address!r}")
        s = s[lt + 1 : -1].strip()
        # RFC 5321 §4.1.1.3 / Appendix C: a source route "@a,@b:" is ignored.
        if s.startswith("@") and ":" in s:
            s = s.split(":", 1)[1]
    return s


def split_mailbox(mailbox: str) -> tuple[str, str]:
    """Split ``local@domain`` at the last ``@`` after validating both halves.

    Args:
        mailbox: a bare mailbox (no angle brackets).

    Returns:
        ``(local_part, domain)``.

    Raises:
        InvalidInputError: the mailbox is malformed (RFC 5321 §4.1.2).
    """
    at = mailbox.rfind("@")
    if at <= 0 or at == len(mailbox) - 1:
        raise InvalidInputError(f"address {mailbox!r} must be local@domain")
    local, domain = mailbox[:at], mailbox[at + 1 :]
    if local.startswith('"'):
        if _QUOTED_RE.fullmatch(local) is None:
            raise InvalidInputError(f"malformed quoted local part in {mailbox!r}")
    elif _LOCAL_SPECIALS_RE.search(local) or local.startswith(".") or local.endswith("."):
        raise InvalidInputError(f"invalid local part in address {mailbox!r}")
    if domain.startswith("["):
        # Address literal, RFC 5321 §4.1.3: "[192.0.2.1]" or "[IPv6:...]".
        if not domain.endswith("]") or _DOMAIN_BAD_RE.search(domain[1:-1]) or "[" in domain[1:]:
            raise InvalidInputError(f"invalid address literal in {mailbox!r}")
    elif _DOMAIN_BAD_RE.search(domain) or ":" in domain or "[" in domain or "]" in domain:
        raise InvalidInputError(f"invalid domain in address {mailbox!r}")
    return local, domain


@functools.lru_cache(maxsize=4096)
def _validated(address: str, allow_null: bool) -> str:
    check_text(address, "address")
    mailbox = _extract(address)
    if mailbox == "":
        if not allow_null:
            raise InvalidInputError("the null path <> is only valid as a sender")
        return ""
    if mailbox.lower() == "postmaster":
        return mailbox
    split_mailbox(mailbox)
    return mailbox


def validate_address(address: str, *, allow_null: bool = True) -> str:
    """Validate an address and return the bare mailbox (``""`` for the null reverse-path).

    Accepts ``a@b``, ``<a@b>``, ``Name <a@b>``, ``""``/``<>`` (null sender, when allowed) and
    ``postmaster`` (RFC 5321 §4.1.1.3: ``<Postmaster>`` needs no domain).

    Args:
        address: the address as the user wrote it.
        allow_null: accept the null path ``<>`` (valid for MAIL FROM only).

    Returns:
        The mailbox without angle brackets.

    Raises:
        InvalidInputError: control characters, spaces, missing ``@``, or a null path when not
            allowed.
    """
    # Pure and called for every MAIL and RCPT: a bulk run repeats the same few addresses, so
    # the result is cached (a refusal raises and is not cached).
    if type(address) is not str:
        if not isinstance(address, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidInputError(f"an address is a str, not {type(address).__name__}")
        address = str(address)  # e.g. a header value: cache plain strings only
    return _validated(address, allow_null)


def quote_path(address: str, *, allow_null: bool = True) -> str:
    """Return the RFC 5321 §4.1.2 path for ``address``: ``"a@b"`` -> ``"<a@b>"``.

    Args:
        address: a mailbox, an already bracketed path, ``"Name <a@b>"``, or ``""`` (null path).
        allow_null: accept the null path (MAIL FROM only).

    Returns:
        The path including the angle brackets (``"<>"`` for the null sender).

    Raises:
        InvalidInputError: the address is malformed (see :func:`validate_address`).
    """
    return f"<{validate_address(address, allow_null=allow_null)}>"


def needs_smtputf8(address: str) -> bool:
    """Tell whether sending ``address`` requires the SMTPUTF8 extension (RFC 6531 §3.2).

    Args:
        address: an address in any form accepted by :func:`quote_path`.

    Returns:
        ``True`` when the mailbox contains non-ASCII characters.
    """
    return not address.isascii()
