from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scramp.utils import ScramException
from scramp.utils import saslprep as scramp_saslprep

from mailsdk.auth import saslprep
from mailsdk.errors import AuthError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # RFC 4013 §3 examples
        ("I\u00adX", "IX"),  # SOFT HYPHEN mapped to nothing
        ("user", "user"),
        ("USER", "USER"),  # case preserved
        ("\u00aa", "a"),  # output is NFKC
        ("\u2168", "IX"),  # ROMAN NUMERAL NINE, NFKC
        # more
        ("a\u00a0b", "a b"),  # non-ASCII space mapped to SPACE (§2.1)
        ("\u200b", ""),  # ZERO WIDTH SPACE mapped to nothing
        ("\u0627\u0628", "\u0627\u0628"),  # all right-to-left is fine
        ("", ""),
        ("pässwörd", "pässwörd"),
    ],
)
def test_rfc4013_examples(text: str, expected: str) -> None:
    assert saslprep(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("\u0007", "prohibited"),  # RFC 4013 §3: <U+0007> prohibited
        ("a\u0000b", "prohibited"),
        ("\ue000", "prohibited"),  # private use
        ("\u0627\u0031", "right-to-left"),  # RFC 4013 §3: bidi rule
        ("\u0627a\u0628", "mixes"),
        ("\u0221", "unassigned"),  # unassigned in Unicode 3.2
    ],
)
def test_rfc4013_errors(text: str, match: str) -> None:
    with pytest.raises(AuthError, match=match) as info:
        saslprep(text, what="password")
    assert "password" in str(info.value)
    # the message never quotes the input
    assert text not in str(info.value) or not text.strip()


def test_unassigned_allowed_for_queries() -> None:
    assert saslprep("\u0221", allow_unassigned=True) == "\u0221"
    assert saslprep("pass\U0001f600", allow_unassigned=True) == "pass\U0001f600"


def test_type_checked() -> None:
    with pytest.raises(TypeError):
        saslprep(b"bytes")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_agrees_with_scramp(text: str) -> None:
    """Cross-check against scramp's independent implementation (stored-string semantics)."""
    try:
        theirs: str | None = scramp_saslprep(text)
    except ScramException:
        theirs = None
    try:
        ours: str | None = saslprep(text)
    except AuthError:
        ours = None
    assert ours == theirs
