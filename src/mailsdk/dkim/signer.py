"""DKIM signing as a pure function over (header block, body chunks): RFC 6376, RFC 8463.

Layer: L2 (pure, beside ``mailsdk.esmtp``). May import ``mailsdk.protocol`` and L0, and dkimpy
(the ``dkim`` extra) for header canonicalisation, folding and the signature itself; must never
import socket, ssl, asyncio, selectors, threading, time, logging, opentelemetry or msal. The
clock is an argument (``timestamp``), so a signature is reproducible in tests.

How it is used
--------------
:func:`sign_message` is the last step of the client's message preparation (after the trace
headers): it hashes the body once per body canonicalisation, however many signatures are made,
and returns the ``DKIM-Signature`` field lines to put in front of the message. The body is
given as chunks, so the caller decides how to read it twice (the signature is a header: it must
be sent before the body it covers).

dkimpy (the ``dkim`` extra) is used for what it does exactly as verifiers expect: header
canonicalisation, selecting the signed fields bottom-up, the ``b=`` removal and folding. The
body hash is mailsdk's own streaming :class:`~mailsdk.dkim.BodyHasher` (dkimpy needs the whole
body in memory), and the signature itself is ``cryptography``'s RSA or Ed25519 (dkimpy's RSA is
pure Python, about 20 times slower). Tests check the hashes agree with dkimpy's, and dkimpy's
verifier accepts every signature.
"""

from __future__ import annotations

import base64
import hashlib
import re
import typing
from collections.abc import Iterable, Sequence

import attrs

from mailsdk.dkim.canonical import BodyHasher, Canonicalization, split_message
from mailsdk.dkim.keys import DkimKey
from mailsdk.errors import ConfigurationError, InvalidInputError
from mailsdk.protocol.body import canonicalize_line_endings

__all__ = ["DEFAULT_HEADERS", "DkimSigner", "sign_bytes", "sign_message"]

#: RFC 6376 §5.4.1's recommended fields, plus List-Unsubscribe-Post (RFC 8058 §4 requires it
#: to be signed) and the MIME fields. Only the fields a message has are signed (besides the
#: oversigned ones).
DEFAULT_HEADERS: typing.Final = (
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-ID",
    "Content-Description",
    "Resent-Date",
    "Resent-From",
    "Resent-Sender",
    "Resent-To",
    "Resent-Cc",
    "Resent-Message-ID",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
)
#: RFC 6376 §5.4: fields that change in transit (or must not be revealed) are never signed.
_NEVER_SIGNED: typing.Final = frozenset(
    {"return-path", "received", "comments", "keywords", "bcc", "resent-bcc", "dkim-signature"}
)
_FIELD_NAME: typing.Final = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
_TOKEN: typing.Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_IDENTITY_CHARS: typing.Final = re.compile(r"[\x21-\x3a\x3c-\x7e]+")


def _is(value: object, kind: type) -> bool:
    """``isinstance`` for arguments typed already: callers that skip type checking still get
    a ConfigurationError, not a bare TypeError or AttributeError."""
    return isinstance(value, kind)


def _as_names(names: Iterable[str]) -> tuple[str, ...]:
    if isinstance(names, str):  # "From" alone, not the letters F, r, o, m
        return (names,)
    try:
        return tuple(names)
    except TypeError:
        raise ConfigurationError(
            f"DKIM header lists are sequences of field names, not {type(names).__name__}"
        ) from None


def _check_name(kind: str, value: str) -> None:
    """``d=`` and ``s=`` are dot-separated DNS labels (RFC 6376 §3.5): nothing that could end
    the tag (``;``), fold the header (CR/LF) or smuggle another tag."""
    if not isinstance(value, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ConfigurationError(f"DKIM {kind} must be a str, not {type(value).__name__}")
    labels = value.split(".")
    if not value or not all(_TOKEN.fullmatch(label) for label in labels):
        raise ConfigurationError(
            f"DKIM {kind} {value!r} is not a DNS name (ASCII letters, digits, '-' and '.'; "
            "use the IDNA A-label form for an international domain)"
        )


def _header_names(kind: str, names: Sequence[str]) -> tuple[str, ...]:
    lowered: list[str] = []
    for name in names:
        if not _is(name, str) or not name.isascii():
            raise ConfigurationError(f"DKIM {kind}: {name!r} is not a header field name")
        if not _FIELD_NAME.fullmatch(name.encode("ascii")):
            raise ConfigurationError(f"DKIM {kind}: {name!r} is not a header field name")
        if name.lower() in _NEVER_SIGNED:
            raise ConfigurationError(
                f"DKIM {kind}: {name} must not be signed (RFC 6376 §5.4: it changes in transit "
                "or must not be disclosed)"
            )
        lowered.append(name.lower())
    return tuple(dict.fromkeys(lowered))


@attrs.frozen(kw_only=True)
class DkimSigner:
    """One DKIM signature to add to every message (give several to sign with several keys).

    Attributes:
        domain: the signing domain, ``d=`` (an ASCII DNS name).
        selector: the key's selector, ``s=``; the public key is published at
            ``<selector>._domainkey.<domain>``.
        key: the private key (:class:`DkimKey`); its algorithm gives ``a=``.
        headers: the fields to sign when present (default :data:`DEFAULT_HEADERS`).
        oversign: fields signed once more than they occur, so none can be added later without
            breaking the signature (default ``From``, which RFC 6376 §5.4 requires to be
            signed).
        canonicalization: ``"header/body"``, each ``simple`` or ``relaxed`` (default
            ``relaxed/relaxed``, which survives the whitespace changes relays make).
        identity: the agent or user identifier, ``i=`` (``@domain`` or an address in the
            domain or a subdomain); omitted by default.
        expire_after: seconds after signing when the signature expires, ``x=``; ``None`` for
            no expiry.

    Raises:
        ConfigurationError: an invalid option, or the ``dkim`` extra (dkimpy) is not installed.
    """

    domain: str
    selector: str
    key: DkimKey
    headers: tuple[str, ...] = attrs.field(default=DEFAULT_HEADERS, converter=_as_names)
    oversign: tuple[str, ...] = attrs.field(default=("From",), converter=_as_names)
    canonicalization: str = "relaxed/relaxed"
    identity: str | None = None
    expire_after: int | None = None

    def __attrs_post_init__(self) -> None:
        # Fail when the signer is configured, not at the first send: signing needs dkimpy.
        _dkimpy()
        _check_name("domain", self.domain)
        _check_name("selector", self.selector)
        if not isinstance(self.key, DkimKey):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError("DKIM key must be a mailsdk.dkim.DkimKey (see from_file)")
        if "from" not in _header_names("headers", self.headers):
            raise ConfigurationError("DKIM headers must include From (RFC 6376 §5.4)")
        _header_names("oversign", self.oversign)
        self.header_canonicalization  # noqa: B018 - validates the value
        if self.identity is not None:
            if not isinstance(self.identity, str):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise ConfigurationError("DKIM identity must be a str")
            _local, at, host = self.identity.rpartition("@")
            if not at or not (
                host.lower() == self.domain.lower()
                or host.lower().endswith("." + self.domain.lower())
            ):
                raise ConfigurationError(
                    "DKIM identity must be '@domain' or an address in the signing domain "
                    "(or a subdomain of it), RFC 6376 §3.5 i="
                )
            if not _IDENTITY_CHARS.fullmatch(self.identity):
                # Printable ASCII only: a control character (NUL, DEL...) would go into the
                # DKIM-Signature header as is.
                raise ConfigurationError(
                    "DKIM identity must be printable ASCII without ';' or spaces"
                )
        if self.expire_after is not None and (
            not _is(self.expire_after, int)
            or isinstance(self.expire_after, bool)
            or self.expire_after <= 0
        ):
            raise ConfigurationError("DKIM expire_after must be a positive whole number of seconds")

    @property
    def header_canonicalization(self) -> Canonicalization:
        """The header part of ``c=``."""
        return self._canonicalizations()[0]

    @property
    def body_canonicalization(self) -> Canonicalization:
        """The body part of ``c=``."""
        return self._canonicalizations()[1]

    def _canonicalizations(self) -> tuple[Canonicalization, Canonicalization]:
        if not _is(self.canonicalization, str):
            raise ConfigurationError(
                "DKIM canonicalization is a str such as 'relaxed/relaxed', not "
                f"{type(self.canonicalization).__name__}"
            )
        head, _slash, body = self.canonicalization.partition("/")
        try:
            return Canonicalization(head), Canonicalization(body or "simple")
        except ValueError:
            raise ConfigurationError(
                f"DKIM canonicalization {self.canonicalization!r}: use 'relaxed/relaxed', "
                "'relaxed/simple', 'simple/relaxed' or 'simple/simple'"
            ) from None

    def signed_fields(self, header_block: bytes) -> tuple[str, ...]:
        """The ``h=`` list for a message: each configured field as often as it occurs
        (signed bottom-up, RFC 6376 §5.4.2), once more when oversigned.

        Raises:
            InvalidInputError: the message has no From field.
        """
        counts: dict[str, int] = {}
        for raw_name, _value in _parse_fields(header_block):
            lowered = raw_name.decode("ascii").lower()
            counts[lowered] = counts.get(lowered, 0) + 1
        if counts.get("from", 0) == 0:
            raise InvalidInputError("DKIM: the message has no From field (RFC 6376 §5.4)")
        over = set(_header_names("oversign", self.oversign))
        fields: list[str] = []
        for name in _header_names("headers", self.headers):
            fields.extend([name] * (counts.get(name, 0) + (name in over)))
        for name in sorted(over.difference(self.headers_lower())):
            fields.extend([name] * (counts.get(name, 0) + 1))
        return tuple(fields)

    def headers_lower(self) -> tuple[str, ...]:
        """:attr:`headers` in lower case, without repeats."""
        return _header_names("headers", self.headers)

    def sign(self, header_block: bytes, body_hash: bytes, *, timestamp: int | None) -> bytes:
        """The ``DKIM-Signature`` field (folded, ending in CRLF) for a message.

        Args:
            header_block: the message's header fields as they go on the wire (CRLF line ends,
                no empty separator line).
            body_hash: the raw SHA-256 body hash from a :class:`BodyHasher` using
                :attr:`body_canonicalization`.
            timestamp: seconds since the epoch for ``t=`` (and ``x=``); ``None`` omits both.

        Raises:
            InvalidInputError: the header block is malformed or has no From field.
            ConfigurationError: the ``dkim`` extra (dkimpy) is not installed.
        """
        dkim = _dkimpy()
        header_block = canonicalize_line_endings(header_block)
        fields = self.signed_fields(header_block)
        algorithm = self.key.algorithm.value.encode("ascii")
        c_value = f"{self.header_canonicalization.value}/{self.body_canonicalization.value}"
        tags: list[tuple[bytes, bytes]] = [
            (b"v", b"1"),
            (b"a", algorithm),
            (b"c", c_value.encode("ascii")),
            (b"d", self.domain.encode("ascii")),
        ]
        if self.identity is not None:
            # i= is dkim-quoted-printable (RFC 6376 §2.11): a "=" (VERP and SRS addresses
            # have them) is written =3D, or a verifier decodes another identity.
            tags.append((b"i", self.identity.replace("=", "=3D").encode("ascii")))
        tags.append((b"s", self.selector.encode("ascii")))
        if timestamp is not None:
            tags.append((b"t", str(int(timestamp)).encode("ascii")))
            if self.expire_after is not None:
                tags.append((b"x", str(int(timestamp) + self.expire_after).encode("ascii")))
        tags += [
            (b"h", " : ".join(fields).encode("ascii")),
            (b"bh", base64.b64encode(body_hash)),
            # A placeholder as long as a signature, so folding puts b= on lines of its own and
            # filling it in later does not move the other tags (dkimpy's convention).
            (b"b", b"0" * 60),
        ]
        policy = dkim.CanonicalizationPolicy.from_c_value(c_value.encode("ascii"))
        parsed = [(name, value + b"\r\n") for name, value in _parse_fields(header_block)]
        # The header as it will be sent, with b= empty: what the signature covers (§3.7).
        unsigned = dkim.RE_BTAG.sub(b"\\1", dkim.fold(b"; ".join(b"=".join(t) for t in tags), 14))
        hasher = hashlib.sha256()
        dkim.hash_headers(
            hasher,
            policy,
            policy.canonicalize_headers(parsed),
            tuple(f.encode("ascii") for f in fields),
            (b"DKIM-Signature", b" " + unsigned),
            dict(tags),
        )
        tags[-1] = (b"b", base64.b64encode(self.key.sign_digest(hasher.digest())))
        value: bytes = dkim.fold(b"; ".join(b"=".join(t) for t in tags) + b"\r\n", 14)
        return b"DKIM-Signature: " + value


def _parse_fields(header_block: bytes) -> list[tuple[bytes, bytes]]:
    """Split a canonical header block into ``(name, value)`` fields, refusing anything that is
    neither a field nor a continuation line (dkimpy would raise a bare ``IndexError`` on a
    leading continuation, and a receiver would not agree on what such a line means)."""
    fields: list[tuple[bytes, bytes]] = []
    lines = header_block.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, line in enumerate(lines, 1):
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise InvalidInputError("DKIM: the message header starts with a continuation line")
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise InvalidInputError(
                f"DKIM: header line {number} is neither a header field nor a continuation"
            )
        fields.append((name, value))
    return fields


def sign_message(
    signers: Sequence[DkimSigner],
    header_block: bytes,
    body_chunks: Iterable[bytes],
    *,
    timestamp: int | None,
) -> bytes:
    """Sign a message with every signer; read the body once.

    Args:
        signers: the signatures to make (e.g. one RSA and one Ed25519).
        header_block: the header fields as they go on the wire (see :func:`split_message`).
        body_chunks: the body, in chunks of any size (raw; line ends are canonicalised as on
            the wire).
        timestamp: seconds since the epoch for ``t=``, or ``None`` to omit it.

    Returns:
        The ``DKIM-Signature`` fields to put in front of the header block, in signer order.

    Raises:
        InvalidInputError: the header block is malformed or has no From field.
        ConfigurationError: the ``dkim`` extra is not installed.
    """
    if not signers:
        return b""
    _parse_fields(canonicalize_line_endings(header_block))
    hashers = {s.body_canonicalization: BodyHasher(s.body_canonicalization) for s in signers}
    for chunk in body_chunks:
        for hasher in hashers.values():
            hasher.update(chunk)
    digests = {kind: hasher.digest() for kind, hasher in hashers.items()}
    return b"".join(
        s.sign(header_block, digests[s.body_canonicalization], timestamp=timestamp) for s in signers
    )


def sign_bytes(signers: Sequence[DkimSigner], message: bytes, *, timestamp: int | None) -> bytes:
    """A whole message with its ``DKIM-Signature`` fields added in front (canonical CRLF).

    Raises:
        InvalidInputError: the header block is malformed or has no From field.
        ConfigurationError: the ``dkim`` extra is not installed.
    """
    head, body = split_message(message)
    signatures = sign_message(signers, head, (body,), timestamp=timestamp)
    return signatures + head + b"\r\n" + body


def _dkimpy() -> typing.Any:
    try:
        import dkim  # pyright: ignore[reportMissingTypeStubs]
    except (ImportError, RuntimeError):  # dkimpy raises RuntimeError without dnspython
        raise ConfigurationError(
            "DKIM signing needs the 'dkim' extra: pip install 'mailsdk[dkim]' (dkimpy)"
        ) from None
    return dkim
