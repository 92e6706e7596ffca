"""SASLprep (RFC 4013): the stringprep profile for user names and passwords.

Layer: L2 (auth, pure). May import ``mailsdk.errors`` and the stdlib ``stringprep`` and
``unicodedata`` modules. Must never import I/O modules or anything else from mailsdk.

Error messages never quote the input: it is usually a password.
"""

from __future__ import annotations

import stringprep
import typing
import unicodedata

from mailsdk.errors import AuthError

__all__ = ["saslprep"]

# RFC 4013 §2.3: prohibited output (non-ASCII space, controls, private use, non-characters,
# surrogates, inappropriate for plain text / canonical representation, change display, tagging).
_PROHIBITED: typing.Final = (
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(text: str, *, allow_unassigned: bool = False, what: str = "string") -> str:
    """Prepare ``text`` with the SASLprep profile (RFC 4013).

    Steps: map non-ASCII spaces to U+0020 and drop "commonly mapped to nothing" characters
    (§2.1), normalise with NFKC over Unicode 3.2 (§2.2), refuse prohibited output (§2.3), check
    bidirectional text (§2.4, RFC 3454 §6) and, for stored strings, unassigned code points
    (RFC 3454 §7, table A.1).

    Args:
        text: the string to prepare.
        allow_unassigned: ``True`` for "query" strings (unassigned code points pass);
            ``False`` for "stored" strings, as SCRAM requires (RFC 5802 §2.2).
        what: what ``text`` is ("password", "username"), used in error messages only.

    Returns:
        The prepared string (possibly empty).

    Raises:
        AuthError: the string contains a prohibited or unassigned character or breaks the bidi
            rule. The message never includes the text itself.
    """
    if not isinstance(text, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError("saslprep() needs a str")
    if text.isascii() and all(0x20 <= ord(c) < 0x7F for c in text):
        # Fast path: printable ASCII is unchanged by every step of the profile.
        return text

    # §2.1 Mapping.
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    # §2.2 Normalization (KC, Unicode 3.2 as RFC 3454 requires).
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    if not prepared:
        return prepared

    # §2.3 Prohibited output; RFC 3454 §7 unassigned code points.
    for char in prepared:
        if any(table(char) for table in _PROHIBITED):
            raise AuthError(f"SASLprep: the {what} contains a prohibited character (RFC 4013 §2.3)")
        if not allow_unassigned and stringprep.in_table_a1(char):
            raise AuthError(
                f"SASLprep: the {what} contains a code point unassigned in Unicode 3.2 "
                "(RFC 4013 §2.5)"
            )

    # §2.4 Bidirectional characters (RFC 3454 §6).
    has_ral = any(stringprep.in_table_d1(c) for c in prepared)
    if has_ral:
        if any(stringprep.in_table_d2(c) for c in prepared):
            raise AuthError(
                f"SASLprep: the {what} mixes right-to-left and left-to-right text (RFC 3454 §6)"
            )
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise AuthError(
                f"SASLprep: right-to-left {what} must start and end with a right-to-left "
                "character (RFC 3454 §6)"
            )
    return prepared
