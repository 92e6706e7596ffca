"""Capabilities: the immutable, typed view of what a server advertised, and the EHLO parser.

Layer: L2 (esmtp). May import ``mailsdk.protocol`` (reply, reply parser) and L0; never
``mailsdk.auth``, L3 and above, or I/O modules.

RFC 5321 §4.1.1.1 / §4.2: the EHLO reply is ``250-domain [greeting]`` followed by one line per
extension, ``ehlo-keyword *( SP ehlo-param )``. Servers in the wild add leading spaces, empty
lines, non-ASCII text, the pre-RFC 2554 ``AUTH=LOGIN`` form, and repeated keywords; the parser
tolerates all of it: a line it cannot read is kept in ``ignored_lines`` and never raises.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping

import attrs

from mailsdk.errors import CapabilityError, InvalidInputError, LocalProtocolError, MailError
from mailsdk.esmtp.registry import Extension, ExtensionRegistry, is_ehlo_keyword
from mailsdk.protocol.reply import Reply
from mailsdk.protocol.reply_parser import ReplyParser

__all__ = ["Capabilities", "parse_ehlo"]

_T = typing.TypeVar("_T")
_WHITESPACE: typing.Final = b" \t\r\n\x0b\x0c"
_LEGACY_AUTH: typing.Final = b"AUTH="


def _no_text() -> dict[str, str]:
    return {}


def _no_values() -> dict[str, object]:
    return {}


def _freeze_text(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return types.MappingProxyType(dict(mapping))


def _freeze_values(mapping: Mapping[str, object]) -> Mapping[str, object]:
    return types.MappingProxyType(dict(mapping))


def _decode(data: bytes) -> str:
    # ehlo-param is ASCII (RFC 5321 §4.1.1.1); anything else is shown, never trusted.
    return data.decode("utf-8", "replace")


def _split_first_line(line: bytes) -> tuple[str, str]:
    """``b"mx.example.com Hello [1.2.3.4]"`` → ``("mx.example.com", "Hello [1.2.3.4]")``."""
    parts = line.strip(_WHITESPACE).split(None, 1)
    if not parts:
        return "", ""
    name = _decode(parts[0])
    greeting = _decode(parts[1]).strip() if len(parts) > 1 else ""
    return name, greeting


def _split_keyword_line(line: bytes) -> tuple[str, str] | None:
    """Split one extension line into (UPPER keyword, params); ``None`` when unreadable."""
    stripped = line.strip(_WHITESPACE)
    if not stripped:
        return None
    parts = stripped.split(None, 1)
    head = parts[0]
    rest = parts[1] if len(parts) > 1 else b""
    if head[: len(_LEGACY_AUTH)].upper() == _LEGACY_AUTH:
        # Pre-standard "AUTH=LOGIN PLAIN" (draft of RFC 2554), still sent by some servers next to
        # the standard "AUTH LOGIN PLAIN": merged into AUTH.
        rest = head[len(_LEGACY_AUTH) :] + b" " + rest
        head = b"AUTH"
    try:
        keyword = head.decode("ascii").upper()
    except UnicodeDecodeError:
        return None
    if not is_ehlo_keyword(keyword):
        return None
    return keyword, _decode(rest.strip(_WHITESPACE))


@attrs.frozen
class Capabilities:
    """What the server advertised in its EHLO/LHLO reply (or that it only spoke HELO).

    Build it with :func:`parse_ehlo` or :meth:`from_helo`; never mutated afterwards.

    Attributes:
        server_name: the domain the server gave on the first reply line (RFC 5321 §4.1.1.1).
        greeting: the rest of the first line (free text), possibly empty.
        esmtp: True when the capabilities come from EHLO/LHLO, False after a HELO fallback.
        raw: upper-case keyword → the advertised parameter text (``""`` when none; repeated
            keywords joined with a space). Every well-formed keyword is here, known or not.
        keywords: the advertised keywords in the server's order (first occurrence).
        unparsed: keywords whose registered extension rejected the parameters (no value).
        ignored_lines: extension lines that could not be read (empty, non-ASCII keyword...).
        extensions: the extensions used for parsing (a snapshot of the registry); the parameter
            builders call their hooks.
    """

    server_name: str
    greeting: str = ""
    esmtp: bool = True
    raw: Mapping[str, str] = attrs.field(factory=_no_text, converter=_freeze_text, hash=False)
    keywords: tuple[str, ...] = ()
    _values: Mapping[str, object] = attrs.field(
        factory=_no_values, converter=_freeze_values, hash=False, alias="values"
    )
    unparsed: tuple[str, ...] = ()
    ignored_lines: tuple[bytes, ...] = ()
    extensions: tuple[Extension, ...] = attrs.field(default=(), eq=False, repr=False, hash=False)

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_helo(cls, reply: Reply, registry: ExtensionRegistry | None = None) -> Capabilities:
        """Capabilities of a server that answered HELO (RFC 5321 §4.1.1.1): no extensions.

        Args:
            reply: the positive HELO reply.
            registry: the extensions parameter builders should consult (default built-ins).

        Raises:
            LocalProtocolError: ``reply`` is not a 2xx reply.
        """
        _require_positive(reply, "from_helo")
        name, greeting = _split_first_line(reply.lines[0] if reply.lines else b"")
        registry = registry if registry is not None else ExtensionRegistry.default()
        return cls(server_name=name, greeting=greeting, esmtp=False, extensions=tuple(registry))

    # --- generic access -----------------------------------------------------------------------

    def has(self, keyword: str) -> bool:
        """Return True when the server advertised ``keyword`` (case-insensitive)."""
        return keyword.upper() in self.raw

    def __contains__(self, keyword: object) -> bool:
        return isinstance(keyword, str) and self.has(keyword)

    def get(self, keyword: str, default: object = None) -> object:
        """Return the value of ``keyword``.

        Args:
            keyword: the EHLO keyword (case-insensitive).
            default: returned when the keyword was not advertised, or its extension rejected
                the parameters.

        Returns:
            The registered extension's parsed value, or the raw parameter text when no
            extension is registered for the keyword.
        """
        return self._values.get(keyword.upper(), default)

    def get_as(self, keyword: str, kind: type[_T]) -> _T | None:
        """Return the value of ``keyword`` when it is an instance of ``kind``, else ``None``.

        Example:
            ``caps.get_as("X-PRIORITIES", PriorityInfo)`` for a third-party extension.
        """
        value = self._values.get(keyword.upper())
        return value if isinstance(value, kind) else None

    def params(self, keyword: str) -> tuple[str, ...]:
        """Return the advertised parameters of ``keyword`` split on whitespace.

        ``()`` when the keyword has no parameters or was not advertised (use :meth:`has`).
        """
        return tuple(self.raw.get(keyword.upper(), "").split())

    def require(self, keyword: str, *, purpose: str | None = None) -> None:
        """Raise unless the server advertised ``keyword``.

        Args:
            keyword: the EHLO keyword.
            purpose: what needs it, for the message (e.g. ``"NOTIFY="``).

        Raises:
            CapabilityError: ``keyword`` was not advertised; ``.extension`` names it.
        """
        if not self.has(keyword):
            what = f"{purpose} requires" if purpose else "the operation requires"
            server = self.server_name or "the server"
            raise CapabilityError(
                f"{what} the {keyword.upper()} extension, which {server} did not advertise",
                extension=keyword.upper(),
            )

    # --- typed accessors ----------------------------------------------------------------------

    @property
    def max_size(self) -> int | None:
        """The SIZE limit in octets (RFC 1870 §4); ``None`` when absent, 0 or unparseable."""
        value = self._values.get("SIZE")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        """Offered SASL mechanisms, upper-case, de-duplicated, server order (RFC 4954 §3)."""
        value = self._values.get("AUTH")
        if isinstance(value, tuple):
            items = typing.cast("tuple[object, ...]", value)
            if all(isinstance(v, str) for v in items):
                return typing.cast("tuple[str, ...]", items)
        return ()

    @property
    def pipelining(self) -> bool:
        """PIPELINING (RFC 2920)."""
        return self.has("PIPELINING")

    @property
    def chunking(self) -> bool:
        """CHUNKING: the BDAT command (RFC 3030 §2)."""
        return self.has("CHUNKING")

    @property
    def binarymime(self) -> bool:
        """BINARYMIME (RFC 3030 §3); usable only together with CHUNKING."""
        return self.has("BINARYMIME")

    @property
    def eightbitmime(self) -> bool:
        """8BITMIME (RFC 6152)."""
        return self.has("8BITMIME")

    @property
    def smtputf8(self) -> bool:
        """SMTPUTF8: internationalised addresses and headers (RFC 6531)."""
        return self.has("SMTPUTF8")

    @property
    def starttls(self) -> bool:
        """STARTTLS (RFC 3207)."""
        return self.has("STARTTLS")

    @property
    def enhanced_status_codes(self) -> bool:
        """ENHANCEDSTATUSCODES (RFC 2034)."""
        return self.has("ENHANCEDSTATUSCODES")

    @property
    def dsn(self) -> bool:
        """DSN: delivery status notifications (RFC 3461)."""
        return self.has("DSN")

    @property
    def requiretls(self) -> bool:
        """REQUIRETLS (RFC 8689)."""
        return self.has("REQUIRETLS")


def _require_positive(reply: Reply, what: str) -> None:
    if not reply.is_positive:
        raise LocalProtocolError(
            f"{what} needs a positive (2xx) reply; got {reply.code}: check the reply first"
        )


def _as_reply(reply: object) -> Reply:
    """``reply`` itself, or the one reply its raw bytes hold (``b"250-mx\\r\\n250 SIZE 1"``)."""
    if isinstance(reply, Reply):
        return reply
    if isinstance(reply, bytes | bytearray | memoryview):
        parser = ReplyParser()
        data = bytes(typing.cast("bytes | bytearray | memoryview[int]", reply))
        parser.feed(data if data.endswith(b"\n") else data + b"\r\n")
        parsed = parser.next_reply()
        if parsed is None or parser.next_reply() is not None:
            raise InvalidInputError("the bytes given to parse_ehlo must hold exactly one reply")
        return parsed
    raise InvalidInputError(
        f"parse_ehlo needs a Reply (or the raw reply bytes), not {type(reply).__name__}"
    )


def parse_ehlo(reply: Reply | bytes, registry: ExtensionRegistry | None = None) -> Capabilities:
    """Parse a positive EHLO (or LMTP LHLO) reply into :class:`Capabilities`.

    Wire::

        S: 250-mx.example.com Hello [192.0.2.1]
        S: 250-SIZE 35882577
        S: 250-AUTH LOGIN PLAIN XOAUTH2
        S: 250 PIPELINING

    Args:
        reply: the server's reply to EHLO/LHLO; must be 2xx (check it before parsing). Its raw
            bytes are accepted too (``RemoteProtocolError`` when they are not one valid reply).
        registry: the extensions to parse with; the built-ins when ``None``.

    Returns:
        The immutable capabilities. Keywords are upper-cased; unknown keywords are kept in
        ``raw`` with their text as value; malformed lines end up in ``ignored_lines``.

    Raises:
        LocalProtocolError: ``reply`` is not a 2xx reply (RFC 5321 §4.1.1.1 says only a 250
            reply carries capabilities).
        InvalidInputError: ``reply`` is neither a ``Reply`` nor bytes holding exactly one.
    """
    reply = _as_reply(reply)
    _require_positive(reply, "parse_ehlo")
    registry = registry if registry is not None else ExtensionRegistry.default()
    lines = reply.lines
    server_name, greeting = _split_first_line(lines[0] if lines else b"")

    collected: dict[str, list[str]] = {}
    ignored: list[bytes] = []
    for line in lines[1:]:
        split = _split_keyword_line(line)
        if split is None:
            ignored.append(line)
            continue
        keyword, params = split
        collected.setdefault(keyword, []).append(params)

    raw = {kw: " ".join(p for p in parts if p) for kw, parts in collected.items()}
    values: dict[str, object] = {}
    unparsed: list[str] = []
    for keyword, params in raw.items():
        extension = registry.get(keyword)
        if extension is None:
            values[keyword] = params
            continue
        try:
            values[keyword] = extension.parse(params)
        except (ValueError, MailError):
            unparsed.append(keyword)

    return Capabilities(
        server_name=server_name,
        greeting=greeting,
        esmtp=True,
        raw=raw,
        keywords=tuple(raw),
        values=values,
        unparsed=tuple(unparsed),
        ignored_lines=tuple(ignored),
        extensions=tuple(registry),
    )
