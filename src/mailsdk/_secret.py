"""Secret: a wrapper that keeps passwords and tokens out of logs, spans, reprs and pickles.

Layer: L0 (foundation). Imports nothing from mailsdk.
"""

from __future__ import annotations

import hmac
import typing

__all__ = ["Secret", "SecretLike", "as_secret"]

_MASK: typing.Final = "**********"


class Secret:
    """A credential whose value is only available through :meth:`reveal`.

    ``repr``, ``str`` and ``format`` never show the value; pickling is refused so a secret cannot
    leak through a serialised exception or config object. Equality is constant-time.

    Args:
        value: the secret text (a password, an access token...).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError("Secret value must be a str")
        self._value: str = value

    def reveal(self) -> str:
        """Return the secret value. Call it only at the point of use (e.g. SASL encoding)."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, format_spec: str) -> str:
        return format(_MASK, format_spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        # surrogatepass: a value holding a lone surrogate (os.environ, sys.argv) must not raise a
        # UnicodeEncodeError, whose args would carry the secret itself.
        return hmac.compare_digest(
            self._value.encode("utf-8", "surrogatepass"),
            other._value.encode("utf-8", "surrogatepass"),
        )

    def __hash__(self) -> int:
        return hash((Secret, len(self._value)))

    def __reduce__(self) -> typing.NoReturn:
        raise TypeError("mailsdk.Secret refuses to be pickled")


SecretLike = str | Secret


def as_secret(value: SecretLike) -> Secret:
    """Wrap ``value`` in a :class:`Secret` unless it already is one."""
    return value if isinstance(value, Secret) else Secret(value)
